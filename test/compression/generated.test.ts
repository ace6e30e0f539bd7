/**
 * Generated layers through real gzip/pigz/node:zlib: native and JS engines give identical bytes,
 * every span digest and extraction is right, and the uncompressed (TarZinfo) path is exact.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { constants, createGzip, gzipSync } from 'node:zlib';
import { needs, tempDir } from '../../harness/env.js';
import { decodeCheckpoints, decodeTarZinfo, encodeTarZinfo, parseCheckpoints, extractSpans } from '../../src/compression/index.js';
import type { IndexResult } from '../../src/compression/index.js';
import { indexBlob, mixed, randomBytes, rng, run, testEngines, text, verifySpans } from './helpers.js';
import { sha256Hex } from '../../src/oci/digest.js';

const skipTools = needs({ tools: ['gzip', 'pigz'] });
const engines = testEngines();
const bitsSeen = new Set<number>();

/** Indexes with every engine, asserts identical output, verifies all spans; returns the result. */
async function check(blob: Buffer, span: number, label: string, chunk: number | (() => number) = 65536): Promise<IndexResult> {
  let first: IndexResult | undefined;
  let plain: Buffer | undefined;
  for (const e of engines) {
    const r = indexBlob(blob, 'gzip', span, e, chunk);
    if (!first) {
      first = r.result;
      plain = r.plain;
    } else {
      assert.ok(r.result.checkpoints.equals(first.checkpoints), `${label}: ${e} checkpoints equal ${engines[0]}'s`);
      assert.deepEqual(r.result.spanDigests, first.spanDigests);
      assert.equal(r.result.maxSpanId, first.maxSpanId);
      assert.ok(r.plain.equals(plain!));
    }
  }
  await verifySpans(blob, plain!, first!);
  for (const c of decodeCheckpoints(first!.checkpoints).checkpoints) bitsSeen.add(c.bits);
  return first!;
}

/** the span rule: every non-first checkpoint is > span bytes after the previous one */
function assertSpanRule(r: IndexResult, span: number): void {
  const cps = decodeCheckpoints(r.checkpoints).checkpoints;
  assert.equal(cps[0]!.out, 0);
  for (let i = 1; i < cps.length; i++) assert.ok(cps[i]!.out - cps[i - 1]!.out > span, `checkpoint ${i} respects span`);
}

const layer = mixed(6 << 20, 7);

for (const level of ['-1', '-6', '-9']) {
  test(`gzip ${level} -n: engines agree and all spans extract`, { skip: skipTools }, async () => {
    const gz = run('gzip', [level, '-n', '-c'], layer);
    const r = await check(gz, 256 << 10, `gzip ${level}`);
    assert.ok(r.maxSpanId >= 10, `expected many spans, got ${r.maxSpanId + 1}`);
    assertSpanRule(r, 256 << 10);
    assert.equal(decodeCheckpoints(r.checkpoints).checkpoints[0]!.in, 10);
  });
}

test('gzip with FNAME/MTIME header (no -n): checkpoint 0 after the longer header', { skip: skipTools }, async (t) => {
  const dir = await tempDir(t, 'soci-comp-');
  const f = join(dir, 'some-layer-name.tar');
  writeFileSync(f, layer.subarray(0, 1 << 20));
  run('gzip', ['-6', '-k', f]);
  const gz = readFileSync(`${f}.gz`);
  assert.ok((gz[3]! & 8) !== 0, 'FNAME flag set');
  const r = await check(gz, 128 << 10, 'fname');
  assert.equal(decodeCheckpoints(r.checkpoints).checkpoints[0]!.in, 10 + 'some-layer-name.tar'.length + 1);
});

test('pigz output (sync-flushed blocks) and concatenated members (cat a.gz b.gz c.gz)', { skip: skipTools }, async () => {
  const pz = run('pigz', ['-6', '-n', '-p', '2', '-b', '128', '-c'], layer);
  await check(pz, 256 << 10, 'pigz');
  const parts = [layer.subarray(0, 1_500_000), layer.subarray(1_500_000, 1_500_100), layer.subarray(1_500_100, 4_000_000), layer.subarray(4_000_000)];
  const cat = Buffer.concat(parts.map((p, i) => run(i % 2 ? 'pigz' : 'gzip', ['-6', '-n', '-c'], p)));
  const r = await check(cat, 256 << 10, 'multi-member');
  assertSpanRule(r, 256 << 10);
});

test('many small gzip members: spans and span ranges cross member boundaries', async () => {
  const members: Buffer[] = [];
  for (let i = 0; i < 40; i++) members.push(gzipSync(mixed(30_000 + i * 997, 100 + i), { level: 1 + (i % 9) }));
  const blob = Buffer.concat(members);
  const r = await check(blob, 50_000, 'small members');
  assert.ok(r.maxSpanId >= 10);
});

test('stored blocks: gzip of random data, and random bytes after text (mid-byte checkpoints before stored blocks)', { skip: skipTools }, async () => {
  await check(run('gzip', ['-6', '-n', '-c'], randomBytes(2 << 20, 3)), 128 << 10, 'random');
  const r = rng(11);
  const alt: Buffer[] = [];
  for (let i = 0; i < 60; i++) alt.push(r() < 0.5 ? text(20_000 + ((r() * 40_000) | 0), i) : randomBytes(20_000 + ((r() * 40_000) | 0), i));
  await check(run('gzip', ['-9', '-n', '-c'], Buffer.concat(alt)), 40_000, 'alternating');
});

test('tiny and empty layers', async () => {
  for (const [label, data] of [
    ['empty', Buffer.alloc(0)],
    ['one byte', Buffer.from('x')],
    ['hello', Buffer.from('hello world\n')],
    ['1 KiB', text(1024, 5)],
  ] as const) {
    const r = await check(gzipSync(data), 65536, label);
    assert.equal(r.maxSpanId, 0, label);
    assert.equal(r.checkpoints.length, 12 + 32785);
  }
});

test('span size 0: a checkpoint at every block boundary; spanSize 1 works too', async () => {
  const gz = gzipSync(mixed(400_000, 9), { level: 6, chunkSize: 4096 });
  const r0 = await check(gz, 0, 'span 0');
  const r1 = await check(gz, 1, 'span 1');
  assert.ok(r0.maxSpanId >= r1.maxSpanId && r1.maxSpanId >= 3);
});

test('blocks ending exactly on span boundaries (full flushes), incl. an empty last span', async () => {
  const span = 65536;
  const data = text(4 * (span + 1), 21);
  const gz = await new Promise<Buffer>((resolve, reject) => {
    const z = createGzip({ level: 6 });
    const out: Buffer[] = [];
    z.on('data', (b: Buffer) => out.push(b));
    z.on('end', () => resolve(Buffer.concat(out)));
    z.on('error', reject);
    const write = (i: number): void => {
      if (i === 4) {
        z.end();
        return;
      }
      z.write(data.subarray(i * (span + 1), (i + 1) * (span + 1)));
      z.flush(constants.Z_FULL_FLUSH, () => write(i + 1));
    };
    write(0);
  });
  const r = await check(gz, span, 'flush boundaries');
  const cps = decodeCheckpoints(r.checkpoints).checkpoints;
  assert.deepEqual(
    cps.map((c) => c.out),
    [0, 1, 2, 3, 4].map((i) => i * (span + 1)),
  );
  // the last checkpoint sits at the end of the data: its span is empty and extracts to nothing
  const table = parseCheckpoints(r.checkpoints, 'gzip', gz.length, data.length);
  const last = table.spans[table.maxSpanId]!;
  assert.equal(last.uStart, last.uEnd);
  assert.equal((await extractSpans(table, last.id, last.id, gz.subarray(last.cStart, last.cEnd))).length, 0);
});

test('uncompressed size short of the stream end (tar padding after end-of-archive): only the last span is trimmed', async () => {
  const data = mixed(500_000, 41);
  const gz = gzipSync(data, { level: 6 });
  const { result } = indexBlob(gz, 'gzip', 60_000, engines[0]!);
  const usize = data.length - 10_240; // what a zTOC records: the tar ends before its record padding
  const table = parseCheckpoints(result.checkpoints, 'gzip', gz.length, usize);
  const last = table.spans[table.maxSpanId]!;
  const out = await extractSpans(table, last.id, last.id, gz.subarray(last.cStart, last.cEnd));
  assert.ok(out.equals(data.subarray(last.uStart, usize)));
  const prev = table.spans[last.id - 1]!;
  const both = await extractSpans(table, prev.id, last.id, gz.subarray(prev.cStart, last.cEnd));
  assert.ok(both.equals(data.subarray(prev.uStart, usize)));
});

test('input chunking does not change the result (1..300-byte writes)', async () => {
  const gz = gzipSync(mixed(300_000, 33), { level: 9 });
  const reference = indexBlob(gz, 'gzip', 30_000, engines[0]!, 1 << 20).result;
  for (const e of engines) {
    const r = rng(99);
    const got = indexBlob(gz, 'gzip', 30_000, e, () => 1 + ((r() * 300) | 0)).result;
    assert.ok(got.checkpoints.equals(reference.checkpoints), e);
    assert.deepEqual(got.spanDigests, reference.spanDigests);
  }
});

test('checkpoints with every bit offset 1..7 were exercised by the cases above', { skip: skipTools }, () => {
  for (let b = 1; b <= 7; b++) assert.ok(bitsSeen.has(b), `bits=${b} seen`);
});

for (const [label, size] of [
  ['empty', 0],
  ['smaller than a span', 1000],
  ['exact multiple of the span', 3 * 4096],
  ['multiple of the span plus 7', 3 * 4096 + 7],
] as const) {
  test(`uncompressed tar layer: ${label}`, async () => {
    const span = 4096;
    const blob = randomBytes(size, size + 1);
    const r = indexBlob(blob, 'uncompressed', span, 'js', 1500);
    assert.equal(r.result.compression, 'uncompressed');
    assert.ok(r.plain.equals(blob));
    assert.equal(r.result.compressedSize, size);
    assert.equal(r.result.maxSpanId, Math.floor(size / span) - (size % span === 0 ? 1 : 0));
    assert.ok(r.result.checkpoints.equals(encodeTarZinfo(span, size)));
    assert.deepEqual(decodeTarZinfo(r.result.checkpoints), { version: 2, spanSize: span, size });
    const expectDigests: string[] = [];
    for (let o = 0; o < size; o += span) expectDigests.push(`sha256:${sha256Hex(blob.subarray(o, Math.min(o + span, size)))}`);
    assert.deepEqual(r.result.spanDigests, expectDigests);
    const table = await verifySpans(blob, blob, r.result);
    assert.equal(table.spans.length, expectDigests.length);
    if (size > 0) assert.equal(table.spanIdForOffset(size), table.maxSpanId, 'offset at EOF stays inside the table');
  });
}

test('TarZinfo bytes: the flatbuffer layout the Go builder emits', () => {
  // table {version:int32=2, span_size:int64, size:int64}: root offset, vtable, then fields
  const b = encodeTarZinfo(4194304, 12345678);
  const dec = decodeTarZinfo(b);
  assert.deepEqual(dec, { version: 2, spanSize: 4194304, size: 12345678 });
  assert.equal(b.readUInt32LE(0) < b.length, true);
  // size 0 is the default and is omitted, like Go's PrependInt64Slot
  assert.ok(encodeTarZinfo(4096, 0).length < b.length);
  assert.deepEqual(decodeTarZinfo(encodeTarZinfo(4096, 0)), { version: 2, spanSize: 4096, size: 0 });
});

/** A gzip stream whose deflate blocks end exactly at the given uncompressed offsets (full flushes). */
async function gzipWithBlockEnds(data: Buffer, ends: number[], level: number): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    const z = createGzip({ level });
    const out: Buffer[] = [];
    z.on('data', (b: Buffer) => out.push(b));
    z.on('end', () => resolve(Buffer.concat(out)));
    z.on('error', reject);
    let pos = 0;
    const next = (i: number): void => {
      if (i === ends.length) {
        z.end(data.subarray(pos));
        return;
      }
      z.write(data.subarray(pos, ends[i]));
      pos = ends[i]!;
      z.flush(constants.Z_FULL_FLUSH, () => next(i + 1));
    };
    next(0);
  });
}

test("fast path (Z_NO_FLUSH up to last+span) gives exactly the literal Z_BLOCK loop's checkpoints", async () => {
  const { GzipIndexer } = await import('../../src/compression/gzip-indexer.js');
  const span = 50_000;
  const data = mixed(700_000, 61);
  const inputs: Array<[string, Buffer]> = [];
  // block ends at span-1, span, span+1 (and +2) after the previous boundary, where the cap lands
  for (const d of [-1, 0, 1, 2]) {
    const ends: number[] = [];
    for (let p = span + d; p < data.length - 1000; p += span + d) ends.push(p);
    inputs.push([`ends every span${d >= 0 ? '+' : ''}${d}`, await gzipWithBlockEnds(data, ends, 6)]);
  }
  inputs.push(['empty stored block first', await gzipWithBlockEnds(data, [0, 0, 10], 6)]);
  inputs.push(['gzip -1', gzipSync(data, { level: 1 })]);
  inputs.push(['members', Buffer.concat([gzipSync(data.subarray(0, 123_456)), gzipSync(data.subarray(123_456, 123_457)), gzipSync(data.subarray(123_457))])]);
  for (const [label, gz] of inputs) {
    for (const e of engines) {
      for (const sp of [0, 1, span - 1, span, span + 1]) {
        const run1 = (zBlockEverywhere: boolean) => {
          const ix = new GzipIndexer(sp, e, () => {}, { zBlockEverywhere });
          for (let o = 0; o < gz.length; o += 30_011) ix.write(gz.subarray(o, o + 30_011));
          return ix.end();
        };
        const ref = run1(true);
        const fast = run1(false);
        assert.ok(fast.checkpoints.equals(ref.checkpoints), `${label} [${e}] span ${sp}`);
        assert.deepEqual(fast.spanDigests, ref.spanDigests);
      }
    }
  }
});
