/** Small order statistics for benchmark samples (no deps). Empty input gives NaN everywhere. */

const sorted = (xs: readonly number[]): number[] => xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);

/** Nearest-rank percentile (0 < p ≤ 100): the smallest sample with at least p % of samples ≤ it. */
export function percentile(xs: readonly number[], p: number): number {
  const s = sorted(xs);
  if (s.length === 0) return NaN;
  const rank = Math.max(1, Math.ceil((p / 100) * s.length));
  return s[Math.min(rank, s.length) - 1]!;
}

export const p50 = (xs: readonly number[]): number => percentile(xs, 50);
export const p90 = (xs: readonly number[]): number => percentile(xs, 90);

/** Conventional median (mean of the two middle values for an even count). */
export function median(xs: readonly number[]): number {
  const s = sorted(xs);
  if (s.length === 0) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function mean(xs: readonly number[]): number {
  const s = sorted(xs);
  return s.length ? s.reduce((a, b) => a + b, 0) / s.length : NaN;
}

export const min = (xs: readonly number[]): number => sorted(xs)[0] ?? NaN;
export const max = (xs: readonly number[]): number => sorted(xs).at(-1) ?? NaN;
