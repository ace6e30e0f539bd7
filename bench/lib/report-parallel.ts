/**
 * The parallel pull modes in the time-to-ready report: per profile a table of full (containerd's
 * pull + overlayfs), parallel (ours) and aws-parallel (AWS's) on the images without an index, and
 * their targets: ours ≤ 0.6× full and ≤ AWS's at p0 and p1 (p50s of the same run), and our daemon's
 * peak RSS during the fat-sparse pull (≈ 900 MB) ≤ 300 MB.
 */
import type { Mode, Sample } from './types.js';
import { p50 } from './stats.js';
import { kindOf, values, type ProfileData, type Row, type Verdict } from './report.js';

export const PARALLEL_VS_FULL = 0.6;
export const PARALLEL_VS_AWS = 1;
export const PARALLEL_RSS_BYTES = 300e6;
/** the profiles the TTR targets name */
export const PARALLEL_PROFILES = ['p0', 'p1'];
const MODES: Mode[] = ['parallel', 'aws-parallel'];

const dash = '–';
const fix = (x: number, d: number) => (Number.isFinite(x) ? x.toFixed(d) : dash);
const sec = (ms: number) => fix(ms / 1000, 2);
const mb = (b: number) => fix(b / 1e6, 0);
const escapeCell = (s: string) => s.replace(/\|/g, '\\|');

/** p50s of one row in one profile (NaN where absent). */
export function parallelFigures(d: ProfileData, row: Row) {
  const v = (mode: Mode, f: (s: Sample) => number | undefined) => p50(values(d.samples, row, mode, f));
  const ttr = (s: Sample) => s.ttrMs;
  return {
    full: v('full', ttr),
    parallel: v('parallel', ttr),
    aws: v('aws-parallel', ttr),
    pull: (m: Mode) => v(m, (s) => s.pullMs),
    rss: (m: Mode) => v(m, (s) => s.daemonPeakRssBytes),
    cpu: (m: Mode) => v(m, (s) => s.daemonCpuMs),
    ranges: (m: Mode) => v(m, (s) => s.rangeRequests),
  };
}

const hasParallel = (samples: Sample[], row?: Row) =>
  samples.some((s) => MODES.includes(s.mode) && (!row || (s.image === row.image && s.workload === row.workload)));

/** The profile's table, or undefined when it has no parallel samples. */
export function parallelTable(d: ProfileData, rows: Row[]): string | undefined {
  if (!hasParallel(d.samples)) return undefined;
  const head = [
    'image / workload',
    'full',
    'parallel (ours)',
    'aws-parallel',
    `parallel ÷ full (target ≤ ${PARALLEL_VS_FULL})`,
    `parallel ÷ aws-parallel (target ≤ ${PARALLEL_VS_AWS})`,
    'pull s: full · parallel · aws-parallel',
    `peak RSS MB: ours (target ≤ ${PARALLEL_RSS_BYTES / 1e6} on fat-sparse) · aws`,
    'daemon CPU s: ours · aws',
    'range req.: ours · aws',
  ];
  const lines = [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`];
  for (const row of rows) {
    if (!hasParallel(d.samples, row)) continue;
    const f = parallelFigures(d, row);
    lines.push(
      `| ${[
        escapeCell(row.label),
        sec(f.full),
        `**${sec(f.parallel)}**`,
        sec(f.aws),
        fix(f.parallel / f.full, 2),
        fix(f.parallel / f.aws, 2),
        (['full', 'parallel', 'aws-parallel'] as const).map((m) => sec(f.pull(m))).join(' · '),
        `${mb(f.rss('parallel'))} · ${mb(f.rss('aws-parallel'))}`,
        `${fix(f.cpu('parallel') / 1000, 1)} · ${fix(f.cpu('aws-parallel') / 1000, 1)}`,
        `${fix(f.ranges('parallel'), 0)} · ${fix(f.ranges('aws-parallel'), 0)}`,
      ].join(' | ')} |`,
    );
  }
  return [
    "Parallel pull and unpack, seconds (p50 of time to ready): the original image, without a SOCI index, pulled by each snapshotter's",
    "`[pull_modes.parallel_pull_unpack]` mode (bench/lib/parallel-sample.ts), beside containerd's own pull (full) of the same run.",
    'Peak RSS: the snapshotter process over the pull and the runs (VmHWM).',
    '',
    ...lines,
  ].join('\n');
}

/** The parallel pull targets over whatever the data covers. */
export function parallelTargets(data: ProfileData[], rows: Row[]): Verdict[] {
  const out: Verdict[] = [];
  const I = `(i) images without an index: parallel ≤ ${PARALLEL_VS_FULL}× full at ${PARALLEL_PROFILES.join(' and ')}`;
  const J = `(j) images without an index: parallel ≤ ${PARALLEL_VS_AWS}× aws-parallel at ${PARALLEL_PROFILES.join(' and ')}`;
  const K = `(k) our peak daemon RSS during the fat-sparse parallel pull ≤ ${PARALLEL_RSS_BYTES / 1e6} MB`;
  const measured = rows.filter((r) => data.some((d) => hasParallel(d.samples, r)));
  if (!measured.length) for (const t of [I, J]) out.push({ target: t, row: 'images without an index', figure: dash });
  const ratio = (target: string, row: Row, name: string, f: (x: ReturnType<typeof parallelFigures>) => number, max: number) => {
    const got = PARALLEL_PROFILES.map((p) => {
      const d = data.find((x) => x.profile === p);
      return [p, d ? f(parallelFigures(d, row)) : NaN] as const;
    });
    const ok = got.filter(([, x]) => Number.isFinite(x));
    if (!ok.length) return out.push({ target, row: row.label, figure: dash });
    const figure = `${name}: ${ok.map(([p, x]) => `${p} ${x.toFixed(2)}`).join(' · ')}`;
    // Every profile the target names must be measured before it can pass; one failing figure already fails.
    const pass = ok.length === got.length ? ok.every(([, x]) => x <= max) : ok.some(([, x]) => x > max) ? false : undefined;
    out.push({ target, row: row.label, figure, ...(pass === undefined ? {} : { pass }) });
  };
  for (const r of measured) ratio(I, r, 'parallel ÷ full', (x) => x.parallel / x.full, PARALLEL_VS_FULL);
  for (const r of measured) ratio(J, r, 'parallel ÷ aws-parallel', (x) => x.parallel / x.aws, PARALLEL_VS_AWS);

  // A peak is a peak: the highest of the samples, per profile.
  const peaks = data
    .map((d) => {
      const xs = d.samples.filter((s) => s.mode === 'parallel' && !s.error && kindOf(s.image) === 'fat-sparse' && s.daemonPeakRssBytes);
      return [d.profile, xs.length ? Math.max(...xs.map((s) => s.daemonPeakRssBytes!)) : NaN] as const;
    })
    .filter(([, x]) => Number.isFinite(x));
  if (!peaks.length) out.push({ target: K, row: 'fat-sparse', figure: dash });
  else
    out.push({
      target: K,
      row: 'fat-sparse',
      figure: `peak RSS: ${peaks.map(([p, x]) => `${p} ${(x / 1e6).toFixed(0)} MB`).join(' · ')}`,
      pass: peaks.every(([, x]) => x <= PARALLEL_RSS_BYTES),
    });
  return out;
}
