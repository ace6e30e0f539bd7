/** Go's time.Duration text, as AWS's CLI reads (`--timeout 1m30s`) and prints it (`3m2s ago`). */
import { SociError } from '../errors.js';

const UNIT_MS: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Milliseconds of a Go duration: `300ms`, `1.5h`, `2h45m`; a bare `0` is zero. */
export function parseGoDuration(flag: string, v: string): number {
  const s = v.trim();
  if (s === '0') return 0;
  const re = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)/y;
  let ms = 0;
  let at = 0;
  while (at < s.length) {
    re.lastIndex = at;
    const m = re.exec(s);
    if (!m) throw new SociError('ERR_USAGE', `invalid value "${v}" for --${flag}: a duration like 30s, 2m or 1h30m`);
    ms += Number(m[1]) * UNIT_MS[m[2]!]!;
    at = re.lastIndex;
  }
  if (!s.length) throw new SociError('ERR_USAGE', `invalid value "${v}" for --${flag}: a duration like 30s, 2m or 1h30m`);
  return ms;
}

/** Go's Duration.String() of a whole number of seconds: `0s`, `45s`, `3m2s`, `1h0m5s`. */
export function formatGoSeconds(totalSeconds: number): string {
  const t = Math.max(0, Math.round(totalSeconds));
  const h = Math.floor(t / 3600);
  const m = Math.floor((t % 3600) / 60);
  const s = t % 60;
  if (h) return `${h}h${m}m${s}s`;
  if (m) return `${m}m${s}s`;
  return `${s}s`;
}

/** `index list`'s CREATED column: `3m2s ago`, or `n/a` for an unknown time. */
export function ago(iso: string, now = Date.now()): string {
  const t = Date.parse(iso);
  if (!Number.isFinite(t)) return 'n/a';
  return `${formatGoSeconds((now - t) / 1000)} ago`;
}
