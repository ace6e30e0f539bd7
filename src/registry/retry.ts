/**
 * Retry policy: exponential backoff with jitter, Retry-After, bounded by attempts and total time.
 * One RetryBudget spans all attempts of one logical operation (request + reading its body).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { SociError } from '../errors.js';
import type { RetryOptions } from './types.js';

const RETRIABLE_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_RES_CONTENT_LENGTH_MISMATCH',
  'ERR_SHORT_BODY',
  'ERR_REQUEST_TIMEOUT',
]);

const TIMEOUT_CODES = new Set(['ERR_REQUEST_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'ETIMEDOUT']);

/** A body that ended before the announced/expected length (a retriable transport failure). */
export class ShortBodyError extends Error {
  readonly code = 'ERR_SHORT_BODY';
}

/** An attempt that outlived the whole-request timeout (retriable, like Go's http.Client.Timeout). */
export class RequestTimeoutError extends Error {
  readonly code = 'ERR_REQUEST_TIMEOUT';
}

function errCode(e: unknown): string | undefined {
  let cur: unknown = e;
  for (let i = 0; i < 4 && cur && typeof cur === 'object'; i++) {
    const c = (cur as { code?: unknown }).code;
    if (typeof c === 'string' && c !== 'UND_ERR_ABORTED') return c;
    cur = (cur as { cause?: unknown }).cause;
  }
  return undefined;
}

export function isRetriableError(e: unknown): boolean {
  if (e instanceof SociError) return false;
  const c = errCode(e);
  return c !== undefined && RETRIABLE_CODES.has(c);
}

export function isRetriableStatus(status: number): boolean {
  return status === 429 || status === 408 || (status >= 500 && status !== 501 && status <= 599);
}

/** Retry-After as seconds or an HTTP date → ms; undefined when absent or unparsable. */
export function parseRetryAfter(v: string | string[] | undefined): number | undefined {
  const s = Array.isArray(v) ? v[0] : v;
  if (!s) return undefined;
  if (/^\d+$/.test(s.trim())) return Number(s.trim()) * 1000;
  const t = Date.parse(s);
  return Number.isNaN(t) ? undefined : Math.max(0, t - Date.now());
}

/** Turns a final transport error into a SociError with a clear one-line message. */
export function networkError(e: unknown, what: string, attempts: number): SociError {
  if (e instanceof SociError) return e;
  const c = errCode(e) ?? 'error';
  const n = attempts > 1 ? ` after ${attempts} attempts` : '';
  if (TIMEOUT_CODES.has(c)) return new SociError('ERR_TIMEOUT', `${what}: timed out (${c})${n}`, { cause: e });
  return new SociError('ERR_NETWORK', `${what}: ${c}${n}`, { cause: e });
}

export class RetryBudget {
  attempts = 1;
  private readonly start = Date.now();
  private readonly maxAttempts: number;
  private readonly base: number;
  private readonly maxDelay: number;
  private readonly maxTotal: number;

  constructor(
    opts: RetryOptions = {},
    private readonly signal?: AbortSignal,
  ) {
    this.maxAttempts = opts.maxAttempts ?? 6;
    this.base = opts.baseDelayMs ?? 100;
    this.maxDelay = opts.maxDelayMs ?? 10_000;
    this.maxTotal = opts.maxTotalMs ?? 120_000;
  }

  /**
   * Waits before the next attempt and returns true, or returns false when the budget is spent
   * (the caller then throws its own error describing the last failure).
   */
  async next(retryAfterMs?: number): Promise<boolean> {
    if (this.attempts >= this.maxAttempts) return false;
    const exp = Math.min(this.maxDelay, this.base * 2 ** (this.attempts - 1));
    let delay = exp * (1 + Math.random() * 0.25);
    if (retryAfterMs !== undefined) delay = Math.min(this.maxDelay, Math.max(retryAfterMs, delay));
    if (Date.now() - this.start + delay > this.maxTotal) return false;
    this.signal?.throwIfAborted();
    await sleep(delay, undefined, this.signal ? { signal: this.signal } : undefined);
    this.attempts++;
    return true;
  }
}
