/**
 * AWS's resolve_result_entry: how many resolved images (SOCI index and zTOCs) the SOCI mounter keeps
 * for later layers. With 1, a layer of an image resolved before another one resolves again; with the
 * default (30), it does not. Resolving again reads the index from the daemon's content store, not
 * the registry: the registry serves each image's index once either way.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { needs, tempDir } from '../../harness/env.js';
import { mountTopLayer, pushIndexedImage, type IndexedImage, registryWithProxy } from '../../harness/indexed-image.js';
import { defaultConfig } from '../../src/snapshotter/config.js';
import { SociLayerMounter } from '../../src/snapshotter/soci-mounter.js';
import { silentLogger } from '../../src/logger.js';

const skip = needs({ root: true, tools: ['docker-registry', 'skopeo'] });

test('resolve_result_entry bounds the resolved images kept (least recently used dropped first)', { skip, timeout: 120_000 }, async (t) => {
  const { reg, client, proxy } = await registryWithProxy(t);
  const a = await pushIndexedImage(reg, client, 'cache/a');
  const b = await pushIndexedImage(reg, client, 'cache/b');
  const indexFetches = (img: IndexedImage) => proxy.count('GET', `/manifests/${img.indexDigest}`);

  /** Mounts a's top layer, then b's, then a's again (three mountpoints); how often a was resolved. */
  const run = async (entries: number) => {
    proxy.clear();
    const config = defaultConfig();
    config.background_fetch.disable = true;
    config.resolve_result_entry = entries;
    const root = await tempDir(t, 'soci-resolve-');
    let resolved = 0;
    const logger = {
      ...silentLogger,
      info: (f: Record<string, unknown>, msg: string) => {
        if (msg === 'fetching SOCI artifacts using index descriptor' && f.digest === a.indexDigest) resolved++;
      },
    };
    const mounter = new SociLayerMounter({ config, root, logger });
    try {
      for (const [i, img] of [a, b, a].entries()) {
        const dir = join(root, `m${i}`);
        await mkdir(dir);
        await mountTopLayer(mounter, dir, proxy.host, img);
      }
      assert.equal(indexFetches(a), 1, "the registry serves a's index once; later it comes from the content store");
      return resolved;
    } finally {
      await mounter.close();
    }
  };
  assert.equal(await run(1), 2, 'resolve_result_entry = 1: b pushed a out');
  assert.equal(await run(0), 1, 'the default (30): a is resolved once');
  assert.equal(await run(2), 1);
});
