/**
 * zTOC → flatbuffer bytes, byte-identical to AWS SOCI's `ztocToFlatbuffer`.
 * The official flatbuffers Builder is driven by hand in exactly the Go call order: object creation
 * order and field-add order decide the layout, so no generated convenience helper is used.
 */
import { Builder } from 'flatbuffers';
import { SociError } from '../errors.js';
import type { FileMetadata, Ztoc } from './types.js';

/** CompressionAlgorithm enum values (ztoc.fbs); Gzip is the schema default. */
export const ALGORITHM_GZIP = 1;
export const ALGORITHM_UNCOMPRESSED = 2;

// Field ids (vtable slot = id); the vtable slot of each field is its id.
const FM = {
  name: 0,
  type: 1,
  uOffset: 2,
  uSize: 3,
  linkname: 4,
  mode: 5,
  uid: 6,
  gid: 7,
  uname: 8,
  gname: 9,
  modTime: 10,
  devmajor: 11,
  devminor: 12,
  xattrs: 13,
};
const CI = { algorithm: 0, maxSpanId: 1, spanDigests: 2, checkpoints: 3 };
const Z = { version: 0, buildTool: 1, compressedSize: 2, uncompressedSize: 3, toc: 4, compressionInfo: 5 };

function int64(v: number, what: string): bigint {
  if (!Number.isSafeInteger(v)) throw new SociError('ERR_INVALID_ZTOC', `zTOC field ${what} is not an integer: ${v}`);
  return BigInt(v);
}

/** An offset vector whose element order equals `items` order (offsets are prepended in reverse). */
function offsetVector(b: Builder, items: number[]): number {
  b.startVector(4, items.length, 4);
  for (let i = items.length - 1; i >= 0; i--) b.addOffset(items[i]!);
  return b.endVector();
}

function writeEntry(b: Builder, e: FileMetadata): number {
  // Strings first, all of them even when empty (so these fields are always present).
  const name = b.createString(e.name);
  const type = b.createString(e.type);
  const linkname = b.createString(e.linkname);
  const uname = b.createString(e.uname);
  const gname = b.createString(e.gname);
  const modTime = b.createString(Buffer.from(e.modTime, 'latin1'));
  // All PAX records, byte-wise key order (Go sort.Strings); each Xattr: key, value, table.
  const records = [...e.pax].sort((x, y) => Buffer.compare(x.key, y.key));
  const xattrs: number[] = [];
  for (const r of records) {
    const k = b.createString(r.key);
    const v = b.createString(r.value);
    b.startObject(2);
    b.addFieldOffset(0, k, 0);
    b.addFieldOffset(1, v, 0);
    xattrs.push(b.endObject());
  }
  const xattrVec = offsetVector(b, xattrs);
  b.startObject(14);
  b.addFieldOffset(FM.name, name, 0);
  b.addFieldOffset(FM.type, type, 0);
  b.addFieldInt64(FM.uOffset, int64(e.uncompressedOffset, 'uncompressed_offset'), 0n);
  b.addFieldInt64(FM.uSize, int64(e.uncompressedSize, 'uncompressed_size'), 0n);
  b.addFieldOffset(FM.linkname, linkname, 0);
  b.addFieldInt64(FM.mode, int64(e.mode, 'mode'), 0n);
  b.addFieldInt32(FM.uid, e.uid | 0, 0);
  b.addFieldInt32(FM.gid, e.gid | 0, 0);
  b.addFieldOffset(FM.uname, uname, 0);
  b.addFieldOffset(FM.gname, gname, 0);
  b.addFieldOffset(FM.modTime, modTime, 0);
  b.addFieldInt64(FM.devmajor, int64(e.devmajor, 'devmajor'), 0n);
  b.addFieldInt64(FM.devminor, int64(e.devminor, 'devminor'), 0n);
  b.addFieldOffset(FM.xattrs, xattrVec, 0);
  return b.endObject();
}

export function marshalZtoc(z: Ztoc): Buffer {
  const ci = z.compression;
  if (ci.spanDigests.length !== ci.maxSpanId + 1) {
    throw new SociError('ERR_INVALID_ZTOC', `zTOC has ${ci.spanDigests.length} span digests for max span id ${ci.maxSpanId}`);
  }
  const b = new Builder(Math.max(1024, ci.checkpoints.length + z.toc.length * 256));
  const version = b.createString(z.version);
  const buildTool = b.createString(z.buildToolIdentifier);

  // TOC: entries created last to first; the vector keeps tar order.
  const entries: number[] = new Array<number>(z.toc.length);
  for (let i = z.toc.length - 1; i >= 0; i--) entries[i] = writeEntry(b, z.toc[i]!);
  const metadata = offsetVector(b, entries);
  b.startObject(1);
  b.addFieldOffset(0, metadata, 0);
  const toc = b.endObject();

  const checkpoints = b.createByteVector(ci.checkpoints);
  const digests = ci.spanDigests.map((d) => b.createString(d));
  const digestVec = offsetVector(b, digests);
  b.startObject(4);
  b.addFieldInt32(CI.maxSpanId, ci.maxSpanId, 0);
  b.addFieldOffset(CI.spanDigests, digestVec, 0);
  b.addFieldOffset(CI.checkpoints, checkpoints, 0);
  // Go adds the enum last and only for a known algorithm name; the default (Gzip) is omitted.
  b.addFieldInt8(CI.algorithm, ci.algorithm === 'gzip' ? ALGORITHM_GZIP : ALGORITHM_UNCOMPRESSED, ALGORITHM_GZIP);
  const compressionInfo = b.endObject();

  b.startObject(6);
  b.addFieldOffset(Z.version, version, 0);
  b.addFieldOffset(Z.buildTool, buildTool, 0);
  b.addFieldOffset(Z.toc, toc, 0);
  b.addFieldInt64(Z.compressedSize, int64(z.compressedArchiveSize, 'compressed_archive_size'), 0n);
  b.addFieldInt64(Z.uncompressedSize, int64(z.uncompressedArchiveSize, 'uncompressed_archive_size'), 0n);
  b.addFieldOffset(Z.compressionInfo, compressionInfo, 0);
  b.finish(b.endObject());
  return Buffer.from(b.asUint8Array());
}
