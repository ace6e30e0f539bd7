/** Shared helpers for the compression tests: deterministic data, engines, index + verify. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { inCI } from '../../harness/env.js';
import { createLayerIndexer, extractSpans, nativeAvailable, parseCheckpoints } from '../../src/compression/index.js';
import type { Compression, EngineName, IndexResult, SpanTable } from '../../src/compression/index.js';
import { sha256Hex } from '../../src/oci/digest.js';
import { xorshift32 } from '../../harness/random.js';

/** Engines to test. Native is required in CI (npm install builds it); elsewhere it may be absent. */
export function testEngines(): EngineName[] {
  if (nativeAvailable()) return ['native', 'js'];
  if (inCI) throw new Error('CI prerequisite missing: native zinflate addon (build/Release/zinflate.node)');
  return ['js'];
}

/** xorshift32 PRNG: fixed seeds make every generated input reproducible. */
export function rng(seed: number): () => number {
  const next = xorshift32(seed);
  return () => next() / 4294967296;
}

export function randomBytes(n: number, seed: number): Buffer {
  const r = rng(seed);
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (r() * 256) | 0;
  return b;
}

const WORDS = 'the quick brown fox jumps over lazy dog lorem ipsum dolor sit amet layer span checkpoint window tar gzip deflate block'.split(' ');

/** Compressible text with some structure. */
export function text(n: number, seed: number): Buffer {
  const r = rng(seed);
  const parts: string[] = [];
  let len = 0;
  while (len < n) {
    const w = WORDS[(r() * WORDS.length) | 0]!;
    const s = r() < 0.1 ? `${w}\n` : `${w} `;
    parts.push(s);
    len += s.length;
  }
  return Buffer.from(parts.join('')).subarray(0, n);
}

/** A realistic mix: text, incompressible runs (stored blocks) and zero runs, deterministic. */
export function mixed(n: number, seed: number): Buffer {
  const r = rng(seed);
  const out: Buffer[] = [];
  let len = 0;
  let i = 0;
  while (len < n) {
    const kind = r();
    const size = Math.min(n - len, 1000 + ((r() * 150_000) | 0));
    const part = kind < 0.55 ? text(size, seed + i) : kind < 0.85 ? randomBytes(size, seed + i) : Buffer.alloc(size, i & 0xff);
    out.push(part);
    len += size;
    i++;
  }
  return Buffer.concat(out, n);
}

export function run(cmd: string, args: string[], input?: Buffer): Buffer {
  const r = spawnSync(cmd, args, { input, maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr?.toString()}`);
  return r.stdout;
}

export interface Indexed {
  result: IndexResult;
  plain: Buffer;
}

/** Runs the indexer over `blob` in chunks of `chunk` bytes (or random sizes when chunk is a function). */
export function indexBlob(blob: Buffer, compression: Compression, spanSize: number, engine: EngineName, chunk: number | (() => number) = 65536): Indexed {
  const parts: Buffer[] = [];
  const ix = createLayerIndexer({ compression, spanSize, engine, onData: (b) => parts.push(Buffer.from(b)) });
  for (let o = 0; o < blob.length; ) {
    const n = typeof chunk === 'number' ? chunk : chunk();
    ix.write(blob.subarray(o, o + n));
    o += n;
  }
  const result = ix.end();
  return { result, plain: Buffer.concat(parts) };
}

/** Every span's digest matches its bytes and every span extracts to the right uncompressed bytes. */
export async function verifySpans(blob: Buffer, plain: Buffer, result: IndexResult): Promise<SpanTable> {
  const table = parseCheckpoints(result.checkpoints, result.compression, blob.length, plain.length);
  assert.equal(table.maxSpanId, result.maxSpanId);
  assert.equal(result.spanDigests.length, table.spans.length);
  assert.equal(result.compressedSize, blob.length);
  for (const s of table.spans) {
    const c = blob.subarray(s.cStart, s.cEnd);
    assert.equal(result.spanDigests[s.id], `sha256:${sha256Hex(c)}`, `digest of span ${s.id}`);
    const out = await extractSpans(table, s.id, s.id, c);
    assert.ok(out.equals(plain.subarray(s.uStart, s.uEnd)), `span ${s.id} [${s.uStart},${s.uEnd}) extracts correctly`);
    if (s.uStart < s.uEnd) {
      assert.equal(table.spanIdForOffset(s.uStart), s.id);
      assert.equal(table.spanIdForOffset(s.uEnd - 1), s.id);
    }
  }
  // multi-span ranges that stop before the last span (strict length) and one that ends at it
  for (let i = 0; i + 2 < table.spans.length; i += Math.max(1, table.spans.length >> 2)) {
    const a = table.spans[i]!;
    const b = table.spans[i + 1]!;
    const out = await extractSpans(table, i, i + 1, blob.subarray(a.cStart, b.cEnd));
    assert.ok(out.equals(plain.subarray(a.uStart, b.uEnd)), `spans ${i}..${i + 1}`);
  }
  if (table.spans.length > 0) {
    const a = table.spans[0]!;
    const b = table.spans[table.spans.length - 1]!;
    const all = await extractSpans(table, 0, table.maxSpanId, blob.subarray(a.cStart, b.cEnd));
    assert.ok(all.equals(plain.subarray(a.uStart, b.uEnd)), 'all spans at once');
  }
  return table;
}
