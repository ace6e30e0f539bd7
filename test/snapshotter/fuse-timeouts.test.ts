/**
 * AWS's [fuse] attr_timeout, entry_timeout and negative_timeout reach the kernel: through the
 * snapshotter's SOCI mounter (real registry, FUSE), a name looked up twice 1.5 s apart is asked of
 * the daemon again with the default 1 s timeouts, and once only with 3600 s. The lookups are counted
 * by the daemon's FUSE op latency histogram.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { needs, recordingLogger, tempDir } from '../../harness/env.js';
import { mountTopLayer, pushIndexedImage, registryWithClient } from '../../harness/indexed-image.js';
import { defaultConfig } from '../../src/snapshotter/config.js';
import { registry as metrics } from '../../src/snapshotter/metrics.js';
import { SociLayerMounter } from '../../src/snapshotter/soci-mounter.js';
import { silentLogger } from '../../src/logger.js';

const pexec = promisify(execFile);

async function lookups(layer: string): Promise<number> {
  const m = new RegExp(`^soci_fs_operation_duration_microseconds_count\\{operation_type="fuse_lookup",layer="${layer}"\\} (\\d+)$`, 'm').exec(
    await metrics.metrics(),
  );
  return m ? Number(m[1]) : 0;
}

test('[fuse] timeouts: what the kernel caches follows the config (1 s default vs 3600 s)', {
  skip: needs({ root: true, tools: ['docker-registry', 'skopeo', 'stat'] }),
  timeout: 120_000,
}, async (t) => {
  const { reg, client } = await registryWithClient(t);
  const root = await tempDir(t, 'soci-fuse-ttl-');
  const results: Record<string, { found: number; missing: number }> = {};
  const mounters: SociLayerMounter[] = [];
  t.after(async () => {
    for (const m of mounters) await m.close();
  });
  for (const ttl of [0, 3600]) {
    const img = await pushIndexedImage(reg, client, `ttl/t${ttl}`);
    const config = defaultConfig();
    if (ttl) Object.assign(config.fuse, { attr_timeout: ttl, entry_timeout: ttl, negative_timeout: ttl });
    config.background_fetch.disable = true;
    const mounter = new SociLayerMounter({ config, root: join(root, `r${ttl}`), logger: silentLogger });
    mounters.push(mounter);
    const dir = join(root, `m${ttl}`);
    await mkdir(dir);
    await mountTopLayer(mounter, dir, reg.host, img);
    const statTwice = async (path: string) => {
      const before = await lookups(img.top);
      for (let i = 0; i < 2; i++) {
        await pexec('stat', [path]).catch(() => undefined);
        if (i === 0) await sleep(1500);
      }
      return (await lookups(img.top)) - before;
    };
    // `layer1` is looked up once by the first stat of each path; what the second costs is the point.
    await pexec('stat', [join(dir, 'layer1')]);
    results[ttl ? 'long' : 'default'] = { found: await statTwice(join(dir, 'layer1', 'text.txt')), missing: await statTwice(join(dir, 'layer1', 'nope')) };
    await mounter.unmount(dir);
  }
  t.diagnostic(JSON.stringify(results));
  assert.ok(results.default!.found >= 2, `1 s entry/attr timeout: the name is asked again (${results.default!.found} lookups)`);
  assert.ok(results.default!.missing >= 2, `1 s negative timeout: the missing name is asked again (${results.default!.missing})`);
  assert.equal(results.long!.found, 1, '3600 s: the kernel answers the second stat itself');
  assert.equal(results.long!.missing, 1, '3600 s negative timeout: the missing name is not asked again');
});

test('[fuse] log_fuse_operations (and debug): one debug line per FUSE operation with its path; none by default', {
  skip: needs({ root: true, tools: ['docker-registry', 'skopeo'] }),
  timeout: 120_000,
}, async (t) => {
  const { reg, client } = await registryWithClient(t);
  const root = await tempDir(t, 'soci-fuse-trace-');
  const img = await pushIndexedImage(reg, client, 'trace/app');
  const traced: Record<string, Array<Record<string, unknown>>> = {};
  const mounters: SociLayerMounter[] = [];
  try {
    for (const mode of ['off', 'log_fuse_operations', 'debug'] as const) {
      const config = defaultConfig();
      config.background_fetch.disable = true;
      if (mode === 'log_fuse_operations') config.fuse.log_fuse_operations = true;
      if (mode === 'debug') config.debug = true;
      const logger = recordingLogger();
      const mounter = new SociLayerMounter({ config, root: join(root, `r-${mode}`), logger });
      mounters.push(mounter);
      const dir = join(root, `m-${mode}`);
      await mkdir(dir);
      await mountTopLayer(mounter, dir, reg.host, img);
      await pexec('cat', [join(dir, 'layer1', 'text.txt')]);
      traced[mode] = logger.lines.filter((l) => l.msg === 'FUSE operation').map((l) => ({ level: l.level, ...l.fields }));
    }
  } finally {
    for (const m of mounters) await m.close();
  }
  assert.deepEqual(traced.off, []);
  for (const mode of ['log_fuse_operations', 'debug']) {
    const ops = traced[mode]!;
    assert.ok(
      ops.every((l) => l.level === 'debug' && l.layer === img.top && typeof l.latency_us === 'number'),
      JSON.stringify(ops[0]),
    );
    assert.ok(
      ops.some((l) => l.operation === 'lookup' && l.path === 'layer1'),
      `${mode}: the lookup of layer1`,
    );
    assert.ok(
      ops.some((l) => l.operation === 'read' && l.path === 'layer1/text.txt'),
      `${mode}: the read of layer1/text.txt`,
    );
  }
});
