/**
 * An in-memory read-only Filesystem for the FUSE tests and the benchmark: directories, a 2000-entry
 * directory, small files, big generated files (content is a seeded pseudo-random pattern computed
 * on the fly, so md5 can be checked without storing the file), symlinks, hardlinks (one inode, two
 * names), a fifo, a char device, xattrs (incl. binary), a file whose read hangs, a directory whose
 * lookups are slow, and an executable (bytes of /bin/true).
 */
import { createHash } from 'node:crypto';
import { SociError } from '../src/errors.js';
import {
  ErrnoError,
  Errno,
  ROOT_INO,
  S_IFCHR,
  S_IFDIR,
  S_IFIFO,
  S_IFLNK,
  S_IFREG,
  makedev,
  type Attr,
  type DirEntry,
  type Entry,
  type Filesystem,
  type OpenResult,
  type StatfsResult,
} from '../src/fuse/index.js';
import { xorshift32 } from './random.js';

const MiB = 1024 * 1024;
/** Pattern period: not a multiple of the page size, so pages differ. */
const PERIOD = MiB + 4093;
let patternBlock: Buffer | null = null;

/** PERIOD + 1 MiB bytes of xorshift output: any read ≤ 1 MiB is one zero-copy slice. */
function pattern(): Buffer {
  if (patternBlock) return patternBlock;
  const b = Buffer.allocUnsafe(PERIOD + MiB + 8);
  const next = xorshift32(0x9e3779b9);
  for (let i = 0; i + 4 <= PERIOD + 4; i += 4) b.writeUInt32LE(next(), i);
  b.copy(b, PERIOD, 0, MiB + 8);
  patternBlock = b.subarray(0, PERIOD + MiB);
  return patternBlock;
}

/** Bytes [off, off+n) of a generated file with the given seed (n ≤ 1 MiB is zero-copy). */
export function generated(seed: number, off: number, n: number): Buffer {
  const p = pattern();
  if (n <= MiB) {
    const s = (off + seed) % PERIOD;
    return p.subarray(s, s + n);
  }
  const out = Buffer.allocUnsafe(n);
  for (let done = 0; done < n; done += MiB) out.set(generated(seed, off + done, Math.min(MiB, n - done)), done);
  return out;
}

export function generatedMd5(seed: number, size: number): string {
  const h = createHash('md5');
  for (let off = 0; off < size; off += MiB) h.update(generated(seed, off, Math.min(MiB, size - off)));
  return h.digest('hex');
}

interface Node {
  attr: Attr;
  children?: Map<string, number>;
  data?: Buffer;
  gen?: { seed: number };
  target?: string;
  xattrs?: Map<string, Buffer>;
  /** Special read behaviour for error/timeout tests. */
  behavior?: 'slow' | 'gone' | 'eacces' | 'direct';
}

export interface SyntheticOptions {
  bigSize?: number; // default 64 MiB
  hugeSize?: number; // 0 (default) = no huge.bin
  slowReadMs?: number; // default 5000
  slowLookupMs?: number; // default 300
  trueBytes?: Buffer; // content of the executable `true`
}

export const MTIME = 1700000000;
export const BIG_SEED = 12345;
export const HUGE_SEED = 777;

export class SyntheticFs implements Filesystem {
  readonly nodes = new Map<number, Node>();
  readonly calls: Record<string, number> = {};
  readonly forgotten = new Map<number, number>();
  /** How many times each name was looked up (negative-cache checks). */
  readonly lookedUp = new Map<string, number>();
  destroyed = 0;
  private next = 2;
  private readonly opts: Required<Omit<SyntheticOptions, 'trueBytes'>> & SyntheticOptions;
  private readonly slowTimers = new Set<NodeJS.Timeout>();

  constructor(opts: SyntheticOptions = {}) {
    this.opts = { bigSize: 64 * MiB, hugeSize: 0, slowReadMs: 5000, slowLookupMs: 300, ...opts };
    this.nodes.set(ROOT_INO, { attr: { ino: ROOT_INO, mode: S_IFDIR | 0o755, nlink: 2, mtime: MTIME }, children: new Map() });
    const root = ROOT_INO;
    this.file(root, 'hello.txt', Buffer.from('hello world\n'), { uid: 1000, gid: 100, mode: 0o640, mtimeNsec: 123456789 });
    const dir = this.dir(root, 'dir');
    const sub = this.dir(dir, 'sub');
    this.file(sub, 'deep.txt', Buffer.from('deep\n'));
    this.symlink(root, 'link', 'hello.txt');
    this.symlink(dir, 'abs-link', '/etc/hostname');
    this.symlink(dir, 'up-link', '../hello.txt');
    const hard = this.file(root, 'hard1', Buffer.from('shared inode\n'));
    this.link(dir, 'hard2', hard);
    this.special(root, 'fifo', S_IFIFO | 0o644, 0);
    this.special(root, 'null-dev', S_IFCHR | 0o666, makedev(1, 3));
    const x = this.file(root, 'xattr.txt', Buffer.from('has xattrs\n'));
    this.nodes.get(x)!.xattrs = new Map([
      ['user.text', Buffer.from('hello')],
      ['user.bin', Buffer.from([0, 1, 2, 0xff, 0xfe, 0])],
      ['user.big', Buffer.alloc(3000, 0x61)],
    ]);
    this.nodes.get(dir)!.xattrs = new Map([['trusted.overlay.opaque', Buffer.from('y')]]);
    const many = this.dir(root, 'many');
    for (let i = 0; i < 2000; i++) this.file(many, `f${String(i).padStart(4, '0')}`, Buffer.from(`file ${i}\n`));
    this.genFile(root, 'big.bin', BIG_SEED, this.opts.bigSize);
    if (this.opts.hugeSize) this.genFile(root, 'huge.bin', HUGE_SEED, this.opts.hugeSize);
    this.nodes.get(this.genFile(root, 'direct.bin', BIG_SEED, 4 * MiB))!.behavior = 'direct'; // opened FOPEN_DIRECT_IO
    this.nodes.get(this.file(root, 'slow.txt', Buffer.from('slow\n')))!.behavior = 'slow';
    this.dir(root, 'slow-lookup');
    this.nodes.get(this.file(root, 'gone.txt', Buffer.from('gone\n')))!.behavior = 'gone'; // SociError ERR_NOT_FOUND
    this.nodes.get(this.file(root, 'eacces.txt', Buffer.from('no\n')))!.behavior = 'eacces'; // ErrnoError(EACCES)
    if (this.opts.trueBytes) this.file(root, 'true', this.opts.trueBytes, { mode: 0o755 });
  }

  // ---- building ----

  private add(parent: number, name: string, node: Node): number {
    const ino = this.next++;
    node.attr.ino = ino;
    this.nodes.set(ino, node);
    this.nodes.get(parent)!.children!.set(name, ino);
    return ino;
  }

  dir(parent: number, name: string): number {
    this.nodes.get(parent)!.attr.nlink! += 1;
    return this.add(parent, name, { attr: { ino: 0, mode: S_IFDIR | 0o755, nlink: 2, mtime: MTIME }, children: new Map() });
  }

  file(parent: number, name: string, data: Buffer, a: Partial<Attr> = {}): number {
    return this.add(parent, name, { attr: { ino: 0, mtime: MTIME, size: data.length, ...a, mode: S_IFREG | (a.mode ?? 0o644) }, data });
  }

  genFile(parent: number, name: string, seed: number, size: number): number {
    return this.add(parent, name, { attr: { ino: 0, mode: S_IFREG | 0o444, mtime: MTIME, size }, gen: { seed } });
  }

  symlink(parent: number, name: string, target: string): number {
    return this.add(parent, name, { attr: { ino: 0, mode: S_IFLNK | 0o777, mtime: MTIME, size: Buffer.byteLength(target) }, target });
  }

  special(parent: number, name: string, mode: number, rdev: number): number {
    return this.add(parent, name, { attr: { ino: 0, mode, mtime: MTIME, rdev } });
  }

  link(parent: number, name: string, ino: number): void {
    const n = this.nodes.get(ino)!;
    n.attr.nlink = (n.attr.nlink ?? 1) + 1;
    this.nodes.get(parent)!.children!.set(name, ino);
  }

  // ---- Filesystem ----

  private count(op: string): void {
    this.calls[op] = (this.calls[op] ?? 0) + 1;
  }

  private node(ino: number): Node {
    const n = this.nodes.get(ino);
    if (!n) throw new ErrnoError(Errno.ENOENT, `no inode ${ino}`);
    return n;
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((r) => {
      const t = setTimeout(() => {
        this.slowTimers.delete(t);
        r();
      }, ms);
      t.unref();
      this.slowTimers.add(t);
    });
  }

  async lookup(parent: number, name: string): Promise<Entry | null> {
    this.count('lookup');
    this.lookedUp.set(name, (this.lookedUp.get(name) ?? 0) + 1);
    const p = this.node(parent);
    if (!p.children) throw new ErrnoError(Errno.ENOTDIR);
    if (parent === this.slowLookupIno()) {
      // slow-lookup/<anything>: answers after a delay with a fresh file (tests concurrency)
      await this.sleep(this.opts.slowLookupMs);
      const existing = p.children.get(name);
      if (existing) return { ino: existing, attr: this.node(existing).attr };
      const ino = this.file(parent, name, Buffer.from(name));
      return { ino, attr: this.node(ino).attr };
    }
    const ino = p.children.get(name);
    if (ino === undefined) return null;
    return { ino, attr: this.node(ino).attr };
  }

  private slowLookupIno(): number {
    return this.nodes.get(ROOT_INO)!.children!.get('slow-lookup')!;
  }

  async getattr(ino: number): Promise<Attr> {
    this.count('getattr');
    return this.node(ino).attr;
  }

  async readdir(ino: number): Promise<DirEntry[]> {
    this.count('readdir');
    const n = this.node(ino);
    if (!n.children) throw new ErrnoError(Errno.ENOTDIR);
    const out: DirEntry[] = [];
    // Entries of dir/ come without attributes, so READDIRPLUS has to getattr them itself.
    const withAttr = this.nodes.get(ROOT_INO)!.children!.get('dir') !== ino;
    for (const [name, child] of n.children) {
      const a = this.node(child).attr;
      out.push({ name, ino: child, mode: a.mode, ...(withAttr ? { attr: a } : {}) });
    }
    return out;
  }

  async open(ino: number): Promise<OpenResult> {
    this.count('open');
    return this.node(ino).behavior === 'direct' ? { directIo: true, keepCache: false } : {};
  }

  async read(ino: number, offset: number, size: number): Promise<Buffer> {
    this.count('read');
    const n = this.node(ino);
    if (n.behavior === 'slow') await this.sleep(this.opts.slowReadMs);
    if (n.behavior === 'gone') throw new SociError('ERR_NOT_FOUND', 'span vanished');
    if (n.behavior === 'eacces') throw new ErrnoError(Errno.EACCES);
    const fsize = n.attr.size ?? 0;
    if (offset >= fsize) return Buffer.alloc(0);
    const len = Math.min(size, fsize - offset);
    if (n.gen) return generated(n.gen.seed, offset, len);
    return n.data!.subarray(offset, offset + len);
  }

  async readlink(ino: number): Promise<string> {
    this.count('readlink');
    const t = this.node(ino).target;
    if (t === undefined) throw new ErrnoError(Errno.EINVAL);
    return t;
  }

  async getxattr(ino: number, name: string): Promise<Buffer | null> {
    this.count('getxattr');
    return this.node(ino).xattrs?.get(name) ?? null;
  }

  async listxattr(ino: number): Promise<string[]> {
    this.count('listxattr');
    return [...(this.node(ino).xattrs?.keys() ?? [])];
  }

  async statfs(): Promise<StatfsResult> {
    return { blocks: 1000, bfree: 0, bavail: 0, files: this.nodes.size, ffree: 0, bsize: 4096, namelen: 255 };
  }

  forget(ino: number, nlookup: number): void {
    this.forgotten.set(ino, (this.forgotten.get(ino) ?? 0) + nlookup);
  }

  destroy(): void {
    this.destroyed++;
    for (const t of this.slowTimers) clearTimeout(t);
  }
}
