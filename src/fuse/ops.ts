/**
 * The request handlers of a read-only filesystem: each decodes its request, asks the Filesystem,
 * and encodes the reply (./replies.ts). Write operations never get here (EROFS), nor do INIT,
 * FORGET and INTERRUPT, which the server handles itself.
 */
import {
  ATTR_OUT_SIZE,
  ENTRY_OUT_SIZE,
  FOPEN_CACHE_DIR,
  FOPEN_DIRECT_IO,
  FOPEN_KEEP_CACHE,
  OPEN_OUT_SIZE,
  OUT_HEADER_SIZE,
  Op,
  STATFS_OUT_SIZE,
  readCString,
  readU64,
  writeAttrOut,
  writeEntryOut,
  writeOpenOut,
  writeStatfsOut,
  type NameEncoding,
} from './protocol.js';
import type { DirHandles } from './dirs.js';
import type { Pending, Replies } from './replies.js';
import { Errno, type Filesystem } from './types.js';

/** What a handler works with: the server's filesystem, replies, directory handles and settings. */
export interface OpContext {
  fsys: Filesystem;
  replies: Replies;
  dirs: DirHandles;
  names: NameEncoding;
  /** kernel cache lifetimes in seconds */
  timeouts: { entryTimeout: number; attrTimeout: number; negativeTimeout: number };
  /** gives the kernel's reference to a node back (a lookup answered too late) */
  forget(ino: number, n: number): void;
}

export type Handler = (c: OpContext, req: Buffer, nodeid: number, p: Pending) => Promise<void>;

/** The largest READ the kernel asks for (MAX_PAGES pages of 4 KiB). */
export const MAX_PAGES = 256;

/** The size of a read scratch buffer: the largest READ. */
const READ_SCRATCH_SIZE = MAX_PAGES * 4096;
/**
 * Scratch buffers for Filesystem.readInto, shared by every server of the process. At most this
 * many stay pooled (8 MiB); more concurrent READs allocate and drop theirs.
 */
const MAX_POOLED_SCRATCH = 8;
const scratchPool: Buffer[] = [];

async function lookup(c: OpContext, req: Buffer, parent: number, p: Pending): Promise<void> {
  const name = readCString(req, 40, req.readUInt32LE(0), c.names);
  const e = await c.fsys.lookup(parent, name);
  if (!e) {
    if (c.timeouts.negativeTimeout <= 0) return c.replies.error(p, Errno.ENOENT);
    writeEntryOut(c.replies.scratch, OUT_HEADER_SIZE, 0, 0, c.timeouts.negativeTimeout, 0, null);
  } else {
    writeEntryOut(
      c.replies.scratch,
      OUT_HEADER_SIZE,
      e.ino,
      e.generation ?? 0,
      e.entryTimeout ?? c.timeouts.entryTimeout,
      e.attrTimeout ?? c.timeouts.attrTimeout,
      e.attr,
    );
  }
  // Answered too late (timeout/interrupt): the kernel never took this reference, give it back.
  if (p.done && e) return c.forget(e.ino, 1);
  c.replies.body(p, ENTRY_OUT_SIZE);
}

async function getattr(c: OpContext, _req: Buffer, ino: number, p: Pending): Promise<void> {
  const a = await c.fsys.getattr(ino);
  writeAttrOut(c.replies.scratch, OUT_HEADER_SIZE, c.timeouts.attrTimeout, a);
  c.replies.body(p, ATTR_OUT_SIZE);
}

async function readlink(c: OpContext, _req: Buffer, ino: number, p: Pending): Promise<void> {
  const t = await c.fsys.readlink(ino);
  c.replies.data(p, typeof t === 'string' ? Buffer.from(t) : t);
}

async function open(c: OpContext, req: Buffer, ino: number, p: Pending): Promise<void> {
  const flags = req.readUInt32LE(40);
  if ((flags & 3) !== 0) return c.replies.error(p, Errno.EROFS); // O_WRONLY / O_RDWR
  const r = c.fsys.open ? await c.fsys.open(ino, flags) : undefined;
  // Answered too late: no RELEASE will ever come for this handle, so release it now.
  if (p.done) return void (await c.fsys.release?.(ino, r?.fh ?? 0));
  const of = (r?.keepCache === false ? 0 : FOPEN_KEEP_CACHE) | (r?.directIo ? FOPEN_DIRECT_IO : 0);
  writeOpenOut(c.replies.scratch, OUT_HEADER_SIZE, r?.fh ?? 0, of);
  c.replies.body(p, OPEN_OUT_SIZE);
}

async function read(c: OpContext, req: Buffer, ino: number, p: Pending): Promise<void> {
  const fh = readU64(req, 40);
  const offset = readU64(req, 48);
  const size = req.readUInt32LE(56);
  if (c.fsys.readInto && size <= READ_SCRATCH_SIZE) {
    // The scratch buffer goes back to the pool only once the filesystem is done with it (a
    // request answered by timeout or interrupt may still be filling it).
    const scratch = scratchPool.pop() ?? Buffer.allocUnsafeSlow(READ_SCRATCH_SIZE);
    try {
      const data = await c.fsys.readInto(ino, offset, size, fh, scratch.subarray(0, size));
      c.replies.data(p, data.length > size ? data.subarray(0, size) : data);
    } finally {
      if (scratchPool.length < MAX_POOLED_SCRATCH) scratchPool.push(scratch);
    }
    return;
  }
  const data = await c.fsys.read(ino, offset, size, fh);
  c.replies.data(p, data.length > size ? data.subarray(0, size) : data);
}

async function release(c: OpContext, req: Buffer, ino: number, p: Pending): Promise<void> {
  await c.fsys.release?.(ino, readU64(req, 40));
  c.replies.empty(p);
}

async function opendir(c: OpContext, _req: Buffer, ino: number, p: Pending): Promise<void> {
  writeOpenOut(c.replies.scratch, OUT_HEADER_SIZE, c.dirs.open(ino), FOPEN_KEEP_CACHE | FOPEN_CACHE_DIR);
  c.replies.body(p, OPEN_OUT_SIZE);
}

async function releasedir(c: OpContext, req: Buffer, _ino: number, p: Pending): Promise<void> {
  c.dirs.release(readU64(req, 40));
  c.replies.empty(p);
}

async function readdir(c: OpContext, req: Buffer, ino: number, p: Pending): Promise<void> {
  c.replies.data(p, await c.dirs.page(readU64(req, 40), ino, readU64(req, 48), req.readUInt32LE(56), null));
}

async function readdirplus(c: OpContext, req: Buffer, ino: number, p: Pending): Promise<void> {
  const timeouts = { entryTimeout: c.timeouts.entryTimeout, attrTimeout: c.timeouts.attrTimeout };
  c.replies.data(p, await c.dirs.page(readU64(req, 40), ino, readU64(req, 48), req.readUInt32LE(56), timeouts));
}

async function statfs(c: OpContext, _req: Buffer, ino: number, p: Pending): Promise<void> {
  const s = c.fsys.statfs ? await c.fsys.statfs(ino) : {};
  writeStatfsOut(c.replies.scratch, OUT_HEADER_SIZE, s);
  c.replies.body(p, STATFS_OUT_SIZE);
}

async function getxattr(c: OpContext, req: Buffer, ino: number, p: Pending): Promise<void> {
  const size = req.readUInt32LE(40);
  const name = readCString(req, 48, req.readUInt32LE(0), c.names);
  // ENODATA, not ENOSYS: ENOSYS would disable xattrs on the whole mount.
  const v = c.fsys.getxattr ? await c.fsys.getxattr(ino, name) : null;
  if (!v) return c.replies.error(p, Errno.ENODATA);
  c.replies.sized(p, size, v);
}

async function listxattr(c: OpContext, req: Buffer, ino: number, p: Pending): Promise<void> {
  const size = req.readUInt32LE(40);
  const names = c.fsys.listxattr ? await c.fsys.listxattr(ino) : [];
  const data = Buffer.from(names.map((n) => n + '\0').join(''), c.names);
  c.replies.sized(p, size, data);
}

/** Op code → handler; an op not here is answered ENOSYS. */
export const HANDLERS: Record<number, Handler | undefined> = {
  [Op.LOOKUP]: lookup,
  [Op.GETATTR]: getattr,
  [Op.READLINK]: readlink,
  [Op.OPEN]: open,
  [Op.READ]: read,
  [Op.RELEASE]: release,
  [Op.OPENDIR]: opendir,
  [Op.READDIR]: readdir,
  [Op.READDIRPLUS]: readdirplus,
  [Op.RELEASEDIR]: releasedir,
  [Op.STATFS]: statfs,
  [Op.GETXATTR]: getxattr,
  [Op.LISTXATTR]: listxattr,
};
