/**
 * Per-image metrics with AWS's names, in soci_fs_image_operation_count_key{operation_type, image}:
 *  - FUSE operations of each image, counted from its first mount and emitted once,
 *    fuse_metrics_emit_wait_duration_sec later (a metric per operation, and an info line each, as
 *    AWS's snapshotter does), so the counts describe an image's start;
 *  - background_fetch_work_queue_size (image ""), added every emit_metric_period_sec.
 * AWS adds to these gauges rather than setting them; so do we, for dashboards built on AWS's.
 */
import { imageOperationCount } from './metrics.js';
import type { Logger } from '../logger.js';

/** Our FUSE op names → AWS's operation names (ops AWS does not count are left out). */
const AWS_OPS: Record<string, string> = {
  getattr: 'node.Getattr',
  getxattr: 'node.Getxattr',
  listxattr: 'node.Listxattr',
  lookup: 'node.Lookup',
  open: 'node.Open',
  opendir: 'node.Open',
  readdir: 'node.Readdir',
  readdirplus: 'node.Readdir',
  readlink: 'node.Readlink',
  read: 'file.Read',
};
const ALL_OPS = [...new Set(Object.values(AWS_OPS))];

export class ImageOperationCounter {
  private readonly counts = new Map<string, number>(ALL_OPS.map((op) => [op, 0]));
  private readonly timer: NodeJS.Timeout;

  /** `done` after the counts were emitted (later operations are counted but never emitted, as AWS's) */
  constructor(
    readonly image: string,
    waitMs: number,
    log: Logger,
    done: () => void = () => undefined,
  ) {
    this.timer = setTimeout(() => {
      for (const [op, n] of this.counts) {
        imageOperationCount.inc({ operation_type: op, image }, n);
        log.info({ image, operation: op, count: n }, `fuse operation count for image ${image}: ${op} = ${n}`);
      }
      done();
    }, waitMs);
    this.timer.unref();
  }

  count(op: string): void {
    const name = AWS_OPS[op];
    if (name) this.counts.set(name, this.counts.get(name)! + 1);
  }

  stop(): void {
    clearTimeout(this.timer);
  }
}

/** Adds the background fetcher's queue length every `periodMs`; returns the stop function. */
export function emitQueueSize(pending: () => number, periodMs: number): () => void {
  const t = setInterval(() => imageOperationCount.inc({ operation_type: 'background_fetch_work_queue_size', image: '' }, pending()), periodMs);
  t.unref();
  return () => clearInterval(t);
}
