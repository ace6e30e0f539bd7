/**
 * Corrupt input never crashes and never yields wrong data silently: the indexer throws
 * ERR_BAD_GZIP, parseCheckpoints throws only ERR_INVALID_CHECKPOINTS (bounded fuzz, fixed seed),
 * extractSpans throws ERR_BAD_GZIP when the bytes it produces cannot be right.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import { isSociError } from '../../src/errors.js';
import { createLayerIndexer, decodeCheckpoints, encodeCheckpoints, encodeTarZinfo, extractSpans, parseCheckpoints } from '../../src/compression/index.js';
import { indexBlob, mixed, randomBytes, rng, testEngines } from './helpers.js';

const engines = testEngines();
const plain = mixed(600_000, 4);
const good = gzipSync(plain, { level: 6 });

function expectBadGzip(blob: Buffer, label: string): void {
  for (const e of engines) {
    assert.throws(
      () => indexBlob(blob, 'gzip', 65536, e, 7000),
      (err: unknown) => isSociError(err, 'ERR_BAD_GZIP'),
      `${label} [${e}] → ERR_BAD_GZIP`,
    );
  }
}

test('the untouched stream indexes (control)', () => {
  for (const e of engines) assert.ok(indexBlob(good, 'gzip', 65536, e).plain.equals(plain));
});

test('truncated gzip at many points → ERR_BAD_GZIP', () => {
  for (const cut of [0, 1, 5, 9, 10, 11, 100, 5000, good.length >> 1, good.length - 9, good.length - 8, good.length - 4, good.length - 1]) {
    expectBadGzip(good.subarray(0, cut), `cut at ${cut}`);
  }
});

test('flipped bytes in deflate data → ERR_BAD_GZIP (data error or CRC mismatch)', () => {
  const r = rng(5);
  for (let i = 0; i < 25; i++) {
    const b = Buffer.from(good);
    // inside the deflate data, away from the final byte whose padding bits are ignored
    const pos = 10 + ((r() * (good.length - 30)) | 0);
    b[pos] = b[pos]! ^ (1 + ((r() * 255) | 0));
    expectBadGzip(b, `flip at ${pos}`);
  }
});

test('bad CRC, bad ISIZE, bad magic, bad method → ERR_BAD_GZIP', () => {
  const crc = Buffer.from(good);
  crc[good.length - 8] = crc[good.length - 8]! ^ 0x01;
  expectBadGzip(crc, 'crc');
  const isize = Buffer.from(good);
  isize[good.length - 2] = isize[good.length - 2]! ^ 0x10;
  expectBadGzip(isize, 'isize');
  const magic = Buffer.from(good);
  magic[1] = 0x00;
  expectBadGzip(magic, 'magic');
  const method = Buffer.from(good);
  method[2] = 7;
  expectBadGzip(method, 'method');
});

test('garbage and trailing garbage → ERR_BAD_GZIP', () => {
  for (let s = 1; s <= 20; s++) expectBadGzip(randomBytes(1 + s * 311, s), `garbage ${s}`);
  expectBadGzip(Buffer.concat([Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]), randomBytes(5000, 77)]), 'header + garbage');
  expectBadGzip(Buffer.concat([good, Buffer.from('trailing junk')]), 'trailing junk');
  expectBadGzip(Buffer.concat([good, Buffer.alloc(16)]), 'trailing zeros');
});

test('after a failure the indexer keeps failing; end() on an empty stream fails', () => {
  for (const e of engines) {
    const ix = createLayerIndexer({ compression: 'gzip', spanSize: 1 << 20, engine: e, onData: () => {} });
    assert.throws(
      () => ix.write(randomBytes(1000, 1)),
      (err: unknown) => isSociError(err, 'ERR_BAD_GZIP'),
    );
    assert.throws(
      () => ix.write(good),
      (err: unknown) => isSociError(err, 'ERR_BAD_GZIP'),
    );
    const empty = createLayerIndexer({ compression: 'gzip', spanSize: 1 << 20, engine: e, onData: () => {} });
    assert.throws(
      () => empty.end(),
      (err: unknown) => isSociError(err, 'ERR_BAD_GZIP'),
    );
  }
});

test('extractSpans: corrupt span data or a lying checkpoint table → ERR_BAD_GZIP, wrong input length → error', async () => {
  const { result } = indexBlob(good, 'gzip', 65536, engines[0]!);
  const table = parseCheckpoints(result.checkpoints, 'gzip', good.length, plain.length);
  const s = table.spans[2]!;
  const bytes = good.subarray(s.cStart, s.cEnd);
  // a table claiming one more uncompressed byte for span 2 than the data yields
  const dec = decodeCheckpoints(result.checkpoints);
  const cps = dec.checkpoints.map((c) => ({ ...c }));
  cps[3]!.out += 1;
  const lying = parseCheckpoints(encodeCheckpoints(dec.spanSize, cps), 'gzip', good.length, plain.length);
  await assert.rejects(extractSpans(lying, 2, 2, bytes), (err: unknown) => isSociError(err, 'ERR_BAD_GZIP'));
  cps[3]!.out -= 2;
  const short = parseCheckpoints(encodeCheckpoints(dec.spanSize, cps), 'gzip', good.length, plain.length);
  await assert.rejects(extractSpans(short, 2, 2, bytes), (err: unknown) => isSociError(err, 'ERR_BAD_GZIP'));
  // garbage where the deflate data should be
  await assert.rejects(extractSpans(table, 2, 2, randomBytes(bytes.length, 8)), (err: unknown) => isSociError(err, 'ERR_BAD_GZIP'));
  // truncated fetch
  await assert.rejects(extractSpans(table, 2, 2, bytes.subarray(1)), (err: unknown) => isSociError(err));
  await assert.rejects(extractSpans(table, 5, 2, bytes), (err: unknown) => isSociError(err));
});

test('parseCheckpoints rejects bad lengths, counts, bits, non-monotonic and out-of-range checkpoints', () => {
  const { result } = indexBlob(good, 'gzip', 65536, engines[0]!);
  const cs = good.length;
  const us = plain.length;
  const bad = (b: Buffer, label: string, c = cs, u = us) =>
    assert.throws(
      () => parseCheckpoints(b, 'gzip', c, u),
      (err: unknown) => isSociError(err, 'ERR_INVALID_CHECKPOINTS'),
      label,
    );
  bad(Buffer.alloc(0), 'empty');
  bad(Buffer.alloc(11), 'short header');
  bad(result.checkpoints.subarray(0, result.checkpoints.length - 1), 'one byte short');
  bad(Buffer.concat([result.checkpoints, Buffer.alloc(1)]), 'one byte long');
  const zero = Buffer.from(result.checkpoints.subarray(0, 12));
  zero.writeInt32LE(0, 0);
  bad(zero, 'zero checkpoints');
  const bits = Buffer.from(result.checkpoints);
  bits[12 + 16] = 9;
  bad(bits, 'bits 9');
  const dec = decodeCheckpoints(result.checkpoints);
  const swap = dec.checkpoints.map((c) => ({ ...c }));
  [swap[1], swap[2]] = [swap[2]!, swap[1]!];
  bad(encodeCheckpoints(dec.spanSize, swap), 'out of order');
  const dup = dec.checkpoints.map((c) => ({ ...c }));
  dup[1]!.out = 0;
  bad(encodeCheckpoints(dec.spanSize, dup), 'two checkpoints at out 0 (AWS quirk: rejected)');
  bad(result.checkpoints, 'beyond compressed size', 1000, us);
  bad(result.checkpoints, 'beyond uncompressed size', cs, 1000);
  const neg = Buffer.from(result.checkpoints);
  neg.writeBigInt64LE(-5n, 12);
  bad(neg, 'negative in');
  assert.throws(
    () => parseCheckpoints(encodeTarZinfo(4096, 100), 'uncompressed', 99, 99),
    (err: unknown) => isSociError(err, 'ERR_INVALID_CHECKPOINTS'),
  );
  assert.throws(
    () => parseCheckpoints(Buffer.from('garbage!'), 'uncompressed', 8, 8),
    (err: unknown) => isSociError(err, 'ERR_INVALID_CHECKPOINTS'),
  );
});

test('legacy v1 blobs: checkpoint 0 synthesised as {10, 0, 0, zeros}', async () => {
  const { result } = indexBlob(good, 'gzip', 65536, engines[0]!);
  const v1 = Buffer.concat([result.checkpoints.subarray(0, 12), result.checkpoints.subarray(12 + 32785)]);
  const dec = decodeCheckpoints(v1);
  assert.equal(dec.version, 1);
  assert.deepEqual(
    dec.checkpoints.map((c) => c.in),
    decodeCheckpoints(result.checkpoints).checkpoints.map((c) => c.in),
  );
  assert.ok(dec.checkpoints[0]!.window.equals(Buffer.alloc(32768)));
  const table = parseCheckpoints(v1, 'gzip', good.length, plain.length);
  const s = table.spans[0]!;
  assert.ok((await extractSpans(table, 0, 0, good.subarray(s.cStart, s.cEnd))).equals(plain.subarray(s.uStart, s.uEnd)));
});

test('bounded fuzz: 2000 mutated/truncated checkpoint blobs → success or SociError only', () => {
  const gz = gzipSync(mixed(200_000, 12), { level: 6 });
  const { result } = indexBlob(gz, 'gzip', 40_000, engines[0]!);
  const base = result.checkpoints;
  const tar = encodeTarZinfo(4096, 50_000);
  const r = rng(2024);
  // positions that matter most: the header and each record's in/out/bits
  const hot: number[] = [];
  for (let i = 0; i < 12; i++) hot.push(i);
  for (let k = 0; k < decodeCheckpoints(base).checkpoints.length; k++) for (let i = 0; i < 17; i++) hot.push(12 + k * 32785 + i);
  let ok = 0;
  for (let n = 0; n < 2000; n++) {
    const isTar = n % 5 === 0;
    let b = Buffer.from(isTar ? tar : base);
    const muts = 1 + ((r() * 4) | 0);
    for (let m = 0; m < muts; m++) {
      const kind = r();
      if (kind < 0.6) {
        const pos = isTar || r() < 0.3 ? (r() * b.length) | 0 : hot[(r() * hot.length) | 0]!;
        if (pos < b.length) b[pos] = (r() * 256) | 0;
      } else if (kind < 0.85) {
        b = b.subarray(0, (r() * b.length) | 0);
      } else {
        b = Buffer.concat([b, randomBytes((r() * 40) | 0, n)]);
      }
    }
    try {
      const t = isTar ? parseCheckpoints(b, 'uncompressed', 50_000, 50_000) : parseCheckpoints(b, 'gzip', gz.length, 200_000);
      // whatever parses must be internally consistent
      for (let i = 0; i + 1 < t.spans.length; i++) {
        const s = t.spans[i]!;
        assert.ok(s.cStart < s.cEnd && s.uStart < s.uEnd, 'parsed spans are monotonic');
      }
      ok++;
    } catch (e) {
      if (!isSociError(e)) throw new Error(`case ${n}: non-SociError ${(e as Error)?.stack}`);
    }
  }
  assert.ok(ok < 2000, 'most mutations are rejected');
});

test('bounded fuzz: 300 corrupted span inputs → the exact length or SociError, never a crash', async () => {
  const gz = gzipSync(mixed(400_000, 77), { level: 9 });
  const { result, plain: p } = indexBlob(gz, 'gzip', 30_000, engines[0]!);
  const table = parseCheckpoints(result.checkpoints, 'gzip', gz.length, p.length);
  const r = rng(31337);
  let rejected = 0;
  for (let n = 0; n < 300; n++) {
    const id = (r() * table.spans.length) | 0;
    const s = table.spans[id]!;
    const bytes = Buffer.from(gz.subarray(s.cStart, s.cEnd));
    for (let k = 0; k < 1 + ((r() * 3) | 0); k++) {
      const pos = (r() * bytes.length) | 0;
      bytes[pos] = bytes[pos]! ^ (1 + ((r() * 255) | 0));
    }
    try {
      const out = await extractSpans(table, id, id, bytes);
      assert.equal(out.length, s.uEnd - s.uStart);
    } catch (e) {
      if (!isSociError(e)) throw new Error(`case ${n}: non-SociError ${(e as Error)?.stack}`);
      rejected++;
    }
  }
  assert.ok(rejected > 0, 'some corruptions are detected by inflate itself');
});
