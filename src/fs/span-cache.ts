/**
 * SpanCache: a bounded on-disk cache of uncompressed spans shared by every layer of a process.
 * One file per span under `<dir>/<layer key>/<span id>`, written to a temp name and renamed so a
 * reader never sees a partial span. Eviction is LRU over all layers and skips pinned entries (a
 * span being read), so the cap can be exceeded briefly but a read never loses its file mid-way.
 * Cached reads pread only the requested range from the span file, through a bounded LRU of open
 * descriptors; spans just fetched are also kept in a bounded memory LRU. All I/O is async (the
 * serving path must never block the event loop).
 */
import { randomBytes } from 'node:crypto';
import { close, constants, open, read } from 'node:fs';
import { mkdir, readdir, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const openAsync = promisify(open);
const readAsync = (fd: number, buf: Buffer, off: number, len: number, pos: number): Promise<number> =>
  new Promise((res, rej) => read(fd, buf, off, len, pos, (err, n) => (err ? rej(err) : res(n))));

export const DEFAULT_CACHE_MAX_BYTES = 1024 * 1024 * 1024;

interface Entry {
  path: string;
  size: number;
  /** reads in progress: the entry is neither evicted nor its descriptor closed meanwhile */
  pins: number;
  /** read-only descriptor of the span file while it is in the fd LRU (-1: closed) */
  fd: number;
  opening: Promise<number> | null;
  /** removed from the cache (evicted, dropped): its descriptor closes once unpinned */
  gone: boolean;
}

export interface SpanCacheStats {
  bytes: number;
  entries: number;
  maxBytes: number;
  evictions: number;
  writes: number;
  writeFailures: number;
  /** bytes of spans held in memory, and reads served from there */
  hotBytes: number;
  hotHits: number;
  /** reads served from span files, and how many span files are held open */
  diskReads: number;
  openFiles: number;
}

export const DEFAULT_HOT_MAX_BYTES = 64 * 1024 * 1024;
export const DEFAULT_MAX_OPEN_FILES = 64;

export class SpanCache {
  readonly dir: string;
  readonly maxBytes: number;
  /** Map iteration order is the LRU order: a hit re-inserts its key at the end. */
  private readonly entries = new Map<string, Entry>();
  private bytes = 0;
  private evictions = 0;
  private writes = 0;
  private writeFailures = 0;
  private readonly layerDirs = new Set<string>();
  private wipReady: Promise<void> | null = null;

  /**
   * Spans just fetched also stay in memory (bounded LRU), so readers right behind a fetch need no
   * disk read. Other reads pread just the requested range from the span file, whose descriptor
   * stays open in a bounded LRU (no open/close per kernel request, no whole-span loads).
   */
  readonly hotMaxBytes: number;
  private readonly hot = new Map<string, Buffer>();
  private hotBytes = 0;
  private hotHits = 0;
  readonly maxOpenFiles: number;
  /** entries holding an open descriptor, least recently used first */
  private readonly fds = new Map<string, Entry>();
  private diskReads = 0;

  constructor(opts: { dir: string; maxBytes?: number; hotMaxBytes?: number; maxOpenFiles?: number }) {
    this.dir = opts.dir;
    this.maxBytes = opts.maxBytes ?? DEFAULT_CACHE_MAX_BYTES;
    this.hotMaxBytes = Math.min(opts.hotMaxBytes ?? DEFAULT_HOT_MAX_BYTES, this.maxBytes);
    this.maxOpenFiles = Math.max(1, opts.maxOpenFiles ?? DEFAULT_MAX_OPEN_FILES);
  }

  private remember(k: string, data: Buffer): void {
    if (data.length > this.hotMaxBytes / 4) return; // huge spans would flush everything else
    // A slice of a multi-span buffer would keep the whole parent alive: keep a copy instead.
    if (data.buffer.byteLength > data.length * 1.25) data = Buffer.from(data);
    const prev = this.hot.get(k);
    if (prev) this.hotBytes -= prev.length;
    this.hot.delete(k);
    this.hot.set(k, data);
    this.hotBytes += data.length;
    for (const [hk, hv] of this.hot) {
      if (this.hotBytes <= this.hotMaxBytes) break;
      this.hot.delete(hk);
      this.hotBytes -= hv.length;
    }
  }

  private forget(k: string): void {
    const h = this.hot.get(k);
    if (!h) return;
    this.hot.delete(k);
    this.hotBytes -= h.length;
  }

  stats(): SpanCacheStats {
    return {
      bytes: this.bytes,
      entries: this.entries.size,
      maxBytes: this.maxBytes,
      evictions: this.evictions,
      writes: this.writes,
      writeFailures: this.writeFailures,
      hotBytes: this.hotBytes,
      hotHits: this.hotHits,
      diskReads: this.diskReads,
      openFiles: this.fds.size,
    };
  }

  has(layer: string, span: number): boolean {
    const e = this.entries.get(key(layer, span));
    return !!e;
  }

  /**
   * The span's bytes if it is in the memory tier (the cached buffer itself, not a copy: never
   * written to), else undefined. Counts as a use of the span.
   */
  hotSpan(layer: string, span: number): Buffer | undefined {
    const k = key(layer, span);
    const h = this.hot.get(k);
    if (!h) return undefined;
    const e = this.entries.get(k);
    if (e) {
      this.entries.delete(k);
      this.entries.set(k, e);
    }
    this.hot.delete(k);
    this.hot.set(k, h);
    this.hotHits++;
    return h;
  }

  /**
   * Bytes [start, end) of a cached span, or null when it is not (or no longer) cached. From the
   * memory tier this is a view of the cached span; from disk a new buffer.
   */
  async read(layer: string, span: number, start: number, end: number): Promise<Buffer | null> {
    const k = key(layer, span);
    const e = this.entries.get(k);
    if (!e) return null;
    const len = Math.max(0, Math.min(end, e.size) - start);
    const h = this.hotSpan(layer, span);
    if (h) return h.subarray(start, start + len);
    const buf = Buffer.allocUnsafe(len);
    return (await this.readInto(layer, span, start, start + len, buf, 0)) ? buf : null;
  }

  /**
   * Copies bytes [start, end) of a cached span into dst at dstOff: from the memory tier, or with
   * one positioned read of just that range from the span's file (kept open in a bounded LRU of
   * descriptors). False when the span is not (or no longer) cached; the caller fetches it again.
   * The entry is pinned meanwhile, so neither eviction nor the fd LRU closes its file under the read.
   */
  async readInto(layer: string, span: number, start: number, end: number, dst: Buffer, dstOff: number): Promise<boolean> {
    const k = key(layer, span);
    const e = this.entries.get(k);
    if (!e) return false;
    if (end > e.size || start > end) return false;
    const len = end - start;
    const h = this.hotSpan(layer, span);
    if (h) {
      h.copy(dst, dstOff, start, end);
      return true;
    }
    this.entries.delete(k);
    this.entries.set(k, e);
    e.pins++;
    try {
      const fd = await this.fdOf(k, e);
      let got = 0;
      while (got < len) {
        const n = await readAsync(fd, dst, dstOff + got, len - got, start + got);
        if (n === 0) break;
        got += n;
      }
      if (got === len) this.diskReads++;
      return got === len;
    } catch {
      return false; // a vanished file is a miss: the caller fetches again
    } finally {
      this.unpin(k, e);
    }
  }

  /** The entry's open descriptor (opened once, then kept in the fd LRU). Caller holds a pin. */
  private fdOf(k: string, e: Entry): Promise<number> | number {
    if (e.fd >= 0) {
      if (!e.gone) {
        this.fds.delete(k);
        this.fds.set(k, e);
      }
      return e.fd;
    }
    if (e.opening) return e.opening;
    const p = openAsync(e.path, constants.O_RDONLY).then(
      (fd) => {
        e.opening = null;
        e.fd = fd;
        if (!e.gone) {
          this.fds.set(k, e);
          this.trimFds();
        }
        return fd;
      },
      (err: unknown) => {
        e.opening = null;
        throw err;
      },
    );
    e.opening = p;
    return p;
  }

  /** Closes idle descriptors beyond maxOpenFiles, least recently used first (pinned ones stay). */
  private trimFds(): void {
    if (this.fds.size <= this.maxOpenFiles) return;
    for (const [k, e] of this.fds) {
      if (this.fds.size <= this.maxOpenFiles) break;
      if (e.pins > 0) continue;
      this.fds.delete(k);
      closeFd(e);
    }
  }

  /** Stores a span (replacing any previous copy), then evicts down to the cap. */
  async put(layer: string, span: number, data: Buffer): Promise<void> {
    const k = key(layer, span);
    if (this.entries.has(k)) return;
    const dir = join(this.dir, safe(layer));
    try {
      if (!this.layerDirs.has(dir)) {
        await mkdir(dir, { recursive: true, mode: 0o700 });
        this.layerDirs.add(dir);
      }
      this.wipReady ??= mkdir(join(this.dir, 'wip'), { recursive: true, mode: 0o700 }).then(() => undefined);
      await this.wipReady;
      const tmp = join(this.dir, 'wip', `${safe(layer)}-${span}-${randomBytes(6).toString('hex')}`);
      const path = join(dir, String(span));
      await writeFile(tmp, data);
      await rename(tmp, path);
      this.writes++;
      const prev = this.entries.get(k);
      if (prev) this.bytes -= prev.size;
      this.entries.set(k, { path, size: data.length, pins: 0, fd: -1, opening: null, gone: false });
      this.bytes += data.length;
      this.remember(k, data);
    } catch {
      // A full disk must not fail the read that fetched the span: it is served from memory.
      this.writeFailures++;
      return;
    }
    await this.evict();
  }

  /**
   * Takes over the span files an earlier process left for `layer` (a daemon restarted under the
   * same mount): each was verified, then renamed into place whole, so it counts as cached. Returns
   * how many were taken.
   */
  async adopt(layer: string): Promise<number> {
    const dir = join(this.dir, safe(layer));
    let names: string[];
    try {
      names = await readdir(dir);
    } catch {
      return 0;
    }
    this.layerDirs.add(dir);
    let n = 0;
    for (const name of names) {
      if (!/^\d+$/.test(name)) continue;
      const k = key(layer, Number(name));
      if (this.entries.has(k)) continue;
      const path = join(dir, name);
      const st = await stat(path).catch(() => null);
      if (!st?.isFile()) continue;
      this.entries.set(k, { path, size: st.size, pins: 0, fd: -1, opening: null, gone: false });
      this.bytes += st.size;
      n++;
    }
    await this.evict();
    return n;
  }

  /**
   * Removes the span dirs of layers this cache neither wrote nor adopted (left by a process that
   * died), and temp files older than `tempAgeMs` (a write cut short).
   */
  async prune(tempAgeMs = 3600_000): Promise<void> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch {
      return;
    }
    for (const name of names) {
      const path = join(this.dir, name);
      if (name !== 'wip') {
        if (!this.layerDirs.has(path)) await rm(path, { recursive: true, force: true });
        continue;
      }
      for (const t of await readdir(path).catch(() => [] as string[])) {
        const st = await stat(join(path, t)).catch(() => null);
        if (st && Date.now() - st.mtimeMs > tempAgeMs) await rm(join(path, t), { force: true });
      }
    }
  }

  /** Forgets every span of a layer and removes its directory (layer unmounted). */
  async dropLayer(layer: string): Promise<void> {
    const prefix = `${layer}\0`;
    for (const [k, e] of [...this.entries]) {
      if (!k.startsWith(prefix)) continue;
      this.entries.delete(k);
      this.forget(k);
      this.bytes -= e.size;
      this.retire(k, e);
    }
    const dir = join(this.dir, safe(layer));
    this.layerDirs.delete(dir);
    await rm(dir, { recursive: true, force: true });
  }

  private async evict(): Promise<void> {
    if (this.bytes <= this.maxBytes) return;
    const victims: Entry[] = [];
    for (const [k, e] of this.entries) {
      if (this.bytes <= this.maxBytes) break;
      if (e.pins > 0) continue;
      this.entries.delete(k);
      this.forget(k);
      this.bytes -= e.size;
      this.evictions++;
      this.retire(k, e);
      victims.push(e);
    }
    await Promise.all(victims.map((e) => unlink(e.path).catch(() => undefined)));
  }

  /** An entry leaves the cache: close its descriptor now, or when its last read finishes. */
  private retire(k: string, e: Entry): void {
    e.gone = true;
    if (this.fds.get(k) === e) this.fds.delete(k);
    if (e.pins === 0) closeFd(e);
  }

  private unpin(_k: string, e: Entry): void {
    e.pins--;
    if (e.pins > 0) return;
    if (e.gone) closeFd(e);
    else if (this.fds.size > this.maxOpenFiles) this.trimFds();
    if (this.bytes > this.maxBytes) void this.evict();
  }
}

function closeFd(e: Entry): void {
  if (e.fd < 0) return;
  const fd = e.fd;
  e.fd = -1;
  close(fd, () => undefined);
}

function key(layer: string, span: number): string {
  return `${layer}\0${span}`;
}

/** A layer key ("sha256:…" or anything) as one safe path component. */
function safe(layer: string): string {
  return layer.replace(/[^A-Za-z0-9_.-]/g, '_');
}
