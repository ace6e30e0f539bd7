/**
 * flatbuffer bytes → zTOC (the zTOC FlatBuffers schema of AWS's soci-snapshotter), with a hand-written, fully bounds-checked
 * reader: a zTOC may come from a registry, so any malformed input must end in
 * SociError('ERR_INVALID_ZTOC') — never a RangeError, a hang or a huge allocation.
 */
import { SociError } from '../errors.js';
import type { EntryType, FileMetadata, PaxRecord, Ztoc } from './types.js';
import { ALGORITHM_GZIP, ALGORITHM_UNCOMPRESSED } from './marshal.js';
import { quoteName } from './names.js';

const ENTRY_TYPES = new Set<string>(['reg', 'dir', 'symlink', 'hardlink', 'char', 'block', 'fifo']);

class Invalid extends Error {}

interface Table {
  pos: number;
  vt: number;
  vtLen: number;
}

/** Minimal flatbuffer reader; every access is checked against the buffer and a work budget. */
class FbReader {
  /** bounds the number of objects visited, so shared/looping offsets cannot cause blow-ups */
  private budget: number;

  constructor(private readonly buf: Buffer) {
    this.budget = buf.length + 64;
  }

  private need(pos: number, len: number): void {
    if (!(pos >= 0 && len >= 0 && pos + len <= this.buf.length)) {
      throw new Invalid(
        pos >= 0 && pos <= this.buf.length
          ? `a ${len}-byte field at byte ${pos} lies outside the data (${this.buf.length} bytes)`
          : `a reference points outside the data (${this.buf.length} bytes)`,
      );
    }
  }

  private spend(n: number): void {
    this.budget -= n;
    if (this.budget < 0) throw new Invalid('it references more objects than its size allows');
  }

  u32(p: number): number {
    this.need(p, 4);
    return this.buf.readUInt32LE(p);
  }

  /** Target of the uoffset stored at p. */
  deref(p: number): number {
    return p + this.u32(p);
  }

  table(p: number): Table {
    this.spend(1);
    this.need(p, 4);
    const vt = p - this.buf.readInt32LE(p);
    this.need(vt, 4);
    const vtLen = this.buf.readUInt16LE(vt);
    if (vtLen < 4 || vtLen % 2 !== 0) throw new Invalid('a table layout (vtable) has an impossible length');
    this.need(vt, vtLen);
    const objLen = this.buf.readUInt16LE(vt + 2);
    if (objLen < 4) throw new Invalid('a table object has an impossible length');
    this.need(p, objLen);
    return { pos: p, vt, vtLen };
  }

  /** Absolute position of field `id`, or 0 when absent; the field must lie inside the buffer. */
  field(t: Table, id: number, size: number): number {
    const slot = 4 + 2 * id;
    if (slot + 2 > t.vtLen) return 0;
    const off = this.buf.readUInt16LE(t.vt + slot);
    if (off === 0) return 0;
    this.need(t.pos + off, size);
    return t.pos + off;
  }

  bytesAt(p: number): Buffer {
    const s = this.deref(p);
    const n = this.u32(s);
    this.need(s + 4, n);
    this.spend(1);
    return this.buf.subarray(s + 4, s + 4 + n);
  }

  /** A string field as raw bytes (absent → empty, like Go's generated accessors). */
  str(t: Table, id: number): Buffer {
    const p = this.field(t, id, 4);
    return p === 0 ? Buffer.alloc(0) : Buffer.from(this.bytesAt(p));
  }

  /** Element positions of a vector of 4-byte elements (offsets). */
  offsets(t: Table, id: number): number[] {
    const p = this.field(t, id, 4);
    if (p === 0) return [];
    const v = this.deref(p);
    const n = this.u32(v);
    this.need(v + 4, n * 4);
    this.spend(n);
    const out = new Array<number>(n);
    for (let i = 0; i < n; i++) out[i] = v + 4 + 4 * i;
    return out;
  }

  i64(t: Table, id: number, what: string): number {
    const p = this.field(t, id, 8);
    if (p === 0) return 0;
    const v = this.buf.readBigInt64LE(p);
    if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) throw new Invalid(`${what} out of range`);
    return Number(v);
  }

  u32f(t: Table, id: number): number {
    const p = this.field(t, id, 4);
    return p === 0 ? 0 : this.buf.readUInt32LE(p);
  }

  i32f(t: Table, id: number, dflt: number): number {
    const p = this.field(t, id, 4);
    return p === 0 ? dflt : this.buf.readInt32LE(p);
  }

  i8f(t: Table, id: number, dflt: number): number {
    const p = this.field(t, id, 1);
    return p === 0 ? dflt : this.buf.readInt8(p);
  }
}

function readEntry(r: FbReader, pos: number, index: number): FileMetadata {
  const t = r.table(r.deref(pos));
  const type = r.str(t, 1).toString('latin1');
  if (!ENTRY_TYPES.has(type)) throw new Invalid(`entry #${index} has unknown type ${quoteName(type.slice(0, 20))}`);
  const pax: PaxRecord[] = [];
  for (const xp of r.offsets(t, 13)) {
    const x = r.table(r.deref(xp));
    pax.push({ key: r.str(x, 0), value: r.str(x, 1) });
  }
  const e: FileMetadata = {
    name: r.str(t, 0),
    type: type as EntryType,
    uncompressedOffset: r.i64(t, 2, 'uncompressed_offset'),
    uncompressedSize: r.i64(t, 3, 'uncompressed_size'),
    linkname: r.str(t, 4),
    mode: r.i64(t, 5, 'mode'),
    uid: r.u32f(t, 6),
    gid: r.u32f(t, 7),
    uname: r.str(t, 8),
    gname: r.str(t, 9),
    modTime: r.str(t, 10).toString('latin1'),
    devmajor: r.i64(t, 11, 'devmajor'),
    devminor: r.i64(t, 12, 'devminor'),
    pax,
  };
  if (e.uncompressedOffset < 0 || e.uncompressedSize < 0) throw new Invalid(`entry #${index} has a negative offset or size`);
  return e;
}

function decode(buf: Buffer): Ztoc {
  const r = new FbReader(buf);
  if (buf.length < 8) throw new Invalid(`too short (${buf.length} bytes)`);
  const root = r.table(r.deref(0));
  const tocPos = r.field(root, 4, 4);
  const ciPos = r.field(root, 5, 4);
  if (tocPos === 0) throw new Invalid('it has no file table');
  if (ciPos === 0) throw new Invalid('it has no compression info');

  const ci = r.table(r.deref(ciPos));
  const alg = r.i8f(ci, 0, ALGORITHM_GZIP);
  if (alg !== ALGORITHM_GZIP && alg !== ALGORITHM_UNCOMPRESSED) throw new Invalid(`unknown compression algorithm ${alg}`);
  const maxSpanId = r.i32f(ci, 1, 0);
  if (maxSpanId < 0) throw new Invalid(`negative max_span_id ${maxSpanId}`);
  const spanDigests = r.offsets(ci, 2).map((p) => r.bytesAt(p).toString('utf8'));
  if (spanDigests.length !== maxSpanId + 1) {
    throw new Invalid(`${spanDigests.length} span digests for max_span_id ${maxSpanId}`);
  }
  const cpPos = r.field(ci, 3, 4);
  const checkpoints = cpPos === 0 ? Buffer.alloc(0) : Buffer.from(r.bytesAt(cpPos));

  const toc = r.table(r.deref(tocPos));
  const entries = r.offsets(toc, 0).map((p, i) => readEntry(r, p, i));
  // Go sorts by data offset (stable) and recomputes each entry's header offset from the previous
  // entry; a header that would start after its own data means the TOC is inconsistent.
  entries.sort((a, b) => a.uncompressedOffset - b.uncompressedOffset);
  let headerOffset = 0;
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!;
    if (headerOffset > e.uncompressedOffset) throw new Invalid(`entry #${i} overlaps the previous entry`);
    headerOffset = Math.ceil((e.uncompressedOffset + e.uncompressedSize) / 512) * 512;
  }

  const compressedArchiveSize = r.i64(root, 2, 'compressed_archive_size');
  const uncompressedArchiveSize = r.i64(root, 3, 'uncompressed_archive_size');
  if (compressedArchiveSize < 0 || uncompressedArchiveSize < 0) throw new Invalid('it has a negative archive size');

  return {
    version: r.str(root, 0).toString('utf8'),
    buildToolIdentifier: r.str(root, 1).toString('utf8'),
    compressedArchiveSize,
    uncompressedArchiveSize,
    toc: entries,
    compression: {
      algorithm: alg === ALGORITHM_GZIP ? 'gzip' : 'uncompressed',
      maxSpanId,
      spanDigests,
      checkpoints,
    },
  };
}

export function unmarshalZtoc(buf: Buffer): Ztoc {
  try {
    return decode(buf);
  } catch (e) {
    if (e instanceof Invalid) throw new SociError('ERR_INVALID_ZTOC', `invalid zTOC: ${e.message}`);
    // Anything else (e.g. a RangeError we failed to foresee) is still a malformed zTOC; the runtime's
    // own wording stays in `cause`, out of the one-line message.
    throw new SociError('ERR_INVALID_ZTOC', 'invalid zTOC: its data is malformed', { cause: e });
  }
}
