/**
 * The contract between the FUSE protocol server (src/fuse/server.ts) and a read-only filesystem.
 *
 * How to implement a Filesystem:
 * - Every inode is named by a number, its node id. The root is always ROOT_INO (1). `lookup` returns
 *   the node id of a child (`Entry.ino`); the kernel uses that id in every later call. `attr.ino` is
 *   what `stat` shows as st_ino: usually the same number, but the root may report another.
 *   Hardlinks are the same node id (shared inode) reached under several names.
 * - All methods are async. Signal errors by throwing: an `ErrnoError` (or anything with a positive
 *   numeric `errno`, or a Node system error such as `{ code: 'ENOENT' }`), or a SociError whose code
 *   maps to an errno (ERR_NOT_FOUND → ENOENT, ...); anything else becomes EIO. A method that does
 *   not answer within the server's request timeout makes the kernel request fail with EIO.
 * - `lookup` returns null for "no such name": the server then replies a negative entry that the
 *   kernel caches for `negativeTimeout` seconds (throwing ENOENT also works but is not cached).
 * - `readdir` returns the whole listing of a directory once per opendir, in a stable order; the
 *   server pages it for the kernel and adds `.` and `..` if the listing lacks them. Give `attr` on
 *   the entries when cheap: READDIRPLUS then needs no extra getattr per entry.
 * - Lookup counts: each successful `lookup` and each entry sent in a READDIRPLUS reply counts as one
 *   kernel reference; `forget(ino, n)` drops n of them. A static inode table can ignore forget.
 *   A lookup answered after its request timed out or was interrupted is handed back at once as
 *   forget(ino, 1); an open answered too late is released.
 * - `read` returns up to `size` bytes at `offset`; return fewer (or an empty Buffer) at EOF. A slice
 *   of a larger buffer is fine: it is written to the kernel before the promise chain continues.
 * - xattrs: return null from getxattr for an absent name (ENODATA). To switch xattrs off for the
 *   whole mount (like go-fuse DisableXAttrs), throw ErrnoError(ENOSYS): the kernel then stops asking.
 * - Names are decoded/encoded as UTF-8.
 */

/** Node id of the root directory: fixed by the FUSE protocol. */
export const ROOT_INO = 1;

/** Linux errno values used by the server (FUSE replies carry Linux numbers). */
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  EINTR: 4,
  EIO: 5,
  ENXIO: 6,
  E2BIG: 7,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EBUSY: 16,
  EEXIST: 17,
  ENOTDIR: 20,
  EISDIR: 21,
  EINVAL: 22,
  EFBIG: 27,
  ENOSPC: 28,
  EROFS: 30,
  ERANGE: 34,
  ENAMETOOLONG: 36,
  ENOSYS: 38,
  ENOTEMPTY: 39,
  ELOOP: 40,
  ENODATA: 61,
  EPROTO: 71,
  EOPNOTSUPP: 95,
  ETIMEDOUT: 110,
} as const;

/** File type bits of `mode` (as in stat(2)). */
export const S_IFMT = 0o170000;
export const S_IFSOCK = 0o140000;
export const S_IFLNK = 0o120000;
export const S_IFREG = 0o100000;
export const S_IFBLK = 0o060000;
export const S_IFDIR = 0o040000;
export const S_IFCHR = 0o020000;
export const S_IFIFO = 0o010000;

/** An error carrying a Linux errno, for filesystems to throw. */
export class ErrnoError extends Error {
  readonly errno: number;
  constructor(errno: number, message?: string) {
    super(message ?? `errno ${errno}`);
    this.name = 'ErrnoError';
    this.errno = errno;
  }
}

/** Encodes a device number the way the kernel decodes fuse_attr.rdev (new_decode_dev). */
export function makedev(major: number, minor: number): number {
  return ((minor & 0xff) | ((major & 0xfff) << 8) | ((minor & ~0xff) << 12)) >>> 0;
}

/** Attributes of one inode. Times are seconds since the epoch plus optional nanoseconds. */
export interface Attr {
  /** st_ino shown to users. */
  ino: number;
  /** Type bits (S_IF*) | permission bits (incl. suid/sgid/sticky). */
  mode: number;
  nlink?: number; // default 1
  uid?: number; // default 0
  gid?: number; // default 0
  size?: number; // default 0; symlinks: length of the target
  blocks?: number; // 512-byte blocks; default ceil(size/4096)*8
  blksize?: number; // default 4096
  rdev?: number; // makedev(major, minor) for devices
  mtime?: number; // default 0
  mtimeNsec?: number;
  atime?: number; // default mtime
  atimeNsec?: number;
  ctime?: number; // default mtime
  ctimeNsec?: number;
}

/** Result of a successful lookup. */
export interface Entry {
  /** Node id the kernel will use for this inode. */
  ino: number;
  attr: Attr;
  generation?: number;
  /** Per-entry overrides of the server's cache timeouts (seconds). */
  entryTimeout?: number;
  attrTimeout?: number;
}

/** One directory entry. */
export interface DirEntry {
  name: string;
  /** Node id of the entry (for `.`/`..` only used as d_ino). */
  ino: number;
  /** Type bits (S_IF*) at least; full mode is fine. */
  mode: number;
  /** Full attributes, when the filesystem has them at hand (saves a getattr in READDIRPLUS). */
  attr?: Attr;
}

export interface OpenResult {
  /** File handle passed back to read/release; default 0. */
  fh?: number;
  /** Keep the page cache across opens (default true: content is immutable). */
  keepCache?: boolean;
  /** Bypass the page cache (fast streaming; mmap MAP_SHARED then fails). */
  directIo?: boolean;
}

export interface StatfsResult {
  blocks?: number;
  bfree?: number;
  bavail?: number;
  files?: number;
  ffree?: number;
  bsize?: number; // default 4096
  frsize?: number; // default bsize
  namelen?: number; // default 255
}

/** A read-only filesystem served by FuseServer. Optional methods have sane defaults. */
export interface Filesystem {
  lookup(parent: number, name: string): Promise<Entry | null>;
  getattr(ino: number): Promise<Attr>;
  readdir(ino: number): Promise<DirEntry[]>;
  /** Default: fh 0, keepCache. */
  open?(ino: number, flags: number): Promise<OpenResult | void>;
  read(ino: number, offset: number, size: number, fh: number): Promise<Buffer>;
  /**
   * Optional read() variant with a scratch buffer of at least `size` bytes owned by the server:
   * fill it and return a view of it (or return any other buffer, as read() does). The server
   * reuses the scratch buffer once the returned promise has settled and the reply is written.
   */
  readInto?(ino: number, offset: number, size: number, fh: number, scratch: Buffer): Promise<Buffer>;
  release?(ino: number, fh: number): Promise<void>;
  readlink(ino: number): Promise<string | Buffer>;
  /** null → ENODATA. */
  getxattr?(ino: number, name: string): Promise<Buffer | null>;
  listxattr?(ino: number): Promise<string[]>;
  statfs?(ino: number): Promise<StatfsResult>;
  /** The kernel dropped `nlookup` references to `ino`. Never answered. */
  forget?(ino: number, nlookup: number): void;
  /** Called once when the connection ends (unmount or abort). */
  destroy?(): void;
}
