/**
 * BackgroundFetcher: after a quiet period following the latest mount,
 * fetches the not-yet-fetched spans of registered layers, one span per period, round-robin over
 * layers (FIFO of per-layer sequential cursors). Low priority by construction: one span at a time,
 * and no span while any registered layer's readers are fetching or fetched within the last period,
 * so on a slow link it never takes bandwidth from a container that is starting (at 25 Mbit/s one
 * 4 MiB span per 500 ms would be most of the link). Pausable; a layer leaves the queue when
 * unregistered, fully fetched, or on a fetch error.
 */
import type { SpanManager } from './span-manager.js';
import type { Logger } from '../logger.js';

export interface BackgroundFetcherOptions {
  /** quiet time after the latest pause() (e.g. a new mount) before fetching (default 30 000 ms) */
  silencePeriodMs?: number;
  /** one span is dispatched per period (default 500 ms) */
  fetchPeriodMs?: number;
  /** layers queued at most (default 300; negative: no bound) */
  maxQueueSize?: number;
  /**
   * Which layer leaves a full queue (AWS's drop_policy): 'newest' (default) does not queue the layer
   * being added; 'oldest' drops the one queued longest. A dropped layer stays lazily loaded.
   */
  dropPolicy?: 'newest' | 'oldest';
  logger?: Logger;
}

interface Cursor {
  spans: SpanManager;
  next: number;
}

export class BackgroundFetcher {
  private readonly o: Required<Omit<BackgroundFetcherOptions, 'logger'>>;
  private readonly logger: Logger | undefined;
  private readonly queue: Cursor[] = [];
  /** registered layers (a cursor being fetched is off the queue but still here) */
  private readonly active = new Map<SpanManager, Cursor>();
  private pausedUntil = 0;
  private paused = false;
  private timer: NodeJS.Timeout | null = null;
  private busy = false;
  private stopped = false;
  /** spans fetched by this fetcher, and failures */
  readonly counters = { spansFetched: 0, failures: 0, dropped: 0, yielded: 0 };

  constructor(opts: BackgroundFetcherOptions = {}) {
    this.o = {
      silencePeriodMs: opts.silencePeriodMs ?? 30_000,
      fetchPeriodMs: opts.fetchPeriodMs ?? 500,
      maxQueueSize: opts.maxQueueSize ?? 300,
      dropPolicy: opts.dropPolicy ?? 'newest',
    };
    this.logger = opts.logger;
  }

  /** Queues a layer; also restarts the quiet period (a new mount is busy with foreground reads). */
  register(spans: SpanManager): void {
    if (this.stopped) return;
    if (this.active.has(spans)) return;
    if (this.o.maxQueueSize >= 0 && this.queue.length >= this.o.maxQueueSize) {
      this.counters.dropped++;
      if (this.o.dropPolicy === 'newest' || this.queue.length === 0) return;
      this.active.delete(this.queue.shift()!.spans);
    }
    const c = { spans, next: 0 };
    this.active.set(spans, c);
    this.queue.push(c);
    this.quiet();
    this.arm();
  }

  unregister(spans: SpanManager): void {
    this.active.delete(spans);
    const i = this.queue.findIndex((c) => c.spans === spans);
    if (i >= 0) this.queue.splice(i, 1);
  }

  /** Restart the quiet period (called on every new mount). */
  quiet(): void {
    this.pausedUntil = Date.now() + this.o.silencePeriodMs;
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
    this.arm();
  }

  stop(): void {
    this.stopped = true;
    this.queue.length = 0;
    this.active.clear();
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  /** The layer is registered (queued or being fetched). */
  has(spans: SpanManager): boolean {
    return this.active.has(spans);
  }

  get pending(): number {
    return this.queue.length;
  }

  private arm(): void {
    if (this.timer || this.stopped || this.paused || this.queue.length === 0) return;
    const wait = Math.max(this.o.fetchPeriodMs, this.pausedUntil - Date.now());
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.tick();
    }, wait);
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    if (this.stopped || this.paused) return;
    if (Date.now() < this.pausedUntil || this.busy) return this.arm();
    for (const spans of this.active.keys()) {
      if (spans.foregroundActiveWithin(this.o.fetchPeriodMs)) {
        this.counters.yielded++;
        return this.arm();
      }
    }
    const c = this.queue.shift();
    if (!c) return;
    // Skip spans already fetched by foreground reads.
    const total = c.spans.table.spans.length;
    while (c.next < total && c.spans.isFetched(c.next)) c.next++;
    if (c.next >= total) {
      this.active.delete(c.spans);
      return this.arm();
    }
    const id = c.next++;
    this.busy = true;
    try {
      await c.spans.fetchSpan(id);
      this.counters.spansFetched++;
      if (c.next < total && this.active.get(c.spans) === c) this.queue.push(c);
      else this.active.delete(c.spans);
    } catch (e) {
      // An error drops the layer from the queue (like AWS's).
      this.counters.failures++;
      this.active.delete(c.spans);
      this.logger?.warn({ layer: c.spans.layerKey, span: id, error: (e as Error).message }, 'background fetch failed; layer dropped');
    } finally {
      this.busy = false;
    }
    this.arm();
  }
}
