/**
 * AWS's max_concurrency: how many layers resolve (download their zTOC) at once, across images. The
 * snapshotter's SOCI mounter against a real registry behind a fault proxy that holds every zTOC
 * download: with max_concurrency = 1 the registry sees one zTOC request at a time, with the default
 * (100) all of them at once. Every mount completes once the downloads are let go.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { needs, tempDir } from '../../harness/env.js';
import type { FaultProxy } from '../../harness/fault-proxy.js';
import { mountTopLayer, pushIndexedImage, type IndexedImage, registryWithProxy } from '../../harness/indexed-image.js';
import { defaultConfig } from '../../src/snapshotter/config.js';
import { SociLayerMounter } from '../../src/snapshotter/soci-mounter.js';
import { silentLogger } from '../../src/logger.js';

const skip = needs({ root: true, tools: ['docker-registry', 'skopeo'] });

async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 200 && !cond(); i++) await sleep(50);
  assert.ok(cond(), `timed out waiting for ${what}`);
}

/** Mounts the top layer of each image at once while the proxy holds zTOC downloads; the most seen at one time. */
async function mountAllHeld(
  t: { after: (fn: () => unknown) => void },
  proxy: FaultProxy,
  images: IndexedImage[],
  maxConcurrency: number | undefined,
): Promise<number> {
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  proxy.clear();
  const ztocPaths = images.map((i) => `/blobs/sha256:${i.ztocHex}`);
  for (const p of ztocPaths) proxy.add({ path: p, times: 1, fault: { kind: 'hold', until: held } });
  const seen = () => ztocPaths.filter((p) => proxy.count('GET', p) > 0).length;

  const config = defaultConfig();
  if (maxConcurrency !== undefined) config.max_concurrency = maxConcurrency;
  config.background_fetch.disable = true;
  const root = await tempDir(t, 'soci-concurrency-');
  const mounter = new SociLayerMounter({ config, root, logger: silentLogger });
  const mounts = images.map(async (img) => {
    const dir = join(root, img.repo.replace('/', '-'));
    await mkdir(dir);
    await mountTopLayer(mounter, dir, proxy.host, img);
  });
  try {
    await until(() => seen() >= Math.min(images.length, maxConcurrency ?? images.length), 'the first zTOC requests');
    await sleep(500); // room for any request the bound should keep back
    const most = seen();
    release();
    await Promise.all(mounts);
    assert.equal(seen(), images.length, 'every zTOC downloaded in the end');
    return most;
  } finally {
    release();
    await Promise.allSettled(mounts);
    await mounter.close();
  }
}

test('max_concurrency bounds how many layers download their zTOC at once, across images', { skip, timeout: 120_000 }, async (t) => {
  const { reg, client, proxy } = await registryWithProxy(t);
  const images: IndexedImage[] = [];
  for (const n of ['a', 'b', 'c']) images.push(await pushIndexedImage(reg, client, `conc/${n}`));

  assert.equal(await mountAllHeld(t, proxy, images, 1), 1, 'max_concurrency = 1: one zTOC request at a time');
  assert.equal(await mountAllHeld(t, proxy, images, 2), 2, 'max_concurrency = 2');
  assert.equal(await mountAllHeld(t, proxy, images, undefined), 3, 'the default (100): all at once');
});
