/**
 * A stalled registry never holds a reader past its read deadline: a lazily mounted layer over FUSE
 * whose registry stops sending (no headers; mid-body; the registry process SIGSTOPped) answers the
 * read with EIO within the deadline plus 1 s, no FUSE request stays waiting, and once the registry
 * is back the same read returns the right bytes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { RegistryClient } from '../../src/registry/index.js';
import { SpanCache, mountLayer, type LayerMount } from '../../src/fs/index.js';
import { connectionWaiting, ensureFusectl } from '../../src/fuse/mounts.js';
import { buildZtoc, type FileMetadata } from '../../src/ztoc/index.js';
import { readFileVerified } from '../../src/ztoc/read-file.js';
import { needs } from '../../harness/env.js';
import { startFaultProxy } from '../../harness/fault-proxy.js';
import { pushTestImage, startRegistry } from '../../harness/registry.js';
import { scratch } from './util.js';

const DEADLINE_MS = 3000;
const STALL_MS = 1000;

async function* chunks(b: Buffer): AsyncIterable<Buffer> {
  for (let o = 0; o < b.length; o += 1 << 16) yield b.subarray(o, o + (1 << 16));
}

/** Reads a file in a child (as a container would) and times it. */
/** 4 KiB at `offset`, read by dd in a child (as a container would), timed. */
function timedRead(path: string, offset: number): Promise<{ code: number; stdout: Buffer; stderr: string; ms: number }> {
  const t0 = performance.now();
  return new Promise((res) => {
    execFile(
      'dd',
      [`if=${path}`, 'bs=4096', `skip=${offset / 4096}`, 'count=1', 'status=none'],
      { encoding: 'buffer', timeout: 60_000 },
      (err, stdout, stderr) => {
        res({ code: err ? 1 : 0, stdout, stderr: stderr.toString(), ms: performance.now() - t0 });
      },
    );
  });
}

/** Requests the kernel still waits on for the mount (fusectl; mounted by the test when absent). */
async function fuseWaiting(m: LayerMount): Promise<number | undefined> {
  return connectionWaiting(m.server.connectionId!);
}

test('read deadline: a stalled or frozen registry gives EIO in time, and the right bytes after', {
  skip: needs({ root: true, tools: ['docker-registry', 'skopeo', 'dd'] }),
  timeout: 300_000,
}, async (t) => {
  const { dir, defer } = await scratch(t, 'soci-deadline-');
  await ensureFusectl(); // not every host mounts /sys/fs/fuse/connections
  const reg = await startRegistry(t);
  const img = await pushTestImage(reg, 'app', { layers: 1, layerBytes: 8 << 20 });
  const layer = img.manifests[0]!.layers[0]!;
  const ztoc = await buildZtoc(chunks(layer.bytes), { compression: 'gzip', spanSize: 256 << 10 });
  const big = ztoc.toc.find((e: FileMetadata) => e.type === 'reg' && e.uncompressedSize >= 3 << 20)!;
  assert.ok(big, 'the test image has a file of several spans');
  const content = await readFileVerified(ztoc, big.name.toString('latin1'), async (s, x) => layer.bytes.subarray(s, x), layer.digest);
  // Each case reads 4 KiB in a span of its own (1 MiB apart), so nothing is served from the cache.
  const at = (i: number) => (i + 1) * (1 << 20);

  const proxy = await startFaultProxy(t, reg.host);
  const client = new RegistryClient({
    registry: proxy.host,
    plainHttp: true,
    headersTimeoutMs: STALL_MS,
    bodyTimeoutMs: STALL_MS,
    retry: { maxAttempts: 3, baseDelayMs: 50 },
  });
  defer(() => client.close());
  const mnt = join(dir, 'mnt');
  await mkdir(mnt);
  const cache = new SpanCache({ dir: join(dir, 'cache'), maxBytes: 256 << 20 });
  const m = await mountLayer({
    ztoc,
    layer: { mediaType: layer.mediaType, digest: layer.digest, size: layer.size },
    blob: client.blobSource('app', layer.digest, layer.size),
    mountpoint: mnt,
    cache,
    options: { readTimeoutMs: DEADLINE_MS, fetchTimeoutMs: 60_000, readaheadMaxSpans: -1 },
  });
  defer(() => m.unmount());
  const path = join(mnt, big.name.toString('latin1').replace(/^\.\//, ''));

  const cases: Array<[string, () => Promise<void> | void, () => Promise<void> | void]> = [
    ['no headers', () => proxy.add({ path: '/blobs/', times: 1000, fault: { kind: 'stall', afterBytes: -1 } }), () => proxy.clear()],
    ['mid-body', () => proxy.add({ path: '/blobs/', times: 1000, fault: { kind: 'stall', afterBytes: 4096 } }), () => proxy.clear()],
    ['registry SIGSTOPped', () => void process.kill(reg.pid, 'SIGSTOP'), () => void process.kill(reg.pid, 'SIGCONT')],
  ];
  for (const [i, [name, freeze, thaw]] of cases.entries()) {
    await freeze();
    if (process.env.DEBUG_DEADLINE) process.stderr.write(`case ${name} frozen\n`);
    let r;
    try {
      r = await timedRead(path, at(i));
    } finally {
      await thaw();
    }
    assert.notEqual(r.code, 0, `${name}: the read fails`);
    assert.match(r.stderr, /Input\/output error/, name);
    // The bound is the point of the test (a reader is never held longer), not a speed figure.
    assert.ok(r.ms < DEADLINE_MS + 1000, `${name}: EIO after ${Math.round(r.ms)} ms, deadline ${DEADLINE_MS} ms`);
    assert.equal(await fuseWaiting(m), 0, `${name}: no FUSE request left waiting`);
    if (process.env.DEBUG_DEADLINE) process.stderr.write(`case ${name}: ${r.code} in ${Math.round(r.ms)} ms ${r.stderr}\n`);
    // The fetch that outlived the reader goes on and recovers on a new connection; a reader that
    // retries meanwhile gets EIO quickly, then the bytes.
    let again = await timedRead(path, at(i));
    for (let k = 0; again.code !== 0 && k < 40; k++) {
      await new Promise((res) => setTimeout(res, 250));
      again = await timedRead(path, at(i));
    }
    if (process.env.DEBUG_DEADLINE) process.stderr.write(`case ${name} again: ${again.code} in ${Math.round(again.ms)} ms\n`);
    assert.equal(again.code, 0, again.stderr);
    assert.ok(again.stdout.equals(content.subarray(at(i), at(i) + 4096)), `${name}: the right bytes once the registry answers`);
  }
});
