/**
 * The time-to-ready harness's samples (bench/lib/ttr-sample.ts) on a small app image, through the
 * shaping proxy at 100 Mbit/s / 20 ms: a full sample downloads the whole image and yields full + warm
 * rows; a lazy sample mounts the indexed layer lazily, fetches a fraction of it and reports what the
 * workload read; and a lazy sample of an image without a SOCI index fails loudly (silent fallback),
 * never passing a full pull off as lazy. The same for AWS's snapshotter (aws mode), and the replay
 * modes on the image converted with a recorded start. The parallel modes pull the original image
 * (no index) with each snapshotter's parallel pull and unpack mode, and fail loudly when the daemon
 * ran without it (containerd pulled the layers itself).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import type { BenchImage } from '../../bench/images/index.js';
import { startShapeProxy } from '../../bench/lib/shape-proxy.js';
import { fullSample, lazySample, recordStart, type SampleContext } from '../../bench/lib/ttr-sample.js';
import { PARALLEL_TOML, parallelSample } from '../../bench/lib/parallel-sample.js';
import { AWS_SNAPSHOTTER } from '../../harness/aws-snapshotter.js';
import { CONTAINERD2_BIN } from '../../harness/containerd.js';
import { appCommand, buildAppImage } from '../../harness/app-image.js';
import { needs, tempDir } from '../../harness/env.js';
import { startRegistry } from '../../harness/registry.js';

const run = promisify(execFile);
const skip = needs({ root: true, tools: [join(CONTAINERD2_BIN, 'containerd'), AWS_SNAPSHOTTER, 'runc', 'docker-registry', 'skopeo'] });

function benchImage(layout: string): BenchImage {
  const idx = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8'));
  const blob = (d: string) => readFileSync(join(layout, 'blobs', 'sha256', d.slice(7)));
  const m = JSON.parse(blob(idx.manifests[0].digest).toString('utf8'));
  const layers = (m.layers as Array<{ digest: string; size: number }>).map((l) => ({
    digest: l.digest,
    size: l.size,
    uncompressedSize: Number(gzipISize(blob(l.digest))),
  }));
  return {
    name: 'echo',
    layout,
    compressedBytes: layers.reduce((a, l) => a + l.size, 0),
    uncompressedBytes: layers.reduce((a, l) => a + l.uncompressedSize, 0),
    layers,
    packages: [],
    workloads: [{ name: 'http', description: 'busybox httpd', command: appCommand, ready: { kind: 'http', path: '/index.html' } }],
  };
}

/** gzip's ISIZE trailer: the uncompressed size mod 2^32 (these layers are far below 4 GiB). */
function gzipISize(gz: Buffer): number {
  return gz.readUInt32LE(gz.length - 4);
}

test('time-to-ready samples: full, warm, lazy, aws and replay rows; a missing index is a loud failure', { skip, timeout: 600_000 }, async (t) => {
  const dir = await tempDir(t);
  const layout = buildAppImage(join(dir, 'app'), { bulkMb: 48, tag: 'latest' }).dir;
  const img = benchImage(layout);
  const reg = await startRegistry(t);
  await run('skopeo', ['copy', '-q', '--dest-tls-verify=false', `oci:${layout}:latest`, `docker://${reg.host}/app:v1`]);
  // `nosoci:soci` is the same image with no SOCI index at all.
  await run('skopeo', ['copy', '-q', '--dest-tls-verify=false', `oci:${layout}:latest`, `docker://${reg.host}/nosoci:soci`]);
  await run(process.execPath, ['bin/soci.js', '--root', join(dir, 'soci-root'), 'convert', '--remote', '-q', `${reg.host}/app:v1`, `${reg.host}/app:soci`]);
  const proxy = await startShapeProxy({ upstream: reg.host, profile: { id: 'p2', label: '100 Mbit/s, 20 ms', rateBitsPerSec: 100e6, rttMs: 20 } });
  t.after(() => proxy.close());
  const logs: string[] = [];
  const ctx: SampleContext = {
    proxy,
    profile: 'p2',
    iteration: 0,
    log: (m) => logs.push(m),
    repo: () => 'app',
    expectedLazyLayers: (i) => i.layers.filter((l) => l.size >= 10 << 20).length,
  };
  assert.equal(ctx.expectedLazyLayers(img), 1, 'the bulk layer is indexed, the config layer is not');

  const full = await fullSample(ctx, img, img.workloads);
  assert.deepEqual(
    full.map((s) => s.mode),
    ['full', 'warm'],
  );
  const [f, w] = full as [(typeof full)[0], (typeof full)[0]];
  assert.ok(f.bytesFetched >= img.compressedBytes, `a full pull downloads every layer (${f.bytesFetched} < ${img.compressedBytes})`);
  assert.ok(f.ttrMs >= f.pullMs && f.pullMs > ((img.compressedBytes * 8) / 100e6) * 1000 * 0.8, 'shaped: the pull takes at least size ÷ bandwidth');
  assert.ok(w.runMs > 0 && w.pullMs === 0 && w.bytesFetched === 0);
  assert.ok(f.daemonCpuMs! > 0 && f.daemonPeakRssBytes! > 0);

  const lazy = await lazySample(ctx, img, img.workloads[0]!);
  assert.equal(lazy.mode, 'lazy');
  assert.equal(lazy.lazyLayers, 1);
  assert.ok(lazy.bytesFetched < img.compressedBytes / 2, `lazy fetched ${lazy.bytesFetched} of ${img.compressedBytes}`);
  assert.ok(lazy.rangeRequests >= 1, 'spans come by Range requests');
  assert.ok(lazy.bytesRead! > 0 && lazy.neededCompressed! > 0 && lazy.neededCompressed! <= lazy.bytesFetched);
  assert.ok(lazy.firstByteMs! > 0 && lazy.firstByteMs! <= lazy.ttrMs, `first byte ${lazy.firstByteMs} within ready ${lazy.ttrMs}`);
  assert.ok(lazy.pullBytes! > 0 && lazy.pullBytes! < lazy.bytesFetched);

  t.diagnostic(
    `full ${(f.ttrMs / 1000).toFixed(2)} s (${(f.bytesFetched / 1e6).toFixed(1)} MB), warm ${(w.runMs / 1000).toFixed(2)} s, lazy ${(lazy.ttrMs / 1000).toFixed(2)} s (${(lazy.bytesFetched / 1e6).toFixed(1)} MB, ${lazy.rangeRequests} ranges, read ${(lazy.bytesRead! / 1e6).toFixed(2)} MB ≈ ${(lazy.neededCompressed! / 1e6).toFixed(2)} MB compressed, first byte ${lazy.firstByteMs} ms)`,
  );
  await assert.rejects(lazySample({ ...ctx, repo: () => 'nosoci' }, img, img.workloads[0]!), /silent fallback — 0 of 1 indexed layers were mounted lazily/);

  // AWS's snapshotter on the same image: its FUSE mounts are the lazy layers.
  const w0 = img.workloads[0]!;
  const aws = await lazySample(ctx, img, w0, 'aws');
  assert.equal(aws.mode, 'aws');
  assert.equal(aws.lazyLayers, 1);
  assert.ok(aws.bytesFetched < img.compressedBytes / 2 && aws.rangeRequests >= 1, `aws fetched ${aws.bytesFetched} of ${img.compressedBytes}`);
  assert.ok(aws.daemonCpuMs! > 0 && aws.daemonPeakRssBytes! > 0);
  await assert.rejects(lazySample({ ...ctx, repo: () => 'nosoci' }, img, w0, 'aws'), /\(aws\): silent fallback — 0 of 1 indexed layers/);

  // A recorded start, converted with its record: both snapshotters replay it.
  const rec = join(dir, 'record.json');
  await recordStart(reg.host, 'app', w0, rec);
  const files = (JSON.parse(readFileSync(rec, 'utf8')) as { files: Array<{ path: string }> }).files.map((f) => f.path);
  assert.ok(files.includes('bin/busybox'), `the record lists what the start read: ${files.join(', ')}`);
  await run(process.execPath, [
    'bin/soci.js',
    '--root',
    join(dir, 'soci-root'),
    'convert',
    '--remote',
    '-q',
    '--prefetch-record',
    rec,
    `${reg.host}/app:v1`,
    `${reg.host}/app:replay-${w0.name}`,
  ]);
  for (const mode of ['replay', 'aws-replay'] as const) {
    const s = await lazySample(ctx, img, w0, mode);
    assert.equal(s.mode, mode);
    assert.equal(s.lazyLayers, 1);
    assert.ok(s.bytesFetched < img.compressedBytes / 2, `${mode} fetched ${s.bytesFetched} of ${img.compressedBytes}`);
    t.diagnostic(`${mode} ${(s.ttrMs / 1000).toFixed(2)} s (${(s.bytesFetched / 1e6).toFixed(1)} MB, ${s.rangeRequests} ranges)`);
  }
  t.diagnostic(`aws ${(aws.ttrMs / 1000).toFixed(2)} s (${(aws.bytesFetched / 1e6).toFixed(1)} MB, ${aws.rangeRequests} ranges)`);
});

test('time-to-ready samples: parallel and aws-parallel pull the original image themselves; without the mode, a loud failure', {
  skip,
  timeout: 600_000,
}, async (t) => {
  const dir = await tempDir(t);
  const layout = buildAppImage(join(dir, 'app'), { bulkMb: 48, tag: 'latest' }).dir;
  const img = benchImage(layout);
  const reg = await startRegistry(t);
  await run('skopeo', ['copy', '-q', '--dest-tls-verify=false', `oci:${layout}:latest`, `docker://${reg.host}/app:v1`]);
  const proxy = await startShapeProxy({ upstream: reg.host, profile: { id: 'p1', label: '1 Gbit/s, 2 ms RTT', rateBitsPerSec: 1e9, rttMs: 2 } });
  t.after(() => proxy.close());
  const ctx: SampleContext = { proxy, profile: 'p1', iteration: 0, log: () => undefined, repo: () => 'app', expectedLazyLayers: () => 0 };
  const chunk = 16 << 20; // the mode's concurrent_download_chunk_size
  const bulk = Math.max(...img.layers.map((l) => l.size));
  assert.ok(bulk > chunk, `the bulk layer (${bulk} bytes) spans several chunks`);

  for (const mode of ['parallel', 'aws-parallel'] as const) {
    const [s, ...more] = await parallelSample(ctx, img, img.workloads, mode);
    assert.equal(more.length, 0, 'one row per workload');
    assert.equal(s!.mode, mode);
    assert.equal(s!.parallelLayers, img.layers.length, 'the snapshotter pulled every layer itself');
    assert.ok(s!.bytesFetched >= img.compressedBytes, `${mode} downloads every layer (${s!.bytesFetched} < ${img.compressedBytes})`);
    assert.ok(s!.rangeRequests >= Math.ceil(bulk / chunk), `${mode}: the bulk layer comes in chunks by Range requests (${s!.rangeRequests})`);
    assert.ok(s!.ttrMs >= s!.pullMs && s!.runMs > 0 && s!.pullBytes === s!.bytesFetched);
    assert.ok(s!.daemonCpuMs! > 0 && s!.daemonPeakRssBytes! > 0);
    t.diagnostic(
      `${mode}: pull ${(s!.pullMs / 1000).toFixed(2)} s + run ${(s!.runMs / 1000).toFixed(2)} s, ${(s!.bytesFetched / 1e6).toFixed(1)} MB in ${s!.rangeRequests} ranges, peak RSS ${(s!.daemonPeakRssBytes! / 1e6).toFixed(0)} MB`,
    );
  }
  // The same daemons without the mode: each defers to containerd, which pulls the layers itself.
  const n = img.layers.length;
  const off = PARALLEL_TOML.replace('enable = true', 'enable = false');
  assert.notEqual(off, PARALLEL_TOML);
  await assert.rejects(
    parallelSample(ctx, img, img.workloads, 'parallel', off),
    new RegExp(
      `\\(parallel\\): silent fallback — the snapshotter pulled 0 of ${n} layers itself \\(its decisions: deferred.* ×${n}\\), containerd's content store holds ${n} of them`,
    ),
  );
  await assert.rejects(
    parallelSample(ctx, img, img.workloads, 'aws-parallel', off),
    new RegExp(`\\(aws-parallel\\): silent fallback — the snapshotter pulled 0 of ${n} layers itself .*containerd's content store holds ${n} of them`),
  );
  // No parallel section at all: the snapshotter's own account alone still catches it.
  await assert.rejects(
    parallelSample(ctx, img, img.workloads, 'aws-parallel', ''),
    new RegExp(`\\(aws-parallel\\): silent fallback — the snapshotter pulled 0 of ${n} layers itself .*content store not checked`),
  );
});
