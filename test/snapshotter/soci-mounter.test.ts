/**
 * The snapshotter's SOCI mounter against a real registry and FUSE: a layer the index does not cover
 * is answered (ERR_NO_ZTOC → local unpack) from the index alone, while the zTOCs are still being
 * downloaded, so containerd's bottom-first Prepares overlap the zTOC downloads with the unpack of
 * small base layers; an indexed layer waits for its zTOC and serves the right bytes; a zTOC that
 * cannot be fetched still defers every indexed layer of the image (ERR_NO_INDEX), like the reference.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { needs, tempDir } from '../helpers/env.js';
import { startFaultProxy } from '../helpers/fault-proxy.js';
import { pushTestImage, startRegistry, type TestRegistry } from '../helpers/registry.js';
import { RegistryClient } from '../../src/registry/index.js';
import { ANN, EMPTY_CONFIG, MT } from '../../src/oci/media-types.js';
import { encodeManifest } from '../../src/oci/types.js';
import { buildZtoc, marshalZtoc } from '../../src/ztoc/index.js';
import { defaultConfig } from '../../src/snapshotter/config.js';
import { LABELS, SociLayerMounter } from '../../src/snapshotter/soci-mounter.js';

const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const code = (e: unknown) => (e as { code?: string }).code ?? String(e);

/** A two-layer image whose SOCI index has a zTOC for the top layer only; returns what the labels need. */
async function indexedImage(reg: TestRegistry, client: RegistryClient, repo: string) {
  const img = await pushTestImage(reg, repo, { layers: 2 });
  const m = img.manifests[0]!;
  const [base, top] = [m.layers[0]!, m.layers[1]!];
  const ztoc = marshalZtoc(await buildZtoc(Readable.from([top.bytes]), { compression: 'gzip', spanSize: 16 * 1024 }));
  for (const b of [ztoc, EMPTY_CONFIG.bytes]) await client.pushBlob(repo, sha(b), b.length, b);
  const index = encodeManifest({
    schemaVersion: 2,
    mediaType: MT.ociManifest,
    artifactType: MT.sociIndexV2,
    config: { mediaType: MT.sociIndexV2, digest: EMPTY_CONFIG.digest, size: EMPTY_CONFIG.size },
    layers: [{ mediaType: MT.ztoc, digest: sha(ztoc), size: ztoc.length, annotations: { [ANN.layerDigest]: top.digest } }],
  });
  const indexDigest = await client.putManifest(repo, sha(index), index, MT.ociManifest);
  return { manifestDigest: m.digest, base: base.digest, top: top.digest, ztocHex: sha(ztoc).slice(7), indexDigest };
}

test('soci mounter: non-indexed layers do not wait for zTOCs; indexed layers do; a missing zTOC defers them', { skip: needs({ root: true, tools: ['docker-registry', 'skopeo'] }), timeout: 120_000 }, async (t) => {
  const reg = await startRegistry(t);
  const client = new RegistryClient({ registry: reg.host, plainHttp: true });
  t.after(() => client.close());
  const good = await indexedImage(reg, client, 'overlap/good');
  const bad = await indexedImage(reg, client, 'overlap/bad');
  const proxy = await startFaultProxy(t, reg.host);

  const root = await tempDir(t, 'soci-mounter-');
  const mounter = new SociLayerMounter({ config: defaultConfig(), root, log: () => undefined });
  t.after(() => mounter.close());
  const ctx = { namespace: 'default', key: 'k' };
  const labels = (repo: string, img: { manifestDigest: string; indexDigest: string }, layer: string) => ({
    [LABELS.imageRef]: `${proxy.host}/${repo}:latest`,
    [LABELS.manifestDigest]: img.manifestDigest,
    [LABELS.indexDigest]: img.indexDigest,
    [LABELS.layerDigest]: layer,
  });
  const mountpoint = async (name: string) => {
    const d = join(root, name);
    await mkdir(d);
    return d;
  };

  // The zTOC download is held until the test releases it.
  let release!: () => void;
  proxy.add({ method: 'GET', path: good.ztocHex, fault: { kind: 'hold', until: new Promise<void>((r) => (release = r)) } });
  try {
    const baseOutcome = await Promise.race([
      mounter.mount(await mountpoint('base'), labels('overlap/good', good, good.base), ctx).then(() => 'mounted', code),
      sleep(5000).then(() => 'still waiting after 5 s'),
    ]);
    assert.equal(baseOutcome, 'ERR_NO_ZTOC', 'the non-indexed layer is answered from the index, before its zTOCs arrive');
    // The download was started with the index (nobody has asked for the indexed layer yet).
    for (let i = 0; i < 100 && proxy.count('GET', good.ztocHex) === 0; i++) await sleep(50);
    assert.equal(proxy.count('GET', good.ztocHex), 1, 'the zTOC download started as soon as the index was found');

    let topSettled = false;
    const topDir = await mountpoint('top');
    const top = mounter.mount(topDir, labels('overlap/good', good, good.top), ctx).finally(() => (topSettled = true));
    await sleep(300);
    assert.equal(topSettled, false, 'the indexed layer waits for its zTOC');
    release();
    await top;
    const text = await readFile(join(topDir, 'layer1', 'text.txt'), 'utf8');
    assert.equal(text, 'linux/amd64 layer 1\n'.repeat(Math.ceil(64 * 1024 / 2 / 20)));
    await mounter.unmount(topDir);
  } finally {
    release();
  }

  // A zTOC that cannot be fetched: the base still unpacks locally, the indexed layer defers.
  proxy.add({ method: 'GET', path: bad.ztocHex, times: 100, fault: { kind: 'status', status: 404 } });
  await assert.rejects(mounter.mount(await mountpoint('bad-base'), labels('overlap/bad', bad, bad.base), ctx), (e) => code(e) === 'ERR_NO_ZTOC');
  await assert.rejects(mounter.mount(await mountpoint('bad-top'), labels('overlap/bad', bad, bad.top), ctx), (e) => code(e) === 'ERR_NO_INDEX');
});
