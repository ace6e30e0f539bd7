/**
 * Prefetch replay: a layer's prefetch spans (AWS's prefetch artifact, its files in the order they
 * were recorded) are fetched right after the mount. Overlapping and touching ranges are merged
 * first, each merged run taking the place of its earliest range, so neighbouring files cost one
 * request. A few requests are in flight at once, each at most `requestBytes` of missing spans, and
 * before each one the replay waits until no reader waits on a miss of its own: a reader never
 * queues behind prefetch bytes it did not ask for (a reader of a span being prefetched joins that
 * fetch). The first failure ends the replay of the layer; reads then fetch on demand.
 */
import type { SpanRange } from '../ztoc/index.js';
import type { SpanManager } from './span-manager.js';

export interface ReplayOptions {
  /** prefetch requests in flight at once for the layer (default 4) */
  concurrency?: number;
  /** compressed bytes one prefetch request asks for at most (default 8 MiB; a larger span alone) */
  requestBytes?: number;
  /** the failure that ended the replay */
  onError?: (e: Error) => void;
}

/** Overlapping or touching ranges merged into one, the runs ordered by their earliest range. */
export function mergeRanges(ranges: readonly SpanRange[]): SpanRange[] {
  const items = ranges
    .map((r, i) => ({ lo: Math.min(r.start_span, r.end_span), hi: Math.max(r.start_span, r.end_span), first: i }))
    .sort((a, b) => a.lo - b.lo || a.hi - b.hi);
  const merged: typeof items = [];
  for (const it of items) {
    const last = merged.at(-1);
    if (last && it.lo <= last.hi + 1) {
      last.hi = Math.max(last.hi, it.hi);
      last.first = Math.min(last.first, it.first);
    } else merged.push({ ...it });
  }
  return merged.sort((a, b) => a.first - b.first).map((m) => ({ start_span: m.lo, end_span: m.hi }));
}

export async function replayPrefetch(spans: SpanManager, ranges: readonly SpanRange[], o: ReplayOptions = {}): Promise<void> {
  const runs = mergeRanges(ranges);
  const requestBytes = o.requestBytes ?? 8 << 20;
  const maxSpan = spans.table.maxSpanId;
  let run = 0;
  let next = runs[0]?.start_span ?? 0;
  let failed = false;
  /** The next request: consecutive missing spans of the current run, up to requestBytes. */
  const take = (): [number, number] | undefined => {
    while (run < runs.length) {
      const hi = Math.min(runs[run]!.end_span, maxSpan);
      while (next <= hi && !spans.isMissing(next)) next++;
      if (next > hi) {
        run++;
        next = runs[run]?.start_span ?? 0;
        continue;
      }
      const first = next;
      let bytes = 0;
      while (next <= hi && spans.isMissing(next)) {
        const sp = spans.table.spans[next]!;
        if (bytes > 0 && bytes + (sp.cEnd - sp.cStart) > requestBytes) break;
        bytes += sp.cEnd - sp.cStart;
        next++;
      }
      return [first, next - 1];
    }
    return undefined;
  };
  const worker = async (): Promise<void> => {
    for (;;) {
      await spans.readersIdle();
      const req = failed ? undefined : take();
      if (!req) return;
      await spans.fetchSpans(req[0], req[1]).catch((e: Error) => {
        if (!failed) o.onError?.(e);
        failed = true;
      });
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, o.concurrency ?? 4) }, worker));
}
