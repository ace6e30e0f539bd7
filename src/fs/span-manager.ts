/**
 * SpanManager: serves uncompressed bytes of one layer from its spans. A missing span is fetched
 * with a Range request through a BlobSource, verified against the
 * zTOC span digest (never serving unverified bytes), inflated with the compression module's async
 * extractSpans and stored in the shared SpanCache. Concurrent readers of a span share one fetch;
 * adjacent missing spans of one read are fetched with ONE Range request, and sequential readers get
 * the spans after theirs fetched ahead (readahead.ts). Every fetch attempt has a timeout and
 * retries are bounded, and a whole read has a deadline, so a read never hangs.
 */
import { firstBadSpan } from '../compression/span-verify.js';
import { withDeadline } from '../concurrency.js';
import { SociError, isSociError } from '../errors.js';
import { extractSpans } from '../compression/index.js';
import type { Span, SpanTable } from '../compression/types.js';
import type { BlobSource } from '../oci/blob-source.js';
import type { SpanCache } from './span-cache.js';
import { ReadTracker, type ReadStats } from './read-tracker.js';
import { Readahead, type Ahead } from './readahead.js';
import type { FailureReport } from './failure-log.js';

/** A reader waits at most this long by default; a fetch may go on after it for later readers. */
export const DEFAULT_READ_DEADLINE_MS = 30_000;
const OVERDUE_GRACE_MS = 300;

export interface SpanManagerOptions {
  /** key of this layer in the shared cache (the layer digest) */
  layerKey: string;
  table: SpanTable;
  /** zTOC span digests, one per span */
  digests: readonly string[];
  blob: BlobSource;
  cache: SpanCache;
  /** one Range request may take this long (default 30 000 ms) */
  fetchTimeoutMs?: number;
  /** extra attempts after a failed fetch (default 2; the blob source may retry within each) */
  retries?: number;
  /** extra fetches after bytes that fail their span digest (default: `retries`; AWS's max_span_verification_retries) */
  verifyRetries?: number;
  /** the read deadline: a read() that cannot be served rejects after this long (default 30 000 ms) */
  readTimeoutMs?: number;
  /** adjacent missing spans are merged into one request up to this many bytes (default 32 MiB) */
  maxRequestBytes?: number;
  /** largest readahead window for sequential readers, in spans (default 8; 0 = no readahead) */
  readaheadMaxSpans?: number;
  /** sees every failed fetch attempt, digest mismatch and missed read deadline (logs, metrics) */
  onFailure?: (r: FailureReport) => void;
}

export interface SpanManagerStats extends ReadStats {
  /** compressed bytes received from the blob source (all attempts) */
  bytesFetched: number;
  rangeRequests: number;
  spansFetched: number;
  /** spans requested ahead of sequential readers */
  readaheadSpans: number;
  cacheHits: number;
  cacheMisses: number;
  fetchFailures: number;
  verifyFailures: number;
  /** compressed bytes of spans fetched and verified at least once (the state file's fetchedSize) */
  fetchedSize: number;
  /** spans fetched at least once */
  fetchedSpans: number;
  totalSpans: number;
}

export class SpanManager {
  readonly layerKey: string;
  readonly table: SpanTable;
  private readonly o: Required<Omit<SpanManagerOptions, 'layerKey' | 'table' | 'digests' | 'blob' | 'cache' | 'onFailure'>>;
  private readonly report: (r: FailureReport) => void;
  private readonly digests: readonly string[];
  private readonly blob: BlobSource;
  private readonly cache: SpanCache;
  /** spans being fetched: resolves to the uncompressed span */
  private readonly inflight = new Map<number, Promise<Buffer>>();
  /**
   * Spans still being fetched after a reader gave up on them. A new reader of such a span waits only
   * OVERDUE_GRACE_MS, not a deadline of its own: the kernel retries a failed readahead with a plain
   * read, and applications retry too, so each would otherwise wait the whole deadline again.
   */
  private readonly overdue = new Set<number>();
  private readonly fetched = new Set<number>();
  /** cache writes of fetched spans still in progress */
  private readonly writes = new Set<Promise<void>>();
  private closed = false;
  /** fetches for readers (misses, readahead, prefetch) in flight, and when one last started or ended */
  private fgInflight = 0;
  private fgLast = 0;
  /** reader misses in flight (fetches a read() waits on), and who waits for them to end */
  private missInflight = 0;
  private idleWaiters: Array<() => void> = [];
  private readonly reads: ReadTracker;
  private readonly ahead: Readahead;
  private readonly s = {
    bytesFetched: 0,
    rangeRequests: 0,
    spansFetched: 0,
    readaheadSpans: 0,
    cacheHits: 0,
    cacheMisses: 0,
    fetchFailures: 0,
    verifyFailures: 0,
    fetchedSize: 0,
  };

  constructor(opts: SpanManagerOptions) {
    this.layerKey = opts.layerKey;
    this.table = opts.table;
    this.digests = opts.digests;
    this.blob = opts.blob;
    this.cache = opts.cache;
    this.o = {
      fetchTimeoutMs: opts.fetchTimeoutMs ?? 30_000,
      retries: opts.retries ?? 2,
      verifyRetries: opts.verifyRetries ?? opts.retries ?? 2,
      readTimeoutMs: opts.readTimeoutMs ?? DEFAULT_READ_DEADLINE_MS,
      maxRequestBytes: opts.maxRequestBytes ?? 32 << 20,
      readaheadMaxSpans: opts.readaheadMaxSpans ?? 8,
    };
    this.report = opts.onFailure ?? (() => undefined);
    validate(opts.table, opts.digests, opts.blob.size);
    this.reads = new ReadTracker(opts.table);
    this.ahead = new Readahead(this.o.readaheadMaxSpans, opts.table.maxSpanId);
  }

  stats(): SpanManagerStats {
    return { ...this.s, ...this.reads.stats(), fetchedSpans: this.fetched.size, totalSpans: this.table.spans.length };
  }

  /** The compressed blob size (the state file's `size`). */
  get size(): number {
    return this.blob.size;
  }

  isFetched(span: number): boolean {
    return this.fetched.has(span);
  }

  /** Readers are fetching now, or were within the last `ms` (the background fetcher yields to them). */
  foregroundActiveWithin(ms: number): boolean {
    return this.fgInflight > 0 || performance.now() - this.fgLast < ms;
  }

  /** Neither cached nor being fetched. */
  isMissing(span: number): boolean {
    return !this.inflight.has(span) && !this.cache.has(this.layerKey, span);
  }

  /** Resolves when no read() waits on a fetch of its own (prefetch replay yields to readers). */
  readersIdle(): Promise<void> {
    if (this.missInflight === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  private trackMiss(p: Promise<unknown>): void {
    this.missInflight++;
    void p
      .catch(() => undefined)
      .finally(() => {
        if (--this.missInflight > 0) return;
        const ws = this.idleWaiters;
        this.idleWaiters = [];
        for (const w of ws) w();
      });
  }

  /** Resolves once every fetched span so far has been written to the cache (tests, shutdown). */
  async settled(): Promise<void> {
    while (this.writes.size > 0) await Promise.all([...this.writes]);
  }

  /** Stops serving; pending fetches finish but nothing new starts. */
  close(): void {
    this.closed = true;
  }

  /**
   * Uncompressed archive bytes [offset, offset+length) (clamped to the archive). `fileEnd`: where
   * the file being read ends in the archive; readahead stays before it (default: no bound).
   */
  read(offset: number, length: number, fileEnd?: number): Promise<Buffer> {
    const end = Math.min(offset + length, this.table.spans.at(-1)?.uEnd ?? 0);
    if (length <= 0 || offset >= end) return Promise.resolve(Buffer.alloc(0));
    const first = this.table.spanIdForOffset(offset);
    const last = this.table.spanIdForOffset(end - 1);
    let deadline = this.o.readTimeoutMs;
    for (let id = first; id <= last; id++) if (this.overdue.has(id)) deadline = Math.min(deadline, OVERDUE_GRACE_MS);
    const what = `read of layer ${this.layerKey} bytes ${offset}-${end}`;
    const p = withDeadline(this.readRange(offset, end, this.limitSpan(fileEnd)), deadline, what).catch((e: unknown) => {
      if (isSociError(e, 'ERR_TIMEOUT')) {
        this.markOverdue(first, last);
        this.report({ kind: 'read_deadline', spans: [first, last], cause: (e as Error).message });
      }
      throw e;
    });
    return p.then((buf) => (this.reads.record(offset, offset + buf.length), buf));
  }

  private markOverdue(first: number, last: number): void {
    for (let id = first; id <= last; id++) {
      const f = this.inflight.get(id);
      if (!f || this.overdue.has(id)) continue;
      this.overdue.add(id);
      void f.then(
        () => this.overdue.delete(id),
        () => this.overdue.delete(id),
      );
    }
  }

  /**
   * Like read(), for a caller that owns a scratch buffer (the FUSE reply path): bytes of cached
   * spans are read straight into `dst` (one pread per span file, no intermediate buffers), and a
   * range inside one span held in memory comes back as a view of it without a copy. The result is
   * `dst` or a view valid until the caller's next await; it is never longer than `length`. Anything
   * not cached takes the read() path (fetch, verify, inflate).
   */
  async readInto(offset: number, length: number, dst: Buffer, fileEnd?: number): Promise<Buffer> {
    const end = Math.min(offset + length, this.table.spans.at(-1)?.uEnd ?? 0);
    if (length <= 0 || offset >= end) return Buffer.alloc(0);
    if (end - offset > dst.length) return this.read(offset, length, fileEnd);
    const t = this.table;
    const first = t.spanIdForOffset(offset);
    const last = t.spanIdForOffset(end - 1);
    for (let id = first; id <= last; id++) {
      if (this.inflight.has(id) || !this.cache.has(this.layerKey, id)) return this.read(offset, length, fileEnd);
    }
    this.fetchAhead(this.ahead.hit(first, last, this.limitSpan(fileEnd)));
    if (first === last) {
      const hot = this.cache.hotSpan(this.layerKey, first);
      if (hot) {
        const base = t.spans[first]!.uStart;
        this.s.cacheHits++;
        this.reads.record(offset, end);
        return hot.subarray(offset - base, end - base);
      }
    }
    const parts: Array<Promise<boolean>> = [];
    for (let id = first; id <= last; id++) {
      const sp = t.spans[id]!;
      const a = Math.max(offset, sp.uStart);
      const b = Math.min(end, sp.uEnd);
      parts.push(this.cache.readInto(this.layerKey, id, a - sp.uStart, b - sp.uStart, dst, a - offset));
    }
    const ok = await Promise.all(parts);
    // A span evicted between the check and the read: the ordinary path fetches it again.
    if (ok.includes(false)) return this.read(offset, length, fileEnd);
    this.s.cacheHits += ok.length;
    this.reads.record(offset, end);
    return dst.subarray(0, end - offset);
  }

  /** Ensures one span is fetched and cached (background fetch / prefetch); no data returned. */
  async fetchSpan(id: number): Promise<void> {
    if (this.cache.has(this.layerKey, id)) return;
    const p = this.inflight.get(id);
    if (p) {
      await p;
      return;
    }
    await withDeadline(this.fetchRun([id], false)[0]!, this.o.readTimeoutMs, `fetch of span ${id} of layer ${this.layerKey}`);
  }

  /**
   * Fetches spans first..last (prefetch artifacts) into the cache, missing runs merged into as few
   * requests as maxRequestBytes allows; nothing is concatenated or returned.
   */
  async fetchSpans(first: number, last: number): Promise<void> {
    const lo = Math.max(0, first);
    const hi = Math.min(last, this.table.maxSpanId);
    const { waits } = this.fetchMissing(lo, hi);
    await withDeadline(Promise.all(waits), this.o.readTimeoutMs, `prefetch of spans ${lo}..${hi} of layer ${this.layerKey}`);
  }

  /**
   * Starts fetches for the spans lo..hi that are neither cached nor in flight, missing runs merged
   * into as few requests as maxRequestBytes allows. Returns a promise per span being fetched (new or
   * already in flight) and how many spans it started.
   */
  private fetchMissing(lo: number, hi: number): { waits: Array<Promise<Buffer>>; started: number } {
    const waits: Array<Promise<Buffer>> = [];
    let started = 0;
    let run: number[] = [];
    let runBytes = 0;
    const flush = () => {
      if (run.length) waits.push(...this.fetchRun(run));
      started += run.length;
      run = [];
      runBytes = 0;
    };
    for (let id = lo; id <= hi; id++) {
      const fl = this.inflight.get(id);
      if (fl || this.cache.has(this.layerKey, id)) {
        flush();
        if (fl) waits.push(fl);
        continue;
      }
      const sp = this.table.spans[id]!;
      if (run.length > 0 && runBytes + (sp.cEnd - sp.cStart) > this.o.maxRequestBytes) flush();
      run.push(id);
      runBytes += sp.cEnd - sp.cStart;
    }
    flush();
    return { waits, started };
  }

  /** The last span readahead may reach for a file ending at `fileEnd`. */
  private limitSpan(fileEnd: number | undefined): number {
    const t = this.table;
    return fileEnd === undefined || fileEnd >= (t.spans.at(-1)?.uEnd ?? 0) ? t.maxSpanId : t.spanIdForOffset(Math.max(0, fileEnd - 1));
  }

  private async readRange(offset: number, end: number, limit: number): Promise<Buffer> {
    const t = this.table;
    // The span holding the last byte (end-1): a read ending on a boundary does not pull the next span.
    const first = t.spanIdForOffset(offset);
    const last = t.spanIdForOffset(end - 1);
    const parts: Array<Promise<Buffer>> = [];
    let run: number[] = [];
    let runBytes = 0;
    const pending: Array<{ index: number; id: number }> = [];
    let missFirst = -1;
    let missLast = -1;
    const flush = () => {
      if (run.length === 0) return;
      const results = this.fetchRun(run);
      this.trackMiss(Promise.all(results));
      for (const [j, id] of run.entries()) {
        const p = pending.find((x) => x.id === id)!;
        parts[p.index] = results[j]!.then((buf) => this.slice(id, buf, offset, end));
      }
      run = [];
      runBytes = 0;
    };
    for (let id = first; id <= last; id++) {
      const sp = t.spans[id]!;
      const index = id - first;
      const fl = this.inflight.get(id);
      if (fl) {
        flush();
        parts[index] = fl.then((buf) => this.slice(id, buf, offset, end));
        continue;
      }
      if (this.cache.has(this.layerKey, id)) {
        flush();
        parts[index] = this.fromCache(id, sp, offset, end);
        continue;
      }
      this.s.cacheMisses++;
      if (missFirst < 0) missFirst = id;
      missLast = id;
      const bytes = sp.cEnd - sp.cStart;
      if (run.length > 0 && runBytes + bytes > this.o.maxRequestBytes) flush();
      run.push(id);
      runBytes += bytes;
      pending.push({ index, id });
    }
    flush();
    this.fetchAhead(missFirst < 0 ? this.ahead.hit(first, last, limit) : this.ahead.miss(missFirst, missLast, limit));
    const bufs = await Promise.all(parts);
    return bufs.length === 1 ? bufs[0]! : Buffer.concat(bufs);
  }

  /**
   * Starts fetches for the spans of `ahead` that are neither cached nor in flight, in requests of
   * their own, so the reader's spans never wait behind them. Nobody awaits them: a failure only
   * means a later read fetches the span itself.
   */
  private fetchAhead(ahead: Ahead | undefined): void {
    if (!ahead || this.closed) return;
    this.s.readaheadSpans += this.fetchMissing(ahead[0], ahead[1]).started;
  }

  private async fromCache(id: number, sp: Span, offset: number, end: number): Promise<Buffer> {
    const a = Math.max(offset, sp.uStart) - sp.uStart;
    const b = Math.min(end, sp.uEnd) - sp.uStart;
    const got = await this.cache.read(this.layerKey, id, a, b);
    if (got) {
      this.s.cacheHits++;
      return got;
    }
    // Evicted between the check and the read: fetch it again.
    this.s.cacheMisses++;
    const p = this.inflight.get(id) ?? this.fetchRun([id])[0]!;
    return this.slice(id, await p, offset, end);
  }

  private slice(id: number, span: Buffer, offset: number, end: number): Buffer {
    const sp = this.table.spans[id]!;
    return span.subarray(Math.max(offset, sp.uStart) - sp.uStart, Math.min(end, sp.uEnd) - sp.uStart);
  }

  /**
   * Starts one fetch for consecutive spans `ids` and returns one promise per span (its
   * uncompressed bytes). The promises are registered as in flight before anything is awaited, so
   * concurrent readers join them. `foreground` is false only for the background fetcher's spans.
   */
  private fetchRun(ids: number[], foreground = true): Array<Promise<Buffer>> {
    if (this.closed) {
      const err = Promise.reject(new SociError('ERR_IO', `layer ${this.layerKey} is unmounted`));
      err.catch(() => undefined);
      return ids.map(() => err);
    }
    const whole = this.fetchVerified(ids);
    whole.catch(() => undefined);
    if (foreground) {
      this.fgInflight++;
      this.fgLast = performance.now();
      void whole
        .catch(() => undefined)
        .finally(() => {
          this.fgInflight--;
          this.fgLast = performance.now();
        });
    }
    const out = ids.map((id) => {
      const p = whole.then(async (compressed) => {
        const sp = this.table.spans[id]!;
        const base = this.table.spans[ids[0]!]!.cStart;
        const data = await extractSpans(this.table, id, id, compressed.subarray(sp.cStart - base, sp.cEnd - base));
        if (data.length !== sp.uEnd - sp.uStart) throw new SociError('ERR_IO', `span ${id} inflated to ${data.length} bytes`);
        if (!this.fetched.has(id)) {
          this.fetched.add(id);
          this.s.fetchedSize += sp.cEnd - sp.cStart;
        }
        this.s.spansFetched++;
        return data;
      });
      p.catch(() => undefined);
      // Readers get the bytes as soon as they are inflated; the span stays "in flight" (so nobody
      // fetches it again) until the cache write is done.
      const settled = p
        .then((data) => this.cache.put(this.layerKey, id, data))
        .catch(() => undefined)
        .finally(() => {
          if (this.inflight.get(id) === p) this.inflight.delete(id);
        });
      this.writes.add(settled);
      void settled.finally(() => this.writes.delete(settled));
      this.inflight.set(id, p);
      return p;
    });
    return out;
  }

  /**
   * One Range request for the spans' compressed bytes, fetched again while it fails (up to `retries`
   * times) or its bytes fail a span digest (up to `verifyRetries` times), whichever runs out first.
   */
  private async fetchVerified(ids: number[]): Promise<Buffer> {
    const start = this.table.spans[ids[0]!]!.cStart;
    const end = this.table.spans[ids.at(-1)!]!.cEnd;
    const { retries, verifyRetries } = this.o;
    let lastErr: unknown;
    let fetchFailures = 0;
    let verifyFailures = 0;
    for (let attempt = 0; fetchFailures <= retries && verifyFailures <= verifyRetries; attempt++) {
      if (this.closed) break;
      if (attempt > 0) await sleep(Math.min(1000, 50 * 2 ** attempt));
      let buf: Buffer;
      try {
        this.s.rangeRequests++;
        buf = await this.rangeWithTimeout(start, end);
        this.s.bytesFetched += buf.length;
        if (buf.length !== end - start) throw new SociError('ERR_IO', `short read: ${buf.length} of ${end - start} bytes`);
      } catch (e) {
        this.s.fetchFailures++;
        lastErr = e;
        fetchFailures++;
        this.report({
          kind: 'registry',
          spans: [ids[0]!, ids.at(-1)!],
          cause: `attempt ${fetchFailures} of ${retries + 1}: ${(e as Error)?.message ?? String(e)}`,
        });
        continue;
      }
      const bad = await firstBadSpan(this.table, this.digests, ids, buf);
      if (bad === undefined) return buf;
      this.s.verifyFailures++;
      verifyFailures++;
      lastErr = new SociError('ERR_DIGEST_MISMATCH', `span ${bad} of layer ${this.layerKey} does not match its zTOC digest`);
      this.report({
        kind: 'span_verification',
        spans: [bad, bad],
        cause: `attempt ${verifyFailures} of ${verifyRetries + 1}: compressed bytes ${this.table.spans[bad]!.cStart}-${this.table.spans[bad]!.cEnd} from the registry do not match the span's zTOC digest`,
      });
    }
    const why = lastErr instanceof Error ? lastErr.message : String(lastErr);
    throw new SociError(
      lastErr instanceof SociError && lastErr.code === 'ERR_DIGEST_MISMATCH' ? 'ERR_DIGEST_MISMATCH' : 'ERR_IO',
      `cannot fetch spans ${ids[0]}..${ids.at(-1)} of layer ${this.layerKey}: ${why}`,
      { cause: lastErr },
    );
  }

  private rangeWithTimeout(start: number, end: number): Promise<Buffer> {
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(new SociError('ERR_TIMEOUT', `range ${start}-${end} timed out`)), this.o.fetchTimeoutMs);
    timer.unref(); // an abandoned fetch must not keep a process alive
    // Race the signal too: a source that ignores it must not hang the read.
    const aborted = new Promise<never>((_, reject) => ac.signal.addEventListener('abort', () => reject(ac.signal.reason), { once: true }));
    aborted.catch(() => undefined);
    return Promise.race([this.blob.read(start, end, ac.signal), aborted]).finally(() => clearTimeout(timer));
  }
}

/** The zTOC must describe a sane span layout: monotonic extents and one digest per span. */
function validate(t: SpanTable, digests: readonly string[], blobSize: number): void {
  if (digests.length !== t.spans.length) {
    throw new SociError('ERR_INVALID_ZTOC', `zTOC has ${digests.length} span digests for ${t.spans.length} spans`);
  }
  for (const [i, sp] of t.spans.entries()) {
    const lastSpan = i === t.spans.length - 1;
    if (sp.cEnd > blobSize) throw new SociError('ERR_INVALID_ZTOC', `span ${i} ends at ${sp.cEnd}, beyond the ${blobSize}-byte layer`);
    if (!lastSpan && (sp.cStart >= sp.cEnd || sp.uStart >= sp.uEnd)) {
      throw new SociError('ERR_INVALID_ZTOC', `span ${i} has non-monotonic checkpoints`);
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref());
}
