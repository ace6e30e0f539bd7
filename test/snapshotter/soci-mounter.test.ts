/**
 * The snapshotter's SOCI mounter against a real registry and FUSE: a layer the index does not cover
 * is answered (ERR_NO_ZTOC → local unpack) from the index alone, while the zTOCs are still being
 * downloaded, so containerd's bottom-first Prepares overlap the zTOC downloads with the unpack of
 * small base layers; an indexed layer waits for its zTOC and serves the right bytes; a zTOC that
 * cannot be fetched still defers every indexed layer of the image (ERR_NO_INDEX), like AWS's.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { needs, tempDir } from '../../harness/env.js';
import { pushIndexedImage, registryWithProxy } from '../../harness/indexed-image.js';
import { defaultConfig } from '../../src/snapshotter/config.js';
import { LABELS } from '../../src/snapshotter/labels.js';
import { SociLayerMounter } from '../../src/snapshotter/soci-mounter.js';
import { silentLogger } from '../../src/logger.js';

const code = (e: unknown) => (e as { code?: string }).code ?? String(e);

test('soci mounter: non-indexed layers do not wait for zTOCs; indexed layers do; a missing zTOC defers them', {
  skip: needs({ root: true, tools: ['docker-registry', 'skopeo'] }),
  timeout: 120_000,
}, async (t) => {
  const { reg, client, proxy } = await registryWithProxy(t);
  const good = await pushIndexedImage(reg, client, 'overlap/good');
  const bad = await pushIndexedImage(reg, client, 'overlap/bad');

  const root = await tempDir(t, 'soci-mounter-');
  const mounter = new SociLayerMounter({ config: defaultConfig(), root, logger: silentLogger });
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
    assert.equal(text, 'linux/amd64 layer 1\n'.repeat(Math.ceil((64 * 1024) / 2 / 20)));
    await mounter.unmount(topDir);
  } finally {
    release();
  }

  // A zTOC that cannot be fetched: the base still unpacks locally, the indexed layer defers.
  proxy.add({ method: 'GET', path: bad.ztocHex, times: 100, fault: { kind: 'status', status: 404 } });
  await assert.rejects(mounter.mount(await mountpoint('bad-base'), labels('overlap/bad', bad, bad.base), ctx), (e) => code(e) === 'ERR_NO_ZTOC');
  await assert.rejects(mounter.mount(await mountpoint('bad-top'), labels('overlap/bad', bad, bad.top), ctx), (e) => code(e) === 'ERR_NO_INDEX');
});
