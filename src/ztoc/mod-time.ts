/**
 * A TOC entry's modification time as AWS's zTOC stores it, both ways: written as Go
 * `time.Time.MarshalText()` of `time.Unix(sec, nsec)` in UTC (goModTime), read back (parseModTime).
 * Go's MarshalText:
 * RFC 3339, `Z` suffix, fraction with trailing zeros trimmed (none when whole seconds).
 * Years outside 0..9999 make Go's MarshalText fail, which SOCI stores as the empty string.
 */
const NS_PER_S = 1_000_000_000n;
// Beyond this many seconds from the epoch the year is certainly outside 0..9999 (and JS Date's range).
const MAX_ABS_SECONDS = 300_000_000_000n;

export function goModTime(sec: bigint, nsec: bigint = 0n): string {
  // time.Unix normalises nsec into [0, 1e9) by carrying into sec.
  let s = sec + nsec / NS_PER_S;
  let n = nsec % NS_PER_S;
  if (n < 0n) {
    n += NS_PER_S;
    s -= 1n;
  }
  if (s > MAX_ABS_SECONDS || s < -MAX_ABS_SECONDS) return '';
  const d = new Date(Number(s) * 1000);
  const year = d.getUTCFullYear();
  if (year < 0 || year > 9999) return '';
  const pad = (v: number, w = 2) => String(v).padStart(w, '0');
  let out =
    `${pad(year, 4)}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}` + `T${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
  if (n !== 0n) out += '.' + n.toString().padStart(9, '0').replace(/0+$/, '');
  return out + 'Z';
}

const RFC3339 = /^(-?\d{4,})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$/;

/** Go time.MarshalText (RFC 3339 with optional fraction) → seconds + nanoseconds since the epoch. */
export function parseModTime(s: string): { sec: number; nsec: number } {
  const m = RFC3339.exec(s);
  if (!m) return { sec: 0, nsec: 0 };
  const d = new Date(0);
  d.setUTCFullYear(Number(m[1]), Number(m[2]) - 1, Number(m[3]));
  d.setUTCHours(Number(m[4]), Number(m[5]), Number(m[6]), 0);
  let sec = Math.floor(d.getTime() / 1000);
  if (m[8] !== 'Z') {
    const sign = m[8]!.startsWith('-') ? -1 : 1;
    sec -= sign * (Number(m[8]!.slice(1, 3)) * 3600 + Number(m[8]!.slice(4, 6)) * 60);
  }
  const nsec = m[7] ? Number(m[7].padEnd(9, '0')) : 0;
  return { sec, nsec };
}
