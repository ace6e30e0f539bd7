/**
 * Span extraction on Node's asynchronous zlib, so the daemon's event loop
 * never inflates: the work runs on the libuv threadpool.
 *
 * node:zlib has no inflatePrime. A checkpoint with bits≠0 starts mid-byte; we resume there by
 * prepending no-op deflate blocks whose bit length is ≡ 8−bits (mod 8), then the `bits` leftover
 * bits of byte in−1: the real data keeps its byte alignment, so stored blocks inside the span
 * decode correctly (plain bit-shifting the input would break them).
 */
import { promisify } from 'node:util';
import { constants, gunzip, inflateRaw, inflateRawSync, type ZlibOptions } from 'node:zlib';
import { SociError } from '../errors.js';
import type { SpanTable } from './types.js';

type InflateInfo = { buffer: Buffer; engine: { bytesWritten: number } };
const inflateRawInfo = promisify(inflateRaw) as unknown as (buf: Buffer, opts: ZlibOptions & { info: true }) => Promise<InflateInfo>;
const gunzipAsync = promisify(gunzip) as (buf: Buffer, opts: ZlibOptions) => Promise<Buffer>;

/** LSB-first bit packer, the order deflate uses for header fields. */
class BitWriter {
  private bytes: number[] = [];
  private acc = 0;
  private n = 0;
  bitCount = 0;
  put(value: number, count: number): void {
    for (let i = 0; i < count; i++) this.bit((value >> i) & 1);
  }
  /** a Huffman code: most significant bit first */
  code(code: number, len: number): void {
    for (let i = len - 1; i >= 0; i--) this.bit((code >> i) & 1);
  }
  private bit(b: number): void {
    this.acc |= b << this.n;
    this.n++;
    this.bitCount++;
    if (this.n === 8) {
      this.bytes.push(this.acc);
      this.acc = 0;
      this.n = 0;
    }
  }
  finish(): Buffer {
    return Buffer.from(this.n > 0 ? [...this.bytes, this.acc] : this.bytes);
  }
}

/** empty non-final fixed-Huffman block: 10 bits */
function fixedEmpty(w: BitWriter): void {
  w.put(0, 1); // BFINAL
  w.put(1, 2); // BTYPE fixed
  w.code(0, 7); // end-of-block (fixed code for 256 is 0000000)
}

/**
 * empty non-final dynamic block: 97 bits (the only cheap odd-length no-op).
 * Literal code {0:1, 256:1}; one distance code of length 0; code-length code {18:1, 0:2, 1:2}
 * sent with all 19 code-length lengths.
 */
function dynamicEmpty(w: BitWriter): void {
  w.put(0, 1); // BFINAL
  w.put(2, 2); // BTYPE dynamic
  w.put(0, 5); // HLIT: 257
  w.put(0, 5); // HDIST: 1
  w.put(15, 4); // HCLEN: 19
  const order = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];
  const clen: Record<number, number> = { 18: 1, 0: 2, 1: 2 };
  for (const s of order) w.put(clen[s] ?? 0, 3);
  // canonical codes: 18 → '0', 0 → '10', 1 → '11'
  w.code(3, 2); // lit 0: length 1
  w.code(0, 1); // 18: 138 zeros
  w.put(127, 7);
  w.code(0, 1); // 18: 117 zeros (lits 139..255)
  w.put(106, 7);
  w.code(3, 2); // lit 256: length 1
  w.code(2, 2); // distance 0: length 0
  w.code(1, 1); // end-of-block (lit 256 = '1')
}

/** residue r = 8−bits → blocks whose total bit length ≡ r (mod 8): D=97≡1, F=10≡2 */
const RECIPES: Record<number, string> = { 1: 'D', 2: 'F', 3: 'DF', 4: 'FF', 5: 'DFF', 6: 'FFF', 7: 'DFFF' };
const prefixCache = new Map<number, Buffer>();

/**
 * Bytes that, fed to a raw inflater, leave it exactly where zlib would be after
 * inflatePrime(bits, firstByte >> (8−bits)): no-op blocks + the `bits` high bits of `firstByte`.
 */
export function primePrefix(bits: number, firstByte: number): Buffer {
  let blocks = prefixCache.get(bits);
  if (!blocks) {
    blocks = buildNoop(bits);
    prefixCache.set(bits, blocks);
  }
  const out = Buffer.from(blocks);
  out[out.length - 1] = out[out.length - 1]! | (firstByte & (0xff << (8 - bits)) & 0xff);
  return out;
}

function buildNoop(bits: number): Buffer {
  const recipe = RECIPES[8 - bits];
  if (!recipe) throw new SociError('ERR_INTERNAL', `no prime prefix for bits=${bits}`);
  const w = new BitWriter();
  for (const c of recipe) (c === 'D' ? dynamicEmpty : fixedEmpty)(w);
  if ((w.bitCount + bits) % 8 !== 0) throw new SociError('ERR_INTERNAL', 'prime prefix has the wrong bit length');
  const noop = w.finish();
  // self-check once per residue: the blocks followed by a final empty stored block inflate to nothing
  const check = new BitWriter();
  for (const c of recipe) (c === 'D' ? dynamicEmpty : fixedEmpty)(check);
  check.put(1, 1);
  check.put(0, 2);
  const probe = Buffer.concat([check.finish(), Buffer.from([0, 0, 0xff, 0xff])]);
  if (inflateRawSync(probe).length !== 0) throw new SociError('ERR_INTERNAL', 'prime prefix is not a no-op');
  return noop;
}

function badGzip(msg: string, cause?: unknown): SociError {
  return new SociError('ERR_BAD_GZIP', msg, cause === undefined ? undefined : { cause });
}

/**
 * Only a range ending with the layer's last span may inflate past its end: a zTOC's
 * uncompressed_archive_size stops at the tar end-of-archive blocks, while the record padding after
 * them is still in the gzip stream. That overrun is trimmed, up to this bound.
 * Anywhere else, more output than the table says means the table or the data is wrong.
 * (Bits of the next span in a shared last byte never decode to output: ≤ 7 bits cannot hold a
 * block header plus a symbol.)
 */
const LAST_SPAN_SLACK = 8 << 20;

function outOpts(expected: number, slack: number): ZlibOptions {
  return {
    finishFlush: constants.Z_SYNC_FLUSH,
    chunkSize: Math.max(64 * 1024, Math.min(expected + 64, 8 << 20)),
    // at least one byte of slack so an overlong result is seen as such, whatever Node does at the limit
    maxOutputLength: expected + slack,
  };
}

/**
 * Uncompressed bytes [spans[first].uStart, spans[last].uEnd) from `compressed` = blob bytes
 * [spans[first].cStart, spans[last].cEnd). Crosses gzip member boundaries. Never returns a wrong
 * length: a short result, or a long one not ending at the last span, is SociError ERR_BAD_GZIP.
 */
export async function extractSpans(table: SpanTable, first: number, last: number, compressed: Buffer): Promise<Buffer> {
  const a = table.spans[first];
  const b = table.spans[last];
  if (!a || !b || first > last) {
    throw new SociError('ERR_INTERNAL', `span range ${first}..${last} is outside 0..${table.maxSpanId}`);
  }
  if (compressed.length !== b.cEnd - a.cStart) {
    throw new SociError('ERR_INTERNAL', `spans ${first}..${last} need ${b.cEnd - a.cStart} compressed bytes, got ${compressed.length}`);
  }
  if (table.compression === 'uncompressed') return compressed;
  const expected = b.uEnd - a.uStart;
  if (expected === 0) return Buffer.alloc(0);
  const slack = last === table.maxSpanId ? LAST_SPAN_SLACK : 1;
  const cp = table.checkpoint(first);
  let input = compressed;
  let prefixLen = 0;
  if (cp.bits !== 0) {
    const prefix = primePrefix(cp.bits, compressed[0]!);
    input = Buffer.concat([prefix, compressed.subarray(1)]);
    prefixLen = prefix.length - 1; // the merged byte stands for compressed[0]
  }
  let head: InflateInfo;
  try {
    head = await inflateRawInfo(input, { ...outOpts(expected, slack), dictionary: cp.window, info: true });
  } catch (e) {
    throw badGzip(`span ${first} does not inflate from its checkpoint: ${(e as Error).message}`, e);
  }
  const got = head.buffer;
  if (got.length === expected) return got;
  if (got.length > expected) {
    if (slack === 1) throw badGzip(`spans ${first}..${last} inflated to more than the ${expected} bytes the checkpoints promise`);
    return got.subarray(0, expected);
  }
  // The raw stream ended before the spans did: a gzip member boundary. Skip its 8-byte trailer and
  // let gunzip take the following member(s), which it verifies (CRC) when they are complete.
  const consumed = head.engine.bytesWritten - prefixLen;
  if (consumed >= compressed.length) {
    throw badGzip(`spans ${first}..${last} end after ${got.length} of ${expected} bytes (truncated data)`);
  }
  const rest = compressed.subarray(consumed + 8);
  if (rest.length === 0) throw badGzip(`spans ${first}..${last} end after ${got.length} of ${expected} bytes (member trailer)`);
  const need = expected - got.length;
  let tail: Buffer;
  try {
    tail = await gunzipAsync(rest, outOpts(need, slack));
  } catch (e) {
    throw badGzip(`gzip member after compressed offset ${a.cStart + consumed} does not inflate: ${(e as Error).message}`, e);
  }
  if (tail.length < need || (tail.length > need && slack === 1)) {
    throw badGzip(`spans ${first}..${last} inflated to ${got.length + tail.length} bytes, expected ${expected}`);
  }
  return Buffer.concat([got, tail.subarray(0, need)], expected);
}
