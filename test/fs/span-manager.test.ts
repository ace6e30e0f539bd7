/**
 * SpanManager / SpanCache / BackgroundFetcher against a real gzip layer and a file-backed BlobSource
 * that counts Range reads and can corrupt, fail or stall them. The uncompressed tar is the oracle.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, readdir, readlink, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { needs } from '../../harness/env.js';
import { spanTable } from '../../src/ztoc/index.js';
import { BackgroundFetcher, FailureLog, SpanCache, type SpanManager, mountLayer, type FailureReport, type LayerFailure } from '../../src/fs/index.js';
import { fakeSource, fixture, manager } from './span-fixture.js';

const pexec = promisify(execFile);

async function du(dir: string): Promise<number> {
  let total = 0;
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true }).catch(() => [])) {
    if (e.isFile()) total += (await stat(join(e.parentPath ?? (e as unknown as { path: string }).path, e.name))).size;
  }
  return total;
}

test('span manager: concurrent readers share one fetch; adjacent spans in one request; reads are exact', async (t) => {
  const f = await fixture(t);
  const src = await fakeSource(f.gz);
  src.delayMs = 50;
  const cache = new SpanCache({ dir: join(f.dir, 'cache') });
  // Readahead off: this test pins down the requests that reads alone make.
  const m = manager(f, src, cache, { readaheadMaxSpans: 0 });
  const table = spanTable(f.ztoc);
  assert.ok(table.spans.length >= 10, `want many spans, got ${table.spans.length}`);

  // 8 concurrent readers inside span 3.
  const sp = table.spans[3]!;
  const reads = await Promise.all(Array.from({ length: 8 }, (_, i) => m.read(sp.uStart + i * 100, 1000)));
  for (const [i, r] of reads.entries()) assert.ok(r.equals(f.tar.subarray(sp.uStart + i * 100, sp.uStart + i * 100 + 1000)));
  assert.equal(src.calls.length, 1, 'one Range request for one span');
  assert.deepEqual(src.calls[0], [sp.cStart, sp.cEnd]);

  // A read spanning spans 5..8 (all missing) → one request covering exactly them.
  const a = table.spans[5]!.uStart + 10;
  const b = table.spans[8]!.uStart + 20;
  const r = await m.read(a, b - a);
  assert.ok(r.equals(f.tar.subarray(a, b)));
  assert.equal(src.calls.length, 2);
  assert.deepEqual(src.calls[1], [table.spans[5]!.cStart, table.spans[8]!.cEnd]);
  assert.equal(m.stats().spansFetched, 5);

  await m.settled();
  // Re-reading is served from the cache; a read mixing cached (4..5) and missing (4 is missing) spans.
  const again = await m.read(sp.uStart, 5000);
  assert.ok(again.equals(f.tar.subarray(sp.uStart, sp.uStart + 5000)));
  assert.equal(src.calls.length, 2);
  const mixed = await m.read(table.spans[2]!.uStart, table.spans[6]!.uEnd - table.spans[2]!.uStart);
  assert.ok(mixed.equals(f.tar.subarray(table.spans[2]!.uStart, table.spans[6]!.uEnd)));
  assert.equal(src.calls.length, 4, 'spans 2 and 4 fetched separately (3 and 5..6 cached in between)');
  assert.ok(m.stats().cacheHits >= 3);

  // A read ending exactly on a span boundary does not pull the next span.
  const before = src.calls.length;
  await m.read(table.spans[9]!.uStart, table.spans[9]!.uEnd - table.spans[9]!.uStart);
  assert.equal(src.calls.length, before + 1);
  assert.deepEqual(src.calls.at(-1), [table.spans[9]!.cStart, table.spans[9]!.cEnd]);
});

test('span manager: a sequential reader gets the spans after its own fetched ahead, in requests of their own', async (t) => {
  const f = await fixture(t);
  const table = spanTable(f.ztoc);
  const n = table.spans.length;
  const total = table.spans.at(-1)!.uEnd;
  const scan = async (m: SpanManager, step: number, useInto: boolean) => {
    const dst = Buffer.alloc(step);
    for (let o = 0; o < total; o += step) {
      const r = useInto ? await m.readInto(o, step, dst) : await m.read(o, step);
      assert.ok(r.equals(f.tar.subarray(o, Math.min(total, o + step))), `read at ${o}`);
    }
  };
  for (const useInto of [false, true]) {
    const src = await fakeSource(f.gz);
    src.delayMs = 20;
    const m = manager(f, src, new SpanCache({ dir: join(f.dir, `cache-seq-${useInto}`) }), { readaheadMaxSpans: 4 });
    await scan(m, 16384, useInto);
    await m.settled();
    const st = m.stats();
    // Only the first two spans are waited for by the reader; every later one was already on its way.
    assert.equal(st.cacheMisses, 2, `misses ${st.cacheMisses} (readInto: ${useInto})`);
    assert.equal(st.readaheadSpans, n - 2);
    // Each span fetched exactly once, needed spans apart from the spans ahead: [0] [1] [2..3] [4..7] [8..11] ...
    const ids = src.calls.map(([a, b]) => [table.spans.findIndex((sp) => sp.cStart === a), table.spans.findIndex((sp) => sp.cEnd === b)]);
    assert.deepEqual(ids.slice(0, 4), [
      [0, 0],
      [1, 1],
      [2, 3],
      [4, 7],
    ]);
    const fetched = ids.flatMap(([a, b]) => Array.from({ length: b! - a! + 1 }, (_, i) => a! + i));
    assert.deepEqual(
      fetched.sort((a, b) => a - b),
      Array.from({ length: n }, (_, i) => i),
      'every span fetched once, none skipped',
    );
  }

  // A reader of a file that ends at span 5 gets nothing fetched past span 5.
  const fsrc = await fakeSource(f.gz);
  const fm = manager(f, fsrc, new SpanCache({ dir: join(f.dir, 'cache-file') }), { readaheadMaxSpans: 8 });
  const fileEnd = table.spans[5]!.uStart + 100;
  for (let o = 0; o < fileEnd; o += 16384) {
    const len = Math.min(16384, fileEnd - o);
    assert.ok((await fm.read(o, len, fileEnd)).equals(f.tar.subarray(o, o + len)));
  }
  await fm.settled();
  assert.equal(fm.stats().fetchedSpans, 6, 'spans 0..5, none past the file');
  assert.ok(fm.stats().readaheadSpans > 0);

  // Off: one request per span, each waited for.
  const src = await fakeSource(f.gz);
  const off = manager(f, src, new SpanCache({ dir: join(f.dir, 'cache-off') }), { readaheadMaxSpans: 0 });
  await scan(off, 16384, false);
  assert.equal(off.stats().readaheadSpans, 0);
  assert.equal(src.calls.length, n);
  assert.equal(off.stats().cacheMisses, n);

  // Random reads with readahead in flight stay exact (whether they start a stream is readahead.test.ts's).
  const rsrc = await fakeSource(f.gz);
  const rnd = manager(f, rsrc, new SpanCache({ dir: join(f.dir, 'cache-rnd') }));
  let x = 4242;
  for (let i = 0; i < 25; i++) {
    x = (x * 1103515245 + 12345) % 2147483648;
    const o = x % total;
    assert.ok((await rnd.read(o, 2000)).equals(f.tar.subarray(o, Math.min(total, o + 2000))));
  }
  await rnd.settled();
});

test('span manager: corrupted bytes are refetched, and never served when they stay wrong', async (t) => {
  const f = await fixture(t);
  const src = await fakeSource(f.gz);
  const reports: FailureReport[] = [];
  const m = manager(f, src, new SpanCache({ dir: join(f.dir, 'cache') }), { retries: 2, onFailure: (r) => reports.push(r) });
  const table = spanTable(f.ztoc);
  const sp = table.spans[4]!;
  src.corrupt = 1;
  const r = await m.read(sp.uStart, 4096);
  assert.ok(r.equals(f.tar.subarray(sp.uStart, sp.uStart + 4096)));
  assert.equal(src.calls.length, 2);
  assert.equal(m.stats().verifyFailures, 1);
  // every failed attempt is reported, naming the span and the bytes
  assert.equal(reports.length, 1);
  assert.deepEqual(reports[0]!.spans, [4, 4]);
  assert.equal(reports[0]!.kind, 'span_verification');
  assert.match(reports[0]!.cause, new RegExp(`attempt 1 of 3: compressed bytes ${sp.cStart}-${sp.cEnd} .*do not match`));

  const sp2 = table.spans[7]!;
  src.corrupt = 100;
  await assert.rejects(m.read(sp2.uStart, 4096), (e: Error & { code?: string }) => e.code === 'ERR_DIGEST_MISMATCH');
  assert.equal(src.calls.length, 2 + 3, '1 try + 2 retries');
  assert.equal(reports.filter((x) => x.kind === 'span_verification' && x.spans?.[0] === 7).length, 3, 'one report per attempt');
  // Once the source is healthy again the span is fetched (no poisoned cache).
  src.corrupt = 0;
  assert.ok((await m.read(sp2.uStart, 4096)).equals(f.tar.subarray(sp2.uStart, sp2.uStart + 4096)));

  // Transient network failures are retried.
  const sp3 = table.spans[10]!;
  src.fail = 2;
  assert.ok((await m.read(sp3.uStart, 100)).equals(f.tar.subarray(sp3.uStart, sp3.uStart + 100)));
  assert.equal(m.stats().fetchFailures, 2);
  const net = reports.filter((x) => x.kind === 'registry');
  assert.deepEqual(
    net.map((x) => x.cause),
    ['attempt 1 of 3: injected network failure', 'attempt 2 of 3: injected network failure'],
  );
  assert.deepEqual(net[0]!.spans, [10, 10]);
});

test('span manager: verifyRetries bounds refetches of bad bytes apart from fetch retries (AWS max_span_verification_retries)', async (t) => {
  const f = await fixture(t);
  const src = await fakeSource(f.gz);
  const reports: FailureReport[] = [];
  // AWS's default: 0, one fetch per read when the bytes are wrong; network failures still retried
  const m = manager(f, src, new SpanCache({ dir: join(f.dir, 'cache') }), { retries: 2, verifyRetries: 0, onFailure: (r) => reports.push(r) });
  const table = spanTable(f.ztoc);
  src.corrupt = 100;
  await assert.rejects(m.read(table.spans[3]!.uStart, 4096), (e: Error & { code?: string }) => e.code === 'ERR_DIGEST_MISMATCH');
  assert.equal(src.calls.length, 1, 'no refetch after a digest mismatch');
  assert.match(reports[0]!.cause, /^attempt 1 of 1: /);
  src.corrupt = 0;
  src.fail = 2;
  assert.ok((await m.read(table.spans[5]!.uStart, 100)).equals(f.tar.subarray(table.spans[5]!.uStart, table.spans[5]!.uStart + 100)));
  assert.equal(m.stats().fetchFailures, 2);
  // and one failed fetch beside a bad body: each budget counts its own kind
  const m2 = manager(f, src, new SpanCache({ dir: join(f.dir, 'cache2') }), { retries: 1, verifyRetries: 1, onFailure: () => undefined });
  src.calls.length = 0;
  src.fail = 1;
  src.corrupt = 1;
  assert.ok((await m2.read(table.spans[6]!.uStart, 100)).equals(f.tar.subarray(table.spans[6]!.uStart, table.spans[6]!.uStart + 100)));
  assert.equal(src.calls.length, 3, 'a failed fetch, a bad body, then good bytes');
  // the span cache writes go on after the reads return: wait for them before the dir is removed
  await m.settled();
  await m2.settled();
});

test('span manager: a stalled source fails the read within the timeout (never hangs)', async (t) => {
  const f = await fixture(t);
  const src = await fakeSource(f.gz);
  src.stall = true;
  const m = manager(f, src, new SpanCache({ dir: join(f.dir, 'cache') }), { fetchTimeoutMs: 300, retries: 1, readTimeoutMs: 1500 });
  const t0 = Date.now();
  await assert.rejects(m.read(0, 100), (e: Error & { code?: string }) => e.code === 'ERR_IO' || e.code === 'ERR_TIMEOUT');
  const took = Date.now() - t0;
  assert.ok(took < 1600, `took ${took} ms`);
  assert.equal(src.calls.length, 2, 'one try and one retry, each timed out');
  // A read deadline shorter than the fetch attempts bounds the read too.
  const reports: FailureReport[] = [];
  const m2 = manager(f, src, new SpanCache({ dir: join(f.dir, 'cache2') }), {
    fetchTimeoutMs: 10_000,
    retries: 3,
    readTimeoutMs: 400,
    onFailure: (r) => reports.push(r),
  });
  const t1 = Date.now();
  await assert.rejects(m2.read(0, 100), (e: Error & { code?: string }) => e.code === 'ERR_TIMEOUT');
  assert.ok(Date.now() - t1 < 1000);
  assert.equal(reports.length, 1);
  assert.equal(reports[0]!.kind, 'read_deadline');
  assert.deepEqual(reports[0]!.spans, [0, 0]);
  assert.match(reports[0]!.cause, /did not finish within 400 ms/);
});

test('span cache: the cap is respected across a full scan and reads stay correct', async (t) => {
  const f = await fixture(t);
  const src = await fakeSource(f.gz);
  const table = spanTable(f.ztoc);
  const cap = 4 * 70_000; // about four spans
  const cacheDir = join(f.dir, 'cache');
  const cache = new SpanCache({ dir: cacheDir, maxBytes: cap });
  const m = manager(f, src, cache);
  const total = table.spans.at(-1)!.uEnd;
  let maxDu = 0;
  // Sequential 128 KiB reads, then a random pattern: always the tar's bytes.
  for (let o = 0; o < total; o += 131072) {
    const r = await m.read(o, 131072);
    assert.ok(r.equals(f.tar.subarray(o, Math.min(total, o + 131072))), `sequential read at ${o}`);
    await m.settled();
    maxDu = Math.max(maxDu, await du(cacheDir));
  }
  let x = 12345;
  for (let i = 0; i < 60; i++) {
    x = (x * 1103515245 + 12345) % 2147483648;
    const o = x % total;
    const r = await m.read(o, 20000);
    assert.ok(r.equals(f.tar.subarray(o, Math.min(total, o + 20000))), `random read at ${o}`);
    await m.settled();
    maxDu = Math.max(maxDu, await du(cacheDir));
  }
  const cs = cache.stats();
  assert.ok(cs.evictions > 0, 'evictions happened');
  assert.ok(cs.bytes <= cap, `cache accounts ${cs.bytes} > cap ${cap}`);
  assert.ok(maxDu <= cap, `disk usage ${maxDu} > cap ${cap}`);
  assert.ok(src.calls.length > table.spans.length, 'evicted spans were fetched again');
});

/** Descriptors of this process open on files under `dir` (deleted ones included). */
async function openFilesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const fd of await readdir('/proc/self/fd')) {
    const target = await readlink(`/proc/self/fd/${fd}`).catch(() => '');
    if (target.startsWith(dir + '/')) out.push(target);
  }
  return out;
}

test('span cache: readInto preads cached ranges into the caller buffer; descriptors bounded and closed on eviction and drop', async (t) => {
  const f = await fixture(t);
  const src = await fakeSource(f.gz);
  const table = spanTable(f.ztoc);
  const cacheDir = join(f.dir, 'cache');
  // No memory tier: every cached read goes to a span file.
  const cache = new SpanCache({ dir: cacheDir, hotMaxBytes: 0, maxOpenFiles: 3 });
  const m = manager(f, src, cache);
  const total = table.spans.at(-1)!.uEnd;
  await m.read(0, total);
  await m.settled();
  const fetches = src.calls.length;
  const dst = Buffer.alloc(131072);
  let x = 777;
  for (let i = 0; i < 80; i++) {
    x = (x * 1103515245 + 12345) % 2147483648;
    const o = x % total;
    const len = 1 + (x % dst.length);
    dst.fill(0xaa);
    const r = await m.readInto(o, len, dst);
    assert.ok(r.equals(f.tar.subarray(o, Math.min(total, o + len))), `readInto at ${o}+${len}`);
    assert.equal(r.buffer, dst.buffer, 'served in the caller buffer');
  }
  // Concurrent reads straddling span boundaries, each into its own buffer.
  const bufs = Array.from({ length: 6 }, () => Buffer.alloc(100_000));
  const offs = bufs.map((_, i) => table.spans[i + 2]!.uEnd - 50_000);
  const rs = await Promise.all(bufs.map((b, i) => m.readInto(offs[i]!, b.length, b)));
  for (const [i, r] of rs.entries()) assert.ok(r.equals(f.tar.subarray(offs[i]!, offs[i]! + 100_000)));
  assert.equal(src.calls.length, fetches, 'nothing fetched again');
  const cs = cache.stats();
  assert.ok(cs.diskReads >= 80, `disk reads ${cs.diskReads}`);
  assert.equal(cs.hotHits, 0);
  assert.ok(cs.openFiles <= 3, `${cs.openFiles} span files open`);
  assert.ok((await openFilesUnder(cacheDir)).length <= 3);
  // A range longer than the buffer, or beyond the end, still reads right (read() path / clamped).
  assert.ok((await m.readInto(10, 200_000, dst)).equals(f.tar.subarray(10, 200_010)));
  assert.ok((await m.readInto(total - 5, 100, dst)).equals(f.tar.subarray(total - 5, total)));
  assert.equal((await m.readInto(total, 100, dst)).length, 0);

  // With the memory tier, a range inside one just-fetched span is a view of it (no copy).
  const hotCache = new SpanCache({ dir: join(f.dir, 'cache-hot') });
  const mh = manager(f, await fakeSource(f.gz), hotCache);
  const sp = table.spans[4]!;
  await mh.read(sp.uStart, 10);
  await mh.settled();
  const v = await mh.readInto(sp.uStart + 100, 5000, dst);
  assert.ok(v.equals(f.tar.subarray(sp.uStart + 100, sp.uStart + 5100)));
  assert.notEqual(v.buffer, dst.buffer);
  assert.equal(hotCache.stats().hotHits, 1);

  // Evicted spans (small cap) leave no descriptor behind on their deleted files.
  const small = new SpanCache({ dir: join(f.dir, 'cache-small'), maxBytes: 3 * 70_000, hotMaxBytes: 0, maxOpenFiles: 2 });
  const ms = manager(f, await fakeSource(f.gz), small);
  for (let o = 0; o < total; o += 50_000) {
    await ms.read(o, 50_000);
    await ms.settled();
    const r = await ms.readInto(Math.max(0, o - 60_000), 100_000, dst);
    assert.ok(r.equals(f.tar.subarray(Math.max(0, o - 60_000), Math.min(total, Math.max(0, o - 60_000) + 100_000))));
  }
  assert.ok(small.stats().evictions > 0);
  const left = await openFilesUnder(join(f.dir, 'cache-small'));
  assert.ok(left.length <= 2 && !left.some((p) => p.endsWith('(deleted)')), `open: ${left.join(', ')}`);

  // Dropping the layer closes its descriptors.
  await cache.dropLayer('sha256:test');
  assert.equal(cache.stats().openFiles, 0);
  assert.deepEqual(await openFilesUnder(cacheDir), []);
});

test('background fetcher: waits for the quiet period, fetches every span one at a time, stops on unregister', async (t) => {
  const f = await fixture(t);
  const src = await fakeSource(f.gz);
  const m = manager(f, src, new SpanCache({ dir: join(f.dir, 'cache') }));
  const bg = new BackgroundFetcher({ silencePeriodMs: 300, fetchPeriodMs: 10 });
  t.after(() => bg.stop());
  bg.register(m);
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(src.calls.length, 0, 'quiet period honoured');
  const n = spanTable(f.ztoc).spans.length;
  for (let i = 0; i < 300 && m.stats().fetchedSpans < n; i++) await new Promise((r) => setTimeout(r, 20));
  assert.equal(m.stats().fetchedSpans, n);
  assert.equal(src.calls.length, n, 'one request per span');
  assert.equal(bg.pending, 0);

  // Unregister stops a layer mid-way.
  const src2 = await fakeSource(f.gz);
  const m2 = manager(f, src2, new SpanCache({ dir: join(f.dir, 'cache2') }));
  const bg2 = new BackgroundFetcher({ silencePeriodMs: 0, fetchPeriodMs: 30 });
  t.after(() => bg2.stop());
  bg2.register(m2);
  await new Promise((r) => setTimeout(r, 150));
  bg2.unregister(m2);
  const after = src2.calls.length;
  assert.ok(after > 0 && after < n, `fetched ${after} of ${n}`);
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(src2.calls.length, after);
});

test('background fetcher: a full queue drops the newest layer by default, the oldest with drop policy "oldest"', async (t) => {
  const f = await fixture(t);
  const src = await fakeSource(f.gz);
  const layers = [0, 1, 2].map((i) => manager(f, src, new SpanCache({ dir: join(f.dir, `cache-drop-${i}`) })));
  for (const [policy, kept] of [
    ['newest', [0, 1]],
    ['oldest', [1, 2]],
  ] as const) {
    // A long quiet period: nothing is fetched, the queue is all there is to see.
    const bg = new BackgroundFetcher({ silencePeriodMs: 60_000, maxQueueSize: 2, dropPolicy: policy });
    t.after(() => bg.stop());
    for (const m of layers) bg.register(m);
    assert.equal(bg.pending, 2, policy);
    assert.equal(bg.counters.dropped, 1, policy);
    assert.deepEqual(
      layers.map((m) => bg.has(m)),
      [0, 1, 2].map((i) => (kept as readonly number[]).includes(i)),
      policy,
    );
    bg.stop();
  }
});

test('background fetcher: yields while readers of a registered layer are fetching, then resumes', async (t) => {
  const f = await fixture(t);
  const src = await fakeSource(f.gz);
  const m = manager(f, src, new SpanCache({ dir: join(f.dir, 'cache') }), { readaheadMaxSpans: 0 });
  const table = spanTable(f.ztoc);
  const n = table.spans.length;
  const bg = new BackgroundFetcher({ silencePeriodMs: 0, fetchPeriodMs: 20 });
  t.after(() => bg.stop());
  // A slow reader: each of its misses takes 150 ms, one after another, from the last span down.
  src.delayMs = 150;
  bg.register(m);
  const reading = (async () => {
    for (let id = n - 1; id >= n - 4; id--) await m.read(table.spans[id]!.uStart, 100);
  })();
  await reading;
  const during = src.calls.length;
  assert.equal(during, 4, 'only the reader fetched while it was reading');
  assert.ok(bg.counters.yielded > 5, `yielded ${bg.counters.yielded} times`);
  src.delayMs = 0;
  for (let i = 0; i < 300 && m.stats().fetchedSpans < n; i++) await new Promise((r) => setTimeout(r, 20));
  assert.equal(m.stats().fetchedSpans, n, 'the fetcher resumed once the reader was done');
  assert.equal(src.calls.length, n, 'spans the reader fetched were skipped');
});

test('through FUSE: unverifiable spans give EIO to the reader and the error lands in the state file', {
  skip: needs({ root: true }),
  timeout: 60_000,
}, async (t) => {
  const f = await fixture(t);
  const src = await fakeSource(f.gz);
  src.corrupt = 1_000_000;
  const mnt = join(f.dir, 'mnt');
  await mkdir(mnt);
  const digest = `sha256:${'cd'.repeat(32)}`;
  const lines: Array<[LayerFailure, number]> = [];
  const counted: LayerFailure[] = [];
  const failures = new FailureLog({ write: (x, n) => lines.push([x, n]), count: (x) => counted.push(x) });
  const lm = await mountLayer({
    ztoc: f.ztoc,
    layer: { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest, size: src.size },
    blob: src,
    mountpoint: mnt,
    cache: new SpanCache({ dir: join(f.dir, 'cache') }),
    options: { retries: 1, readTimeoutMs: 3000, onFailure: (x) => failures.report(x) },
  });
  f.defer(() => lm.unmount());
  for (let i = 0; i < 3; i++) {
    const r = await pexec('cat', [join(mnt, 'small.txt')]).then(
      () => 'ok',
      (e: { stderr: string }) => e.stderr,
    );
    assert.match(r, /Input\/output error/);
  }
  // Three readers, two attempts each: six verification failures counted, one line written for the
  // span (and one for the file that got EIO), each naming the layer.
  assert.ok(counted.filter((x) => x.kind === 'span_verification').length >= 6);
  assert.deepEqual(
    lines.map(([x]) => [x.kind, x.layer]),
    [
      ['span_verification', digest],
      ['read', digest],
    ],
  );
  assert.equal(lines[1]![0].entry, 'small.txt');
  assert.match(lines[1]![0].cause, /does not match its zTOC digest/);
  const state = JSON.parse((await pexec('cat', [join(mnt, '.soci-snapshotter', `${digest}.json`)])).stdout) as { error?: string; fetchedSize: number };
  assert.match(state.error ?? '', /does not match/);
  assert.equal(state.fetchedSize, 0);
  // Healthy again: the same file reads correctly (the failure was not cached).
  src.corrupt = 0;
  assert.equal((await pexec('cat', [join(mnt, 'small.txt')])).stdout, 'hello\n');
});

test('mountLayer: prefetch spans are fetched once mounted, in one request, and `prefetched` settles after them', {
  skip: needs({ root: true }),
  timeout: 60_000,
}, async (t) => {
  const f = await fixture(t);
  const src = await fakeSource(f.gz);
  const mnt = join(f.dir, 'mnt');
  await mkdir(mnt);
  const digest = `sha256:${'ef'.repeat(32)}`;
  const lm = await mountLayer({
    ztoc: f.ztoc,
    layer: { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest, size: src.size },
    blob: src,
    mountpoint: mnt,
    cache: new SpanCache({ dir: join(f.dir, 'cache') }),
    options: { prefetch: [{ start_span: 2, end_span: 4 }] },
  });
  f.defer(() => lm.unmount());
  await lm.prefetched;
  const st = lm.stats();
  assert.equal(st.fetchedSpans, 3);
  assert.equal(st.rangeRequests, 1);
  const table = spanTable(f.ztoc);
  assert.deepEqual(src.calls[0], [table.spans[2]!.cStart, table.spans[4]!.cEnd]);
});
