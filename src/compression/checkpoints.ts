/**
 * Byte formats of the zTOC `checkpoints` field:
 * the gzip zinfo blob (v2, legacy v1 read-only) and the TarZinfo flatbuffer for uncompressed layers.
 */
import { Builder, ByteBuffer } from 'flatbuffers';
import { SociError } from '../errors.js';
import type { Checkpoint } from './types.js';

export const WINDOW_SIZE = 32768;
export const HEADER_SIZE = 12;
/** packed record: int64 in, int64 out, u8 bits, 32 KiB window */
export const RECORD_SIZE = 8 + 8 + 1 + WINDOW_SIZE;
export const TAR_ZINFO_VERSION = 2;

export interface DecodedCheckpoints {
  version: 1 | 2;
  spanSize: number;
  checkpoints: Checkpoint[];
}

function bad(msg: string): SociError {
  return new SociError('ERR_INVALID_CHECKPOINTS', msg);
}

/** One packed record (the indexer builds these as it goes, so windows are not held twice). */
export function encodeRecord(cp: Checkpoint): Buffer {
  if (cp.window.length !== WINDOW_SIZE) throw new SociError('ERR_INTERNAL', 'checkpoint window must be 32768 bytes');
  const r = Buffer.allocUnsafe(RECORD_SIZE);
  r.writeBigInt64LE(BigInt(cp.in), 0);
  r.writeBigInt64LE(BigInt(cp.out), 8);
  r.writeUInt8(cp.bits, 16);
  cp.window.copy(r, 17);
  return r;
}

export function encodeHeader(count: number, spanSize: number): Buffer {
  const h = Buffer.allocUnsafe(HEADER_SIZE);
  h.writeInt32LE(count, 0);
  h.writeBigInt64LE(BigInt(spanSize), 4);
  return h;
}

/** zinfo v2 blob: LE {int32 N, int64 span} + N × {int64 in, int64 out, u8 bits, 32 KiB window}. */
export function encodeCheckpoints(spanSize: number, cps: readonly Checkpoint[]): Buffer {
  return Buffer.concat([encodeHeader(cps.length, spanSize), ...cps.map(encodeRecord)]);
}

function readSafe(blob: Buffer, off: number, what: string): number {
  const v = blob.readBigInt64LE(off);
  if (v < 0n || v > BigInt(Number.MAX_SAFE_INTEGER)) throw bad(`checkpoint ${what} offset ${v} is out of range`);
  return Number(v);
}

/**
 * Decodes a gzip zinfo blob; the version comes from the length alone (v1 omits checkpoint 0, which
 * is then synthesised as {in 10, out 0, bits 0, zero window} like AWS SOCI does).
 * Windows are views into `blob` (no copy).
 */
export function decodeCheckpoints(blob: Buffer): DecodedCheckpoints {
  if (blob.length < HEADER_SIZE) throw bad(`checkpoint blob too short (${blob.length} bytes)`);
  const n = blob.readInt32LE(0);
  const span = blob.readBigInt64LE(4);
  if (n <= 0) throw bad(`checkpoint blob declares ${n} checkpoints`);
  if (span < 0n || span > BigInt(Number.MAX_SAFE_INTEGER)) throw bad(`checkpoint blob has span size ${span}`);
  let version: 1 | 2;
  let stored: number;
  if (blob.length === HEADER_SIZE + n * RECORD_SIZE) {
    version = 2;
    stored = n;
  } else if (blob.length === HEADER_SIZE + (n - 1) * RECORD_SIZE) {
    version = 1;
    stored = n - 1;
  } else {
    throw bad(`checkpoint blob length ${blob.length} does not fit ${n} checkpoints (v1 or v2)`);
  }
  const checkpoints: Checkpoint[] = [];
  if (version === 1) checkpoints.push({ in: 10, out: 0, bits: 0, window: Buffer.alloc(WINDOW_SIZE) });
  for (let i = 0; i < stored; i++) {
    const o = HEADER_SIZE + i * RECORD_SIZE;
    const bits = blob[o + 16]!;
    if (bits > 7) throw bad(`checkpoint ${checkpoints.length} has bits=${bits}`);
    checkpoints.push({
      in: readSafe(blob, o, 'in'),
      out: readSafe(blob, o + 8, 'out'),
      bits,
      window: blob.subarray(o + 17, o + 17 + WINDOW_SIZE),
    });
  }
  return { version, spanSize: Number(span), checkpoints };
}

/**
 * TarZinfo flatbuffer (`ztoc/compression/fbs/zinfo.fbs`): table {version:int32; span_size:int64;
 * size:int64}, fields added in that order, defaults (0) omitted, no file identifier — what the Go
 * generated builder produces.
 */
export function encodeTarZinfo(spanSize: number, size: number): Buffer {
  const b = new Builder(64);
  b.startObject(3);
  b.addFieldInt32(0, TAR_ZINFO_VERSION, 0);
  b.addFieldInt64(1, BigInt(spanSize), 0n);
  b.addFieldInt64(2, BigInt(size), 0n);
  const t = b.endObject();
  b.finish(t);
  return Buffer.from(b.asUint8Array());
}

export interface TarZinfo {
  version: number;
  spanSize: number;
  size: number;
}

/** Reads a TarZinfo flatbuffer defensively: any malformed offset is ERR_INVALID_CHECKPOINTS. */
export function decodeTarZinfo(buf: Buffer): TarZinfo {
  try {
    if (buf.length < 8) throw new Error('too short');
    const bb = new ByteBuffer(new Uint8Array(buf.buffer, buf.byteOffset, buf.length));
    const table = bb.readUint32(0);
    if (table + 4 > buf.length) throw new Error('root offset out of range');
    const vtable = table - bb.readInt32(table);
    if (vtable < 0 || vtable + 4 > buf.length) throw new Error('vtable out of range');
    const vlen = bb.readUint16(vtable);
    if (vlen < 4 || vtable + vlen > buf.length) throw new Error('bad vtable length');
    const field = (id: number, size: number): number | null => {
      const slot = 4 + id * 2;
      if (slot + 2 > vlen) return null;
      const off = bb.readUint16(vtable + slot);
      if (off === 0) return null;
      if (table + off + size > buf.length) throw new Error(`field ${id} out of range`);
      return table + off;
    };
    const fv = field(0, 4);
    const fs = field(1, 8);
    const fz = field(2, 8);
    const version = fv === null ? 0 : bb.readInt32(fv);
    const span = fs === null ? 0n : bb.readInt64(fs);
    const size = fz === null ? 0n : bb.readInt64(fz);
    if (span <= 0n || span > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error(`span size ${span}`);
    if (size < 0n || size > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error(`size ${size}`);
    return { version, spanSize: Number(span), size: Number(size) };
  } catch (e) {
    throw bad(`invalid TarZinfo checkpoints: ${(e as Error).message}`);
  }
}
