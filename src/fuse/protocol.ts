/**
 * FUSE kernel protocol: opcodes, flags and the byte layouts of the structures we encode/decode
 * (linux/fuse.h, protocol 7.38 layouts). Little-endian x86_64/arm64 only. Pure functions, no I/O.
 */
import type { Attr, DirEntry, StatfsResult } from './types.js';
import { S_IFMT } from './types.js';

export const Op = {
  LOOKUP: 1,
  FORGET: 2,
  GETATTR: 3,
  SETATTR: 4,
  READLINK: 5,
  SYMLINK: 6,
  MKNOD: 8,
  MKDIR: 9,
  UNLINK: 10,
  RMDIR: 11,
  RENAME: 12,
  LINK: 13,
  OPEN: 14,
  READ: 15,
  WRITE: 16,
  STATFS: 17,
  RELEASE: 18,
  FSYNC: 20,
  SETXATTR: 21,
  GETXATTR: 22,
  LISTXATTR: 23,
  REMOVEXATTR: 24,
  FLUSH: 25,
  INIT: 26,
  OPENDIR: 27,
  READDIR: 28,
  RELEASEDIR: 29,
  FSYNCDIR: 30,
  ACCESS: 34,
  CREATE: 35,
  INTERRUPT: 36,
  DESTROY: 38,
  BATCH_FORGET: 42,
  FALLOCATE: 43,
  READDIRPLUS: 44,
  RENAME2: 45,
  COPY_FILE_RANGE: 47,
  TMPFILE: 51,
  STATX: 52,
} as const;

/** Opcodes that modify the filesystem: answered EROFS. */
export const WRITE_OPS = new Set<number>([
  Op.SETATTR,
  Op.SYMLINK,
  Op.MKNOD,
  Op.MKDIR,
  Op.UNLINK,
  Op.RMDIR,
  Op.RENAME,
  Op.LINK,
  Op.WRITE,
  Op.SETXATTR,
  Op.REMOVEXATTR,
  Op.CREATE,
  Op.FALLOCATE,
  Op.RENAME2,
  Op.COPY_FILE_RANGE,
  Op.TMPFILE,
]);

export const InitFlag = {
  ASYNC_READ: 1 << 0,
  DO_READDIRPLUS: 1 << 13,
  READDIRPLUS_AUTO: 1 << 14,
  ASYNC_DIO: 1 << 15,
  PARALLEL_DIROPS: 1 << 18,
  ABORT_ERROR: 1 << 21,
  MAX_PAGES: 1 << 22,
  CACHE_SYMLINKS: 1 << 23,
  INIT_EXT: 1 << 30,
} as const;

export const FOPEN_DIRECT_IO = 1;
export const FOPEN_KEEP_CACHE = 2;
export const FOPEN_CACHE_DIR = 8;

export const KERNEL_MAJOR = 7;
/** The struct layouts below are those of minor 38 (Linux 6.1 uapi). */
export const MAX_MINOR = 38;

export const OUT_HEADER_SIZE = 16;
export const ATTR_SIZE = 88;
export const ENTRY_OUT_SIZE = 40 + ATTR_SIZE; // 128
export const ATTR_OUT_SIZE = 16 + ATTR_SIZE; // 104
export const OPEN_OUT_SIZE = 16;
export const STATFS_OUT_SIZE = 80;
export const INIT_OUT_SIZE = 64;
const DIRENT_HEADER = 24;
const DIRENTPLUS_HEADER = ENTRY_OUT_SIZE + DIRENT_HEADER; // 152

const TWO32 = 4294967296;

export function readU64(b: Buffer, off: number): number {
  return b.readUInt32LE(off) + b.readUInt32LE(off + 4) * TWO32;
}

function writeU64(b: Buffer, off: number, v: number): void {
  const n = v > 0 ? Math.floor(v) : 0;
  b.writeUInt32LE((n % TWO32) >>> 0, off);
  b.writeUInt32LE(Math.floor(n / TWO32) >>> 0, off + 4);
}

/** Writes fuse_out_header. `error` is a positive errno (sent negated) or 0. */
export function writeOutHeader(b: Buffer, len: number, error: number, lo: number, hi: number): void {
  b.writeUInt32LE(len, 0);
  b.writeInt32LE(-error, 4);
  b.writeUInt32LE(lo, 8);
  b.writeUInt32LE(hi, 12);
}

/** A NUL-terminated string at `off` (names in LOOKUP, GETXATTR). */
export function readCString(b: Buffer, off: number, end = b.length, enc: NameEncoding = 'utf8'): string {
  let z = b.indexOf(0, off);
  if (z < 0 || z > end) z = end;
  return b.toString(enc, off, z);
}

/**
 * How names cross the protocol: 'utf8' (names are text), or 'latin1' where every byte maps to one
 * char, so raw names that are not valid UTF-8 (tar members) round-trip exactly.
 */
export type NameEncoding = 'utf8' | 'latin1';

/** Splits a timeout in seconds into (seconds, nanoseconds). */
function splitSeconds(s: number): [number, number] {
  const sec = Math.floor(s);
  return [sec, Math.round((s - sec) * 1e9)];
}

export function writeAttr(b: Buffer, off: number, a: Attr): void {
  const size = a.size ?? 0;
  const mtime = a.mtime ?? 0;
  const mtimeNsec = a.mtimeNsec ?? 0;
  writeU64(b, off, a.ino);
  writeU64(b, off + 8, size);
  writeU64(b, off + 16, a.blocks ?? Math.ceil(size / 4096) * 8);
  writeU64(b, off + 24, a.atime ?? mtime);
  writeU64(b, off + 32, mtime);
  writeU64(b, off + 40, a.ctime ?? mtime);
  b.writeUInt32LE(a.atime === undefined ? mtimeNsec : (a.atimeNsec ?? 0), off + 48);
  b.writeUInt32LE(mtimeNsec, off + 52);
  b.writeUInt32LE(a.ctime === undefined ? mtimeNsec : (a.ctimeNsec ?? 0), off + 56);
  b.writeUInt32LE(a.mode >>> 0, off + 60);
  b.writeUInt32LE(a.nlink ?? 1, off + 64);
  b.writeUInt32LE(a.uid ?? 0, off + 68);
  b.writeUInt32LE(a.gid ?? 0, off + 72);
  b.writeUInt32LE(a.rdev ?? 0, off + 76);
  b.writeUInt32LE(a.blksize ?? 4096, off + 80);
  b.writeUInt32LE(0, off + 84);
}

/** fuse_entry_out. nodeid 0 = negative entry (cached for entryTimeout). */
export function writeEntryOut(b: Buffer, off: number, nodeid: number, generation: number, entryTimeout: number, attrTimeout: number, attr: Attr | null): void {
  const [es, ens] = splitSeconds(entryTimeout);
  const [as, ans] = splitSeconds(attrTimeout);
  writeU64(b, off, nodeid);
  writeU64(b, off + 8, generation);
  writeU64(b, off + 16, es);
  writeU64(b, off + 24, attr ? as : 0);
  b.writeUInt32LE(ens, off + 32);
  b.writeUInt32LE(attr ? ans : 0, off + 36);
  if (attr) writeAttr(b, off + 40, attr);
  else b.fill(0, off + 40, off + ENTRY_OUT_SIZE);
}

export function writeAttrOut(b: Buffer, off: number, attrTimeout: number, attr: Attr): void {
  const [s, ns] = splitSeconds(attrTimeout);
  writeU64(b, off, s);
  b.writeUInt32LE(ns, off + 8);
  b.writeUInt32LE(0, off + 12);
  writeAttr(b, off + 16, attr);
}

export function writeOpenOut(b: Buffer, off: number, fh: number, openFlags: number): void {
  writeU64(b, off, fh);
  b.writeUInt32LE(openFlags, off + 8);
  b.writeUInt32LE(0, off + 12);
}

export function writeStatfsOut(b: Buffer, off: number, s: StatfsResult): void {
  b.fill(0, off, off + STATFS_OUT_SIZE);
  writeU64(b, off, s.blocks ?? 0);
  writeU64(b, off + 8, s.bfree ?? 0);
  writeU64(b, off + 16, s.bavail ?? 0);
  writeU64(b, off + 24, s.files ?? 0);
  writeU64(b, off + 32, s.ffree ?? 0);
  const bsize = s.bsize ?? 4096;
  b.writeUInt32LE(bsize, off + 40);
  b.writeUInt32LE(s.namelen ?? 255, off + 44);
  b.writeUInt32LE(s.frsize ?? bsize, off + 48);
}

export interface InitIn {
  major: number;
  minor: number;
  maxReadahead: number;
  flags: number;
  flags2: number;
}

export function parseInitIn(b: Buffer, off: number, end: number): InitIn {
  const flags = b.readUInt32LE(off + 12);
  return {
    major: b.readUInt32LE(off),
    minor: b.readUInt32LE(off + 4),
    maxReadahead: b.readUInt32LE(off + 8),
    flags,
    flags2: end - off >= 20 && flags & InitFlag.INIT_EXT ? b.readUInt32LE(off + 16) : 0,
  };
}

export interface InitOut {
  minor: number;
  maxReadahead: number;
  flags: number;
  maxBackground: number;
  congestionThreshold: number;
  maxWrite: number;
  maxPages: number;
}

export function writeInitOut(b: Buffer, off: number, o: InitOut): void {
  b.fill(0, off, off + INIT_OUT_SIZE);
  b.writeUInt32LE(KERNEL_MAJOR, off);
  b.writeUInt32LE(o.minor, off + 4);
  b.writeUInt32LE(o.maxReadahead, off + 8);
  b.writeUInt32LE(o.flags >>> 0, off + 12);
  b.writeUInt16LE(o.maxBackground, off + 16);
  b.writeUInt16LE(o.congestionThreshold, off + 18);
  b.writeUInt32LE(o.maxWrite, off + 20);
  b.writeUInt32LE(1, off + 24); // time_gran: 1 ns
  b.writeUInt16LE(o.maxPages, off + 28);
}

/** DT_* value for a mode (the kernel wants the type in the dirent). */
export function direntType(mode: number): number {
  return (mode & S_IFMT) >>> 12;
}

const align8 = (n: number): number => (n + 7) & ~7;

export function direntSize(nameBytes: number, plus: boolean): number {
  return align8((plus ? DIRENTPLUS_HEADER : DIRENT_HEADER) + nameBytes);
}

/**
 * Encodes directory entries starting at index `start` of `entries` into at most `size` bytes.
 * The `off` of entry i is i+1 (the cookie of the next entry). For plus, `plusEntry(i)` gives the
 * entry_out fields (null → nodeid 0, as for `.`/`..`). Returns the buffer and how many were packed.
 */
export function encodeDirents(
  entries: readonly DirEntry[],
  start: number,
  size: number,
  plus: { entry: (e: DirEntry, index: number) => { nodeid: number; generation: number; entryTimeout: number; attrTimeout: number; attr: Attr } | null } | null,
  enc: NameEncoding = 'utf8',
): { buf: Buffer; count: number } {
  const buf = Buffer.alloc(size);
  let pos = 0;
  let i = start;
  for (; i < entries.length; i++) {
    const e = entries[i]!;
    const nameLen = Buffer.byteLength(e.name, enc);
    const rec = direntSize(nameLen, plus !== null);
    if (pos + rec > size) break;
    let d = pos;
    if (plus) {
      const eo = plus.entry(e, i);
      if (eo) writeEntryOut(buf, pos, eo.nodeid, eo.generation, eo.entryTimeout, eo.attrTimeout, eo.attr);
      // else: already zero (nodeid 0: the kernel skips it when linking dentries)
      d = pos + ENTRY_OUT_SIZE;
    }
    writeU64(buf, d, e.attr?.ino ?? e.ino);
    writeU64(buf, d + 8, i + 1);
    buf.writeUInt32LE(nameLen, d + 16);
    buf.writeUInt32LE(direntType(e.mode), d + 20);
    buf.write(e.name, d + 24, nameLen, enc);
    pos += rec;
  }
  return { buf: buf.subarray(0, pos), count: i - start };
}
