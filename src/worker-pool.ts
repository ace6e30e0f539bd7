/**
 * A few long-lived worker threads that each run many streamed jobs at once (./worker-pipe.ts over a
 * MessageChannel per job). A worker thread is a V8 heap of its own, tens of MB: one per layer
 * unpacking at once made a parallel pull's memory grow with its unpack bound. How many jobs run at
 * once is the caller's bound (e.g. max_concurrent_unpacks); how many threads host them is this
 * pool's, about the number of cores, since the work is CPU- and syscall-bound.
 *
 * Jobs on one thread interleave at their awaits (one chunk at a time). A job whose caller leaves
 * early (its source failed) is told to stop and waited for, so it writes nothing after run()
 * settles; a thread that does not answer within `stopWaitMs` is terminated, and its other jobs fail.
 * Idle threads exit after `idleMs`, so an idle daemon holds none.
 */
import { MessageChannel, parentPort, type MessagePort, type Worker } from 'node:worker_threads';
import { postError, startModuleWorker, streamTo, workerDeath } from './worker-pipe.js';

export interface WorkerPoolOptions {
  /** most threads at once */
  threads: number;
  /** young generation per thread, MB */
  youngGenerationMb?: number;
  /** an idle thread exits after this long */
  idleMs?: number;
  /** how long a job told to stop may take before its thread is terminated */
  stopWaitMs?: number;
}

interface Thread {
  w: Worker;
  /** rejects when the thread fails or exits: every job on it fails with that */
  died: Promise<never>;
  /** jobs running on it */
  jobs: number;
  idle: NodeJS.Timeout | null;
}

/** The workerData a pooled thread starts with: `{ workerPool: true }` (see serveJobs). */
const POOL_MARK = { workerPool: true };

export class WorkerPool {
  private readonly threads: Thread[] = [];
  private readonly o: Required<WorkerPoolOptions>;
  /** the most threads alive at once so far */
  peakThreads = 0;

  /** threads alive now */
  get threadCount(): number {
    return this.threads.length;
  }

  /** `url`: a module that calls serveJobs() when its workerData is a pool's. */
  constructor(
    private readonly url: string,
    o: WorkerPoolOptions,
  ) {
    this.o = { youngGenerationMb: 4, idleMs: 5000, stopWaitMs: 10_000, ...o, threads: Math.max(1, o.threads) };
  }

  /** Runs one job with `data` on a pooled thread, streaming `source` to it; resolves with its `done`. */
  async run<T>(data: unknown, source: AsyncIterable<Buffer>): Promise<T> {
    const t = this.pick();
    const { port1, port2 } = new MessageChannel();
    t.jobs++;
    if (t.idle) clearTimeout(t.idle);
    t.idle = null;
    t.w.ref();
    t.w.postMessage({ job: data, port: port2 }, [port2]);
    try {
      return await streamTo<T>(port1, source, t.died, async (answered, settled) => {
        if (answered) return;
        port1.postMessage({ abort: true });
        let timer: NodeJS.Timeout | undefined;
        const late = new Promise<'late'>((res) => (timer = setTimeout(() => res('late'), this.o.stopWaitMs)));
        const r = await Promise.race([settled, late]);
        clearTimeout(timer);
        if (r === 'late') await t.w.terminate().catch(() => undefined);
      });
    } finally {
      port1.close();
      t.jobs--;
      if (t.jobs === 0 && this.threads.includes(t)) {
        t.w.unref();
        t.idle = setTimeout(() => this.retire(t), this.o.idleMs);
        t.idle.unref();
      }
    }
  }

  /** The thread with the fewest jobs, or a new one while that would share and the pool has room. */
  private pick(): Thread {
    let best: Thread | undefined;
    for (const t of this.threads) if (!best || t.jobs < best.jobs) best = t;
    if (best && (best.jobs === 0 || this.threads.length >= this.o.threads)) return best;
    const w = startModuleWorker(this.url, POOL_MARK, this.o.youngGenerationMb);
    const t: Thread = { w, died: workerDeath(w), jobs: 0, idle: null };
    t.died.catch(() => {
      const i = this.threads.indexOf(t);
      if (i >= 0) this.threads.splice(i, 1);
      if (t.idle) clearTimeout(t.idle);
    });
    this.threads.push(t);
    this.peakThreads = Math.max(this.peakThreads, this.threads.length);
    return t;
  }

  private retire(t: Thread): void {
    if (t.jobs > 0) return;
    const i = this.threads.indexOf(t);
    if (i >= 0) this.threads.splice(i, 1);
    void t.w.terminate().catch(() => undefined);
  }
}

/** Worker side: whether this thread was started by a WorkerPool. */
export function isPoolWorker(data: unknown): boolean {
  return (data as { workerPool?: unknown } | undefined)?.workerPool === true && parentPort !== null;
}

/**
 * Worker side: runs `handler` for each job the pool sends, each with its own port (read it with
 * workerInput); its result is posted as `{ done }`, its failure as `{ error }`.
 */
export function serveJobs<D>(handler: (data: D, port: MessagePort) => Promise<unknown>): void {
  parentPort!.on('message', (m: { job: D; port: MessagePort }) => {
    handler(m.job, m.port).then(
      (done) => m.port.postMessage({ done }),
      (e: unknown) => postError(m.port, e),
    );
  });
}
