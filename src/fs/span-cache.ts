/**
 * SpanCache: a bounded on-disk cache of uncompressed spans shared by every layer of a process.
 * One file per span under `<dir>/<layer key>/<span id>`, written to a temp name and renamed so a
 * reader never sees a partial span. Eviction is LRU over all layers and skips pinned entries (a
 * span being read), so the cap can be exceeded briefly but a read never loses its file mid-way.
 * All I/O is async (the serving path must never block the event loop).
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, rm, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export const DEFAULT_CACHE_MAX_BYTES = 1024 * 1024 * 1024;

interface Entry {
  path: string;
  size: number;
  pins: number;
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
}

export const DEFAULT_HOT_MAX_BYTES = 64 * 1024 * 1024;

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
   * Recently used spans also stay in memory (bounded LRU): a sequential reader then costs one disk
   * read per span instead of an open/read/close per 1 MiB kernel request.
   */
  readonly hotMaxBytes: number;
  private readonly hot = new Map<string, Buffer>();
  private hotBytes = 0;
  private hotHits = 0;

  constructor(opts: { dir: string; maxBytes?: number; hotMaxBytes?: number }) {
    this.dir = opts.dir;
    this.maxBytes = opts.maxBytes ?? DEFAULT_CACHE_MAX_BYTES;
    this.hotMaxBytes = Math.min(opts.hotMaxBytes ?? DEFAULT_HOT_MAX_BYTES, this.maxBytes);
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
    return { bytes: this.bytes, entries: this.entries.size, maxBytes: this.maxBytes, evictions: this.evictions, writes: this.writes, writeFailures: this.writeFailures, hotBytes: this.hotBytes, hotHits: this.hotHits };
  }

  has(layer: string, span: number): boolean {
    const e = this.entries.get(key(layer, span));
    return !!e;
  }

  /**
   * Bytes [start, end) of a cached span, or null when it is not (or no longer) cached.
   * The entry is pinned for the duration of the read.
   */
  async read(layer: string, span: number, start: number, end: number): Promise<Buffer | null> {
    const k = key(layer, span);
    const e = this.entries.get(k);
    if (!e) return null;
    this.entries.delete(k);
    this.entries.set(k, e);
    const len = Math.max(0, Math.min(end, e.size) - start);
    const pending = this.loading.get(k);
    if (pending) {
      const b = await pending; // a read-ahead of this span is in flight: share it
      if (b) {
        this.hotHits++;
        return b.subarray(start, start + len);
      }
    }
    const h = this.hot.get(k);
    if (h) {
      this.hot.delete(k);
      this.hot.set(k, h);
      this.hotHits++;
      return h.subarray(start, start + len);
    }
    e.pins++;
    try {
      const fh = await open(e.path, 'r');
      try {
        if (e.size <= this.hotMaxBytes / 4) {
          // Load the whole span once: the next reads of it are served from memory.
          const whole = Buffer.allocUnsafe(e.size);
          let n = 0;
          while (n < e.size) {
            const { bytesRead } = await fh.read(whole, n, e.size - n, n);
            if (bytesRead === 0) break;
            n += bytesRead;
          }
          if (n !== e.size) return null;
          this.remember(k, whole);
          this.loadAhead(layer, span + 1);
          return whole.subarray(start, start + len);
        }
        const buf = Buffer.allocUnsafe(len);
        let got = 0;
        while (got < len) {
          const { bytesRead } = await fh.read(buf, got, len - got, start + got);
          if (bytesRead === 0) break;
          got += bytesRead;
        }
        if (got !== len) return null;
        return buf;
      } finally {
        await fh.close();
      }
    } catch {
      return null; // a vanished file is a miss: the caller fetches again
    } finally {
      this.unpin(k, e);
    }
  }

  private readonly loading = new Map<string, Promise<Buffer | null>>();

  /**
   * Sequential readers: after a span came from disk, bring the next cached span of the layer into
   * memory in the background; a read of it meanwhile waits for this load instead of reading again.
   */
  private loadAhead(layer: string, span: number): void {
    const k = key(layer, span);
    const e = this.entries.get(k);
    if (!e || this.hot.has(k) || this.loading.has(k) || e.size > this.hotMaxBytes / 4) return;
    e.pins++;
    const p = readFile(e.path)
      .then((b) => {
        if (b.length !== e.size) return null;
        if (this.entries.get(k) === e) this.remember(k, b);
        return b;
      })
      .catch(() => null)
      .finally(() => {
        this.loading.delete(k);
        this.unpin(k, e);
      });
    this.loading.set(k, p);
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
      this.entries.set(k, { path, size: data.length, pins: 0 });
      this.bytes += data.length;
      this.remember(k, data);
    } catch {
      // A full disk must not fail the read that fetched the span: it is served from memory.
      this.writeFailures++;
      return;
    }
    await this.evict();
  }

  /** Forgets every span of a layer and removes its directory (layer unmounted). */
  async dropLayer(layer: string): Promise<void> {
    const prefix = `${layer}\0`;
    for (const [k, e] of [...this.entries]) {
      if (!k.startsWith(prefix)) continue;
      this.entries.delete(k);
      this.forget(k);
      this.bytes -= e.size;
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
      victims.push(e);
    }
    await Promise.all(victims.map((e) => unlink(e.path).catch(() => undefined)));
  }

  private unpin(_k: string, e: Entry): void {
    e.pins--;
    if (e.pins === 0 && this.bytes > this.maxBytes) void this.evict();
  }
}

function key(layer: string, span: number): string {
  return `${layer}\0${span}`;
}

/** A layer key ("sha256:…" or anything) as one safe path component. */
function safe(layer: string): string {
  return layer.replace(/[^A-Za-z0-9_.-]/g, '_');
}
