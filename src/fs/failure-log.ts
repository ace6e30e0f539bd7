/**
 * Failures of a lazily loaded layer, made visible. The span manager and the layer fs report every
 * span that failed its digest check, every failed registry fetch, every read that passed its
 * deadline, every zTOC entry whose tar header disagrees with it, and every read answered with EIO.
 * Each report is counted (the caller's counter sees all of them) but written to the log at most
 * once per (cause, layer, span or file) per interval: a reader retrying a corrupt span in a loop
 * must not flood the log, while an operator still sees each distinct failure, and the next line for
 * a key says how many were held back.
 */

export type FailureKind = 'span_verification' | 'registry' | 'read_deadline' | 'toc_mismatch' | 'read';

export interface LayerFailure {
  kind: FailureKind;
  /** the layer digest */
  layer: string;
  /** the spans concerned (a registry fetch may cover several; a verification failure names one) */
  spans?: readonly [number, number];
  /** the file or zTOC entry concerned */
  entry?: string;
  /** what happened, one line */
  cause: string;
}

/** What a report source (span manager, layer fs) gives: mountLayer adds the layer. */
export type FailureReport = Omit<LayerFailure, 'layer'>;

export interface FailureLogOptions {
  /** writes one log line; `suppressed` is how many reports of this key were held back before it */
  write: (f: LayerFailure, suppressed: number) => void;
  /** sees every report, logged or not (metrics) */
  count?: (f: LayerFailure) => void;
  /** one line per key per this many ms (default 60 000) */
  intervalMs?: number;
  /** keys remembered at most (default 10 000); past it the oldest are forgotten */
  maxKeys?: number;
}

/** The log message of each kind: the words an operator greps for. */
export const FAILURE_MESSAGES: Record<FailureKind, string> = {
  span_verification: 'span verification failed',
  registry: 'registry fetch failed',
  read_deadline: 'read deadline exceeded',
  toc_mismatch: 'zTOC entry does not match the layer',
  read: 'layer read failed',
};

export class FailureLog {
  private readonly intervalMs: number;
  private readonly maxKeys: number;
  /** key → when it was last written and how many reports were held back since */
  private readonly seen = new Map<string, { at: number; held: number }>();

  constructor(private readonly o: FailureLogOptions) {
    this.intervalMs = o.intervalMs ?? 60_000;
    this.maxKeys = o.maxKeys ?? 10_000;
  }

  report(f: LayerFailure): void {
    this.o.count?.(f);
    const key = `${f.kind}\0${f.layer}\0${f.spans?.[0] ?? ''}\0${f.entry ?? ''}`;
    const now = performance.now();
    const s = this.seen.get(key);
    if (s && now - s.at < this.intervalMs) {
      s.held++;
      return;
    }
    const held = s?.held ?? 0;
    this.seen.delete(key); // re-inserted last: the map stays ordered by last write
    this.seen.set(key, { at: now, held: 0 });
    if (this.seen.size > this.maxKeys) this.seen.delete(this.seen.keys().next().value!);
    this.o.write(f, held);
  }
}

/** The structured fields of a failure's log line. */
export function failureFields(f: LayerFailure, suppressed: number): Record<string, unknown> {
  return {
    layer: f.layer,
    kind: f.kind,
    ...(f.spans ? { span: f.spans[0] === f.spans[1] ? f.spans[0] : `${f.spans[0]}..${f.spans[1]}` } : {}),
    ...(f.entry !== undefined ? { entry: f.entry } : {}),
    error: f.cause,
    ...(suppressed ? { suppressed } : {}),
  };
}

/** A failure as one plain line (stderr of `soci mount`). */
export function failureLine(f: LayerFailure, suppressed: number): string {
  const where = [
    `layer ${f.layer}`,
    ...(f.spans ? [f.spans[0] === f.spans[1] ? `span ${f.spans[0]}` : `spans ${f.spans[0]}..${f.spans[1]}`] : []),
    ...(f.entry !== undefined ? [`file ${JSON.stringify(f.entry)}`] : []),
  ].join(', ');
  return `${FAILURE_MESSAGES[f.kind]} (${where}): ${f.cause}${suppressed ? ` (${suppressed} more since the last line)` : ''}`;
}
