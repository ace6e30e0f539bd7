/**
 * Bounded concurrency and deadlines, the one home for both: runBounded (a pool for one batch of
 * work), Semaphore (a bound shared by callers across the process) and withDeadline (a promise
 * raced against a timer that is always cleared).
 */
import { SociError } from './errors.js';

/** Runs fn(0..n-1) with at most `limit` at once; the first failure stops new work and is thrown. */
export async function runBounded(n: number, limit: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  let failed: unknown;
  const worker = async () => {
    while (failed === undefined && next < n) {
      const i = next++;
      try {
        await fn(i);
      } catch (e) {
        failed ??= e;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, n)) }, worker));
  if (failed !== undefined) throw failed;
}

/** `p`, or a SociError ERR_TIMEOUT "`what` …" after `ms` (no deadline when ms ≤ 0). */
export async function withDeadline<T>(p: Promise<T>, ms: number, what: string | (() => string)): Promise<T> {
  if (!(ms > 0)) return p;
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new SociError('ERR_TIMEOUT', typeof what === 'function' ? what() : `${what} did not finish within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A counting semaphore for work shared across callers (a daemon-wide bound, where runBounded's
 * per-call pool does not reach). A limit of 0 or less means no bound. Waiters run in arrival order.
 */
export class Semaphore {
  private active = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(readonly limit: number) {}

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.limit > 0 && this.active >= this.limit) await new Promise<void>((r) => this.waiting.push(r));
    else this.active++;
    try {
      return await fn();
    } finally {
      // hand the slot straight to the next waiter (active stays the same), or free it
      const next = this.waiting.shift();
      if (next) next();
      else this.active--;
    }
  }
}
