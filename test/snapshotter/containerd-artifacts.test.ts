/**
 * AWS's [content_store] type = "containerd": the SOCI mounter reads the SOCI index and zTOCs from
 * containerd's content store (where `soci convert` puts them on this node) before the registry.
 * Real containerd, a real registry behind a recording proxy, FUSE: with the blobs in containerd the
 * registry never sees a request for them; with type "soci" it does; with containerd unreachable the
 * registry serves them after one warning.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { startContainerd } from '../../harness/containerd.js';
import { needs, recordingLogger, tempDir } from '../../harness/env.js';
import { mountTopLayer, pushIndexedImage, registryWithProxy } from '../../harness/indexed-image.js';
import { Containerd } from '../../src/containerd/index.js';
import { defaultConfig } from '../../src/snapshotter/config.js';
import { SociLayerMounter } from '../../src/snapshotter/soci-mounter.js';

const skip = needs({ root: true, tools: ['containerd', 'docker-registry', 'skopeo'] });

test('content_store.type = "containerd": index and zTOCs read from containerd before the registry', { skip, timeout: 180_000 }, async (t) => {
  const { reg, client, proxy } = await registryWithProxy(t);
  const img = await pushIndexedImage(reg, client, 'local/app');
  const root = await tempDir(t, 'soci-ctd-artifacts-');
  const cd = await startContainerd(t, { snapshotterSocket: join(root, 'none.sock') });

  // What `soci convert` leaves in containerd: the index and its zTOC (kept by a GC root label here).
  const ztocDigest = `sha256:${img.ztocHex}`;
  const parts: Buffer[] = [];
  for await (const c of client.fetchBlob(img.repo, ztocDigest)) parts.push(c);
  const index = await client.getManifest(img.repo, img.indexDigest);
  const ctd = await Containerd.connect({ address: cd.address, namespace: 'soci-test' });
  try {
    for (const [bytes, digest] of [
      [Buffer.concat(parts), ztocDigest],
      [index.bytes, img.indexDigest],
    ] as const) {
      await ctd.content.put(bytes, digest, { 'containerd.io/gc.root': new Date().toISOString() });
    }
  } finally {
    ctd.close();
  }

  const fetched = () => ({
    ztoc: proxy.count('GET', `/blobs/${ztocDigest}`),
    index: proxy.count('GET', `/manifests/${img.indexDigest}`),
  });
  const mountWith = async (name: string, edit: (c: ReturnType<typeof defaultConfig>['content_store']) => void) => {
    const config = defaultConfig();
    config.background_fetch.disable = true;
    edit(config.content_store);
    const logger = recordingLogger();
    const mounter = new SociLayerMounter({ config, root: join(root, name), logger });
    proxy.clear();
    try {
      const dir = join(root, `m-${name}`);
      await mkdir(dir);
      await mountTopLayer(mounter, dir, proxy.host, img);
      return { ...fetched(), warnings: logger.lines.filter((l) => l.level === 'warn').map((l) => l.msg) };
    } finally {
      await mounter.close();
    }
  };

  const local = await mountWith('containerd', (c) => Object.assign(c, { type: 'containerd', containerd_address: cd.address, namespace: 'soci-test' }));
  assert.deepEqual(local, { ztoc: 0, index: 0, warnings: [] }, 'both read from containerd');
  const other = await mountWith('other-ns', (c) => Object.assign(c, { type: 'containerd', containerd_address: cd.address, namespace: 'default' }));
  assert.deepEqual(other, { ztoc: 1, index: 1, warnings: [] }, 'another namespace holds nothing: the registry serves');
  const soci = await mountWith('soci', () => undefined);
  assert.deepEqual(soci, { ztoc: 1, index: 1, warnings: [] }, 'type "soci": from the registry');
  const down = await mountWith('down', (c) => Object.assign(c, { type: 'containerd', containerd_address: join(root, 'no-containerd.sock') }));
  assert.equal(down.ztoc, 1);
  assert.equal(down.warnings.length, 1, down.warnings.join('\n'));
  assert.match(down.warnings[0]!, /cannot read SOCI artifacts from containerd's content store; fetching them from the registry/);
});
