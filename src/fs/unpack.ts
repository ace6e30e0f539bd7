/**
 * Local unpack of a layer that is not lazily loaded: the blob stream is decompressed and walked
 * with the Go-compatible TarWalker (raw-byte names, binary xattrs), and applied to a directory in the
 * form overlayfs expects for a lower layer: `.wh.X` → char device 0:0 named X, `.wh..wh..opq` →
 * xattr trusted.overlay.opaque=y on its dir. Names are cleaned and never escape the root: no
 * component of a parent may be a symlink (checked before every create). All I/O is async; the
 * caller must only use the result after the blob's digest has been verified (fetchBlob does that
 * at the end of the stream and throws otherwise).
 */
import { spawn } from 'node:child_process';
import { lchown, link, lstat, lutimes, mkdir, open, rm, symlink, utimes, chmod } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { createGunzip } from 'node:zlib';
import { Readable } from 'node:stream';
import { SociError } from '../errors.js';
import { TarWalker, cleanPath, type FileMetadata } from '../ztoc/index.js';
import { parseModTime, OPAQUE_WHITEOUT, WHITEOUT_PREFIX } from './tree.js';

export type UnpackCompression = 'gzip' | 'uncompressed' | 'zstd';

export interface UnpackStats {
  entries: number;
  bytes: number;
  whiteouts: number;
  opaqueDirs: number;
}

/** Applies a layer blob stream to the empty directory `root`. */
export async function unpackLayer(blob: AsyncIterable<Buffer>, compression: UnpackCompression, root: string): Promise<UnpackStats> {
  const u = new Unpacker(root);
  const walker = new TarWalker((e) => u.queue.push(e));
  let pos = 0;
  for await (const chunk of decompress(blob, compression)) {
    walker.write(chunk);
    await u.feed(chunk, pos);
    pos += chunk.length;
  }
  walker.end();
  await u.finish();
  return u.stats;
}

async function* decompress(blob: AsyncIterable<Buffer>, c: UnpackCompression): AsyncIterable<Buffer> {
  if (c === 'uncompressed') {
    yield* blob;
    return;
  }
  if (c === 'gzip') {
    yield* Readable.from(blob).pipe(createGunzip()) as AsyncIterable<Buffer>;
    return;
  }
  // zstd: the Debian zstd tool, streamed (no npm dependency).
  const p = spawn('zstd', ['-dc'], { stdio: ['pipe', 'pipe', 'pipe'] });
  const exited = new Promise<number>((r) => p.on('close', (code) => r(code ?? 1)));
  p.on('error', () => undefined);
  const pump = (async () => {
    for await (const c2 of blob) if (!p.stdin.write(c2)) await new Promise((r) => p.stdin.once('drain', r));
    p.stdin.end();
  })();
  pump.catch(() => p.kill());
  yield* p.stdout as AsyncIterable<Buffer>;
  await pump;
  if ((await exited) !== 0) throw new SociError('ERR_IO', 'zstd -d failed on the layer');
}

interface Open {
  e: FileMetadata;
  fh: FileHandle;
  end: number;
  path: string;
}

class Unpacker {
  readonly queue: FileMetadata[] = [];
  readonly stats: UnpackStats = { entries: 0, bytes: 0, whiteouts: 0, opaqueDirs: 0 };
  private current: Open | null = null;
  private readonly dirTimes: Array<{ path: string; e: FileMetadata }> = [];
  private readonly safeDirs = new Set<string>(['']);

  constructor(private readonly root: string) {}

  /** Handles the entries parsed from `chunk` and routes its data bytes to the open file. */
  async feed(chunk: Buffer, pos: number): Promise<void> {
    const end = pos + chunk.length;
    // Data of the current file can precede the next header in this chunk.
    for (;;) {
      if (this.current) {
        const c = this.current;
        const from = Math.max(pos, c.e.uncompressedOffset);
        const to = Math.min(end, c.end);
        if (to > from) {
          await c.fh.write(chunk.subarray(from - pos, to - pos));
          this.stats.bytes += to - from;
        }
        if (c.end > end) return; // more data in later chunks
        await this.close();
      }
      const e = this.queue.shift();
      if (!e) return;
      await this.apply(e);
    }
  }

  async finish(): Promise<void> {
    if (this.current) throw new SociError('ERR_BAD_TAR', 'layer ended inside a file');
    // Directory times last: creating children changed them.
    for (const { path, e } of this.dirTimes.reverse()) {
      const t = parseModTime(e.modTime);
      await utimes(path, t.sec + t.nsec / 1e9, t.sec + t.nsec / 1e9).catch(() => undefined);
    }
  }

  private async close(): Promise<void> {
    const c = this.current!;
    this.current = null;
    await c.fh.close();
    await this.meta(c.path, c.e);
  }

  private async apply(e: FileMetadata): Promise<void> {
    this.stats.entries++;
    const rel = cleanPath(e.name);
    if (rel === '') {
      if (e.type === 'dir') this.dirTimes.push({ path: this.root, e });
      return;
    }
    const slash = rel.lastIndexOf('/');
    const parentRel = slash < 0 ? '' : rel.slice(0, slash);
    const base = rel.slice(slash + 1);
    const parent = await this.ensureDir(parentRel);
    if (base === OPAQUE_WHITEOUT) {
      await setXattr(parent, 'trusted.overlay.opaque', Buffer.from('y'));
      this.stats.opaqueDirs++;
      return;
    }
    if (base.startsWith(WHITEOUT_PREFIX)) {
      const target = join(parent, fsName(base.slice(WHITEOUT_PREFIX.length)));
      await rm(target, { recursive: true, force: true });
      await run('mknod', [target, 'c', '0', '0']);
      this.stats.whiteouts++;
      return;
    }
    const path = join(parent, fsName(base));
    const existing = await lstat(path).catch(() => null);
    if (e.type === 'dir') {
      if (existing && !existing.isDirectory()) await rm(path, { force: true });
      if (!existing?.isDirectory()) await mkdir(path);
      this.safeDirs.add(rel);
      await this.meta(path, e);
      this.dirTimes.push({ path, e });
      return;
    }
    if (existing) await rm(path, { recursive: true, force: true });
    // A dir replaced by a non-dir: forget it and everything under it as a safe parent.
    for (const d of this.safeDirs) if (d === rel || d.startsWith(`${rel}/`)) this.safeDirs.delete(d);
    switch (e.type) {
      case 'reg': {
        const fh = await open(path, 'wx', 0o600);
        this.current = { e, fh, end: e.uncompressedOffset + e.uncompressedSize, path };
        return; // data follows; meta() after the last byte
      }
      case 'hardlink': {
        const target = cleanPath(e.linkname);
        const tpath = join(this.root, fsName(target));
        const st = await lstat(tpath).catch(() => null);
        if (!st || st.isDirectory()) throw new SociError('ERR_BAD_TAR', `hardlink ${JSON.stringify(rel)} to missing ${JSON.stringify(target)}`);
        await this.ensureDir(target.includes('/') ? target.slice(0, target.lastIndexOf('/')) : '');
        await link(tpath, path);
        return;
      }
      case 'symlink':
        await symlink(fsName(e.linkname.toString('latin1')), path);
        break;
      case 'char':
      case 'block':
        await run('mknod', [path, e.type === 'char' ? 'c' : 'b', String(e.devmajor), String(e.devminor)]);
        break;
      case 'fifo':
        await run('mkfifo', [path]);
        break;
    }
    await this.meta(path, e);
  }

  /** Owner, mode, xattrs and times of a created entry (lchown before chmod: chown clears suid). */
  private async meta(path: string, e: FileMetadata): Promise<void> {
    await lchown(path, e.uid, e.gid).catch(() => undefined);
    if (e.type !== 'symlink') await chmod(path, e.mode & 0o7777);
    for (const r of e.pax) {
      const k = r.key.toString('latin1');
      if (k.startsWith('SCHILY.xattr.')) await setXattr(path, k.slice('SCHILY.xattr.'.length), r.value).catch(() => undefined);
    }
    const t = parseModTime(e.modTime);
    if (e.type !== 'dir') await lutimes(path, t.sec + t.nsec / 1e9, t.sec + t.nsec / 1e9).catch(() => undefined);
  }

  /** The dir for a cleaned relative path, created on demand; refuses symlinks on the way. */
  private async ensureDir(rel: string): Promise<string> {
    const abs = rel === '' ? this.root : join(this.root, fsName(rel));
    if (this.safeDirs.has(rel)) return abs;
    let cur = this.root;
    let curRel = '';
    for (const part of rel.split('/')) {
      cur = join(cur, fsName(part));
      curRel = curRel ? `${curRel}/${part}` : part;
      if (this.safeDirs.has(curRel)) continue;
      const st = await lstat(cur).catch(() => null);
      if (!st) await mkdir(cur, { mode: 0o755 });
      else if (!st.isDirectory()) throw new SociError('ERR_BAD_TAR', `layer path ${JSON.stringify(curRel)} is not a directory (a symlink or file is in the way)`);
      this.safeDirs.add(curRel);
    }
    return abs;
  }
}

/** latin1 names back to the raw bytes Node's fs expects (Buffer paths are not joinable). */
function fsName(latin1: string): string {
  // Node fs takes strings as UTF-8; raw non-UTF-8 bytes cannot round-trip through a string path.
  // Bytes that form valid UTF-8 are decoded; anything else stays as latin1 (documented limitation).
  const b = Buffer.from(latin1, 'latin1');
  const s = b.toString('utf8');
  return Buffer.from(s, 'utf8').equals(b) ? s : latin1;
}

async function setXattr(path: string, name: string, value: Buffer): Promise<void> {
  await run('setfattr', ['-h', '-n', name, '-v', `0x${value.toString('hex')}`, path]);
}

function run(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('error', (e) => reject(new SociError('ERR_IO', `${cmd}: ${e.message}`)));
    p.on('close', (code) => (code === 0 ? resolve() : reject(new SociError('ERR_IO', `${cmd} ${args.join(' ')}: ${err.trim() || `exit ${code}`}`))));
  });
}
