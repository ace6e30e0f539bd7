/**
 * The worker side of local unpack (./unpack.ts): decompresses a layer blob (node:zlib, or a tool
 * process), hashes the tar for its diff_id, and applies it to a directory in the form overlayfs
 * expects for a lower layer: `.wh.X` → char device 0:0 named X, `.wh..wh..opq` →
 * xattr trusted.overlay.opaque=y on its dir, as containerd's unpack makes them (the device has mode
 * 0000 and the whiteout entry's owner). Names are cleaned and classified by ../ztoc/names.ts
 * `layerName`, the same function the FUSE tree uses, and never escape the root: an invalid whiteout
 * (`.wh.`, `.wh..`, `.wh...`) fails the layer with ERR_BAD_TAR, as does a symlink or file on the way
 * to an entry, a whiteout, an opaque marker or a hardlink's target (checked before every create); a
 * non-directory naming the root is skipped and counted (`skipped`). Nothing is created, removed or
 * touched outside the root, nor the root itself (only its times, from a `./` entry). It runs on a
 * worker thread with synchronous fs calls: a layer is thousands of small metadata syscalls, and a
 * round trip through the libuv pool per call made unpack 2–3× slower than `tar -x`; the daemon's
 * event loop never waits for any of it.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  fchmodSync,
  futimesSync,
  lchownSync,
  linkSync,
  lstatSync,
  lutimesSync,
  mkdirSync,
  openSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { join, resolve, sep } from 'node:path';
import { isMainThread, workerData, type MessagePort } from 'node:worker_threads';
import { SociError } from '../errors.js';
import { workerInput } from '../worker-pipe.js';
import { isPoolWorker, serveJobs } from '../worker-pool.js';
// The walker and the name rules only, not the zTOC barrel: every unpack worker loads these.
import { layerName, quoteName } from '../ztoc/names.js';
import { TarWalker } from '../ztoc/tar-walker.js';
import type { FileMetadata } from '../ztoc/types.js';
import { parseModTime } from '../ztoc/mod-time.js';
import { decompress, type ImpliedDir, type UnpackJob, type UnpackStats } from './unpack.js';

const ROOT_UID = 0;
const ROOT_GID = 0;

/** UnpackStats, plus the entries left out (a non-directory naming the root, see ../ztoc/names.ts). */
export interface ApplyStats extends UnpackStats {
  skipped: number;
}

/** Applies tar bytes, chunk by chunk, to the empty directory `root`. */
export class TarApplier {
  private readonly u: Unpacker;
  private readonly walker: TarWalker;
  private pos = 0;

  constructor(root: string) {
    this.u = new Unpacker(root);
    this.walker = new TarWalker((e) => this.u.queue.push(e));
  }

  write(chunk: Buffer): void {
    this.walker.write(chunk);
    this.u.feed(chunk, this.pos);
    this.pos += chunk.length;
  }

  end(): ApplyStats {
    this.walker.end();
    this.u.finish();
    return this.u.stats;
  }

  /** Closes the file being written, if any: the layer failed and nothing more comes. */
  abort(): void {
    this.u.abort();
  }
}

interface Open {
  e: FileMetadata;
  fd: number;
  end: number;
  path: string;
}

class Unpacker {
  readonly queue: FileMetadata[] = [];
  readonly stats: ApplyStats = { entries: 0, bytes: 0, whiteouts: 0, opaqueDirs: 0, rootOpaque: false, skipped: 0, impliedDirs: [] };
  /** dirs created only because an entry lies under them, by cleaned relative path */
  private readonly implied = new Map<string, ImpliedDir>();
  private current: Open | null = null;
  private readonly dirTimes: Array<{ path: string; rel: string; e: FileMetadata }> = [];
  private readonly safeDirs = new Set<string>(['']);
  /** absolute paths this layer created so far */
  private readonly created = new Set<string>();
  /** absolute paths that currently hold a whiteout device (never a hardlink target) */
  private readonly whiteoutDevs = new Set<string>();
  private readonly root: string;
  /** the root with a trailing separator: everything created starts with it */
  private readonly rootPrefix: string;

  constructor(root: string) {
    this.root = resolve(root);
    this.rootPrefix = this.root.endsWith(sep) ? this.root : this.root + sep;
  }

  /** Handles the entries parsed from `chunk` and routes its data bytes to the open file. */
  feed(chunk: Buffer, pos: number): void {
    const end = pos + chunk.length;
    // Data of the current file can precede the next header in this chunk.
    for (;;) {
      if (this.current) {
        const c = this.current;
        const from = Math.max(pos, c.e.uncompressedOffset);
        const to = Math.min(end, c.end);
        if (to > from) {
          writeAll(c.fd, chunk.subarray(from - pos, to - pos));
          this.stats.bytes += to - from;
        }
        if (c.end > end) return; // more data in later chunks
        this.close();
      }
      const e = this.queue.shift();
      if (!e) return;
      this.apply(e);
    }
  }

  finish(): void {
    if (this.current) throw new SociError('ERR_BAD_TAR', 'layer ended inside a file');
    this.stats.impliedDirs = [...this.implied.values()];
    // Directory times last: creating children changed them.
    for (const { path, rel, e } of this.dirTimes.reverse()) {
      // A dir removed or replaced since (by a whiteout, a file or a symlink) keeps no times of its own.
      if (rel !== '' && !this.safeDirs.has(rel)) continue;
      const t = parseModTime(e.modTime);
      try {
        lutimesSync(path, t.sec + t.nsec / 1e9, t.sec + t.nsec / 1e9);
      } catch {
        /* best effort, as tar */
      }
    }
  }

  /** fds are the process's, not the thread's: a failed layer must not keep its open file. */
  abort(): void {
    const c = this.current;
    this.current = null;
    if (c) closeSync(c.fd);
  }

  private close(): void {
    const c = this.current!;
    this.current = null;
    try {
      this.meta(c.path, c.e, c.fd);
    } finally {
      closeSync(c.fd);
    }
  }

  private apply(e: FileMetadata): void {
    this.stats.entries++;
    // Every name is cleaned and classified by the same function as the FUSE tree's (../ztoc/names.ts).
    const name = layerName(e);
    if (name.kind === 'root') {
      this.dirTimes.push({ path: this.root, rel: '', e });
      return;
    }
    if (name.kind === 'skip') {
      this.stats.skipped++;
      return;
    }
    const parent = this.ensureDir(name.parent);
    if (name.kind === 'opaque') {
      setXattr(parent, 'trusted.overlay.opaque', Buffer.from('y'));
      this.stats.opaqueDirs++;
      if (name.parent === '') this.stats.rootOpaque = true;
      return;
    }
    if (name.kind === 'whiteout') {
      // X is a plain name (never empty, `.` or `..`) in a verified directory of this layer.
      const target = this.inside(join(parent, fsName(name.target)), name.path);
      removePath(target);
      this.forgetDirs(name.parent === '' ? name.target : `${name.parent}/${name.target}`);
      run('mknod', ['-m', '0', target, 'c', '0', '0']);
      if (e.uid !== ROOT_UID || e.gid !== ROOT_GID) lchownSync(target, e.uid, e.gid);
      this.childCreated(name.parent);
      this.created.add(target);
      this.whiteoutDevs.add(target);
      this.stats.whiteouts++;
      return;
    }
    const rel = name.path;
    const path = this.inside(join(parent, fsName(name.base)), rel);
    this.childCreated(name.parent);
    // The root starts empty: only a path this layer already created can exist (tar may repeat names).
    const existing = this.created.has(path) ? (lstatSync(path, { throwIfNoEntry: false }) ?? null) : null;
    this.created.add(path);
    this.whiteoutDevs.delete(path);
    if (e.type === 'dir') {
      if (existing && !existing.isDirectory()) removePath(path);
      if (!existing?.isDirectory()) mkdirSync(path);
      this.safeDirs.add(rel);
      this.implied.delete(rel); // listed after all: its own header gives its attributes
      this.meta(path, e);
      this.dirTimes.push({ path, rel, e });
      return;
    }
    if (existing) removePath(path);
    // A dir replaced by a non-dir: forget it and everything under it as a safe parent.
    this.forgetDirs(rel);
    switch (e.type) {
      case 'reg': {
        const fd = openSync(path, 'wx', 0o600);
        this.current = { e, fd, end: e.uncompressedOffset + e.uncompressedSize, path };
        return; // data follows; meta() after the last byte
      }
      case 'hardlink': {
        // The target must be a non-directory this layer created, reached through verified dirs only.
        const target = name.linkTarget!;
        const slash = target.lastIndexOf('/');
        const missing = () => new SociError('ERR_BAD_TAR', `hardlink ${quoteName(rel)} to missing ${quoteName(target)}`);
        const tdir = this.ensureDir(slash < 0 ? '' : target.slice(0, slash), false);
        if (tdir === null) throw missing();
        const tpath = this.inside(join(tdir, fsName(target.slice(slash + 1))), target);
        const st = lstatSync(tpath, { throwIfNoEntry: false });
        if (!st || st.isDirectory() || !this.created.has(tpath) || this.whiteoutDevs.has(tpath)) throw missing();
        linkSync(tpath, path);
        return;
      }
      case 'symlink':
        symlinkSync(fsName(e.linkname.toString('latin1')), path);
        break;
      case 'char':
      case 'block':
        run('mknod', [path, e.type === 'char' ? 'c' : 'b', String(e.devmajor), String(e.devminor)]);
        break;
      case 'fifo':
        run('mkfifo', [path]);
        break;
    }
    this.meta(path, e);
  }

  /** `abs` when it lies strictly inside the root (never the root or above it); else the layer fails. */
  private inside(abs: string, rel: string): string {
    if (!abs.startsWith(this.rootPrefix)) throw new SociError('ERR_BAD_TAR', `layer entry ${quoteName(rel)} resolves outside the layer root`);
    return abs;
  }

  /** `rel` and every dir under it are no longer known directories (removed or replaced). */
  private forgetDirs(rel: string): void {
    // Every known dir's parents are known too: when `rel` is not, nothing under it is.
    if (!this.safeDirs.has(rel)) return;
    for (const d of this.safeDirs) if (d === rel || d.startsWith(`${rel}/`)) this.safeDirs.delete(d);
    for (const d of this.implied.keys()) if (d === rel || d.startsWith(`${rel}/`)) this.implied.delete(d);
  }

  /** Something was created in the dir `rel` (cleaned, relative): an implied dir's times are now the unpack's. */
  private childCreated(rel: string): void {
    const d = this.implied.get(rel);
    if (d) d.childCreated = true;
  }

  /** Owner, mode, xattrs and times of a created entry (lchown before chmod: chown clears suid). */
  private meta(path: string, e: FileMetadata, fd?: number): void {
    // Files are created by root as 0:0 already: chown only when the layer says otherwise.
    if (e.uid !== ROOT_UID || e.gid !== ROOT_GID) {
      try {
        lchownSync(path, e.uid, e.gid);
      } catch {
        /* not root: keep our ids */
      }
    }
    if (fd !== undefined) fchmodSync(fd, e.mode & 0o7777);
    else if (e.type !== 'symlink') chmodSync(path, e.mode & 0o7777);
    for (const r of e.pax) {
      const k = r.key.toString('latin1');
      if (!k.startsWith('SCHILY.xattr.')) continue;
      try {
        setXattr(path, k.slice('SCHILY.xattr.'.length), r.value);
      } catch {
        /* filesystem without that xattr namespace: as tar, keep going */
      }
    }
    const t = parseModTime(e.modTime);
    if (e.type === 'dir') return;
    try {
      if (fd !== undefined) futimesSync(fd, t.sec + t.nsec / 1e9, t.sec + t.nsec / 1e9);
      else lutimesSync(path, t.sec + t.nsec / 1e9, t.sec + t.nsec / 1e9);
    } catch {
      /* best effort, as tar */
    }
  }

  /**
   * The dir for a cleaned relative path, created on demand (or `null` when missing and `create` is
   * false); a symlink or file on the way fails the layer, so nothing is ever reached through a link.
   */
  private ensureDir(rel: string, create?: true): string;
  private ensureDir(rel: string, create: false): string | null;
  private ensureDir(rel: string, create = true): string | null {
    const abs = rel === '' ? this.root : join(this.root, fsName(rel));
    if (this.safeDirs.has(rel)) return abs;
    let cur = this.root;
    let curRel = '';
    for (const part of rel.split('/')) {
      cur = this.inside(join(cur, fsName(part)), rel);
      curRel = curRel ? `${curRel}/${part}` : part;
      if (this.safeDirs.has(curRel)) continue;
      const st = lstatSync(cur, { throwIfNoEntry: false });
      if (!st) {
        if (!create) return null;
        mkdirSync(cur, { mode: 0o755 });
        this.created.add(cur);
        this.childCreated(curRel.includes('/') ? curRel.slice(0, curRel.lastIndexOf('/')) : '');
        this.implied.set(curRel, { path: fsName(curRel), childCreated: false });
      } else if (!st.isDirectory()) {
        throw new SociError('ERR_BAD_TAR', `layer path ${quoteName(curRel)} is not a directory (a symlink or file is in the way)`);
      }
      this.safeDirs.add(curRel);
    }
    return abs;
  }
}

/** Removes what is at `path` without following it: a symlink is unlinked, never its target. */
function removePath(path: string): void {
  const st = lstatSync(path, { throwIfNoEntry: false });
  if (!st) return;
  if (st.isDirectory()) rmSync(path, { recursive: true, force: true });
  else unlinkSync(path);
}

/** latin1 names back to the raw bytes Node's fs expects (Buffer paths are not joinable). */
function fsName(latin1: string): string {
  // Node fs takes strings as UTF-8; raw non-UTF-8 bytes cannot round-trip through a string path.
  // Bytes that form valid UTF-8 are decoded; anything else stays as latin1 (documented limitation).
  const b = Buffer.from(latin1, 'latin1');
  const s = b.toString('utf8');
  return Buffer.from(s, 'utf8').equals(b) ? s : latin1;
}

function setXattr(path: string, name: string, value: Buffer): void {
  run('setfattr', ['-h', '-n', name, '-v', `0x${value.toString('hex')}`, path]);
}

function run(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  if (r.error) throw new SociError('ERR_IO', `${cmd}: ${r.error.message}`);
  if (r.status !== 0) {
    const why =
      r.stderr
        .toString()
        .trim()
        .replace(/\s*\n\s*/g, '; ') || `exit ${r.status}`;
    throw new SociError('ERR_IO', `${cmd} ${args.map((a) => JSON.stringify(a)).join(' ')}: ${why}`);
  }
}

function writeAll(fd: number, b: Buffer): void {
  for (let off = 0; off < b.length; ) off += writeSync(fd, b, off, b.length - off);
}

// ---- the worker side: one UnpackJob per layer ----

/** One layer: its blob from `port`, decompressed, hashed and applied to the job's root. */
async function unpackJob(job: UnpackJob, port: MessagePort): Promise<ApplyStats & { diffId: string }> {
  const applier = new TarApplier(job.unpackRoot);
  const input = workerInput(port)[Symbol.asyncIterator]();
  const next = () => input.next();
  // workerInput hands each buffer back to the main thread on the next read: the decoders (see
  // decompress) and the applier are done with a chunk by then. No return(): a decoder that stops
  // at the end of its stream must not end the input.
  const source: AsyncIterable<Buffer> = { [Symbol.asyncIterator]: () => ({ next }) };
  const hash = createHash('sha256');
  try {
    for await (const chunk of decompress(source, job.compression ?? 'uncompressed', job.tool)) {
      hash.update(chunk);
      applier.write(chunk);
    }
    while (!(await next()).done) {
      /* the rest of the blob after the end of its stream (a gzip trailer, padding) */
    }
    return { ...applier.end(), diffId: `sha256:${hash.digest('hex')}` };
  } catch (e) {
    applier.abort();
    throw e;
  }
}

if (!isMainThread && isPoolWorker(workerData)) serveJobs(unpackJob);
