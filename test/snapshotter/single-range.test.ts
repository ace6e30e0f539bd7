/**
 * AWS's [blob] force_single_range_mode is moot here: every Range request the registry sees asks for
 * one range, with the key on or off (AWS's fetcher may otherwise ask for several ranges in one
 * request). Through the snapshotter's SOCI mounter, a real registry behind a recording proxy, FUSE.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { needs, tempDir } from '../../harness/env.js';
import { mountTopLayer, pushIndexedImage, registryWithProxy } from '../../harness/indexed-image.js';
import { configReports, defaultConfig, parseConfig } from '../../src/snapshotter/config.js';
import { SociLayerMounter } from '../../src/snapshotter/soci-mounter.js';
import { silentLogger } from '../../src/logger.js';

const pexec = promisify(execFile);

test('force_single_range_mode: one range per request either way (and the key is reported as moot)', {
  skip: needs({ root: true, tools: ['docker-registry', 'skopeo'] }),
  timeout: 120_000,
}, async (t) => {
  assert.deepEqual(
    configReports(parseConfig('[blob]\nforce_single_range_mode = true\n')).map((r) => [r.key, r.kind]),
    [['blob.force_single_range_mode', 'moot']],
  );
  const { reg, client, proxy } = await registryWithProxy(t);
  const img = await pushIndexedImage(reg, client, 'ranges/app');
  const root = await tempDir(t, 'soci-ranges-');
  for (const force of [false, true]) {
    const config = defaultConfig();
    config.background_fetch.disable = true;
    config.blob.force_single_range_mode = force;
    const mounter = new SociLayerMounter({ config, root: join(root, `r-${force}`), logger: silentLogger });
    proxy.clear();
    try {
      const dir = join(root, `m-${force}`);
      await mkdir(dir);
      await mountTopLayer(mounter, dir, proxy.host, img);
      await pexec('cat', [join(dir, 'layer1', 'random.bin'), join(dir, 'layer1', 'text.txt')]);
    } finally {
      await mounter.close();
    }
    const ranges = proxy.requests.filter((r) => r.headers.range).map((r) => String(r.headers.range));
    assert.ok(ranges.length >= 1, 'the reads went to the registry');
    for (const r of ranges) assert.match(r, /^bytes=\d+-\d+$/, `force_single_range_mode = ${force}: ${r}`);
  }
});
