/**
 * Time-to-ready results (bench/results/<profile>.json, see types.ts) → the Markdown section of
 * BENCHMARKS.md: per profile a table of p50/p90 figures per image/workload, then the issue's targets
 * evaluated with ✅/❌ (or "not measured" where the data present does not cover them).
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { ImageInfo, Mode, ResultsFile, Sample } from './types.js';
import { p50, p90 } from './stats.js';
import { parallelTable, parallelTargets } from './report-parallel.js';

export const BEGIN = '<!-- ttr:begin -->';
export const END = '<!-- ttr:end -->';
const PROFILE_ORDER = ['p0', 'p1', 'p2', 'p3', 'p4'];

/** Every ResultsFile of one profile merged (run.ts may write several, e.g. one per image). */
export interface ProfileData {
  profile: string;
  label: string;
  commands: string[];
  machine: string;
  samplesPerMode: number;
  startedAt: string;
  finishedAt: string;
  samples: Sample[];
}

export interface Row {
  image: string;
  workload: string;
  label: string;
}

export function byProfile(results: ResultsFile[]): ProfileData[] {
  const out = new Map<string, ProfileData>();
  for (const r of results) {
    const d = out.get(r.profile);
    if (!d)
      out.set(r.profile, {
        profile: r.profile,
        label: r.profileLabel,
        commands: [r.command],
        machine: r.machine,
        samplesPerMode: r.samplesPerMode,
        startedAt: r.startedAt,
        finishedAt: r.finishedAt,
        samples: [...r.samples],
      });
    else {
      if (!d.commands.includes(r.command)) d.commands.push(r.command);
      d.samples.push(...r.samples);
      if (r.startedAt < d.startedAt) d.startedAt = r.startedAt;
      if (r.finishedAt > d.finishedAt) d.finishedAt = r.finishedAt;
    }
  }
  const rank = (p: string) => (PROFILE_ORDER.includes(p) ? PROFILE_ORDER.indexOf(p) : PROFILE_ORDER.length);
  return [...out.values()].sort((a, b) => rank(a.profile) - rank(b.profile) || a.profile.localeCompare(b.profile));
}

/** All images (first description wins), in the order they first appear. */
export function allImages(results: ResultsFile[]): ImageInfo[] {
  const m = new Map<string, ImageInfo>();
  for (const r of results) for (const i of r.images) if (!m.has(i.name)) m.set(i.name, i);
  return [...m.values()];
}

/** One row per image/workload: the images' declared workloads first, then any others seen in samples. */
export function allRows(results: ResultsFile[]): Row[] {
  const rows = new Map<string, Row>();
  const add = (image: string, workload: string) => {
    const k = `${image}\0${workload}`;
    if (!rows.has(k)) rows.set(k, { image, workload, label: workload && workload !== 'default' ? `${image} / ${workload}` : image });
  };
  for (const i of allImages(results)) for (const w of i.workloads) add(i.name, w.name);
  for (const r of results) for (const s of r.samples) add(s.image, s.workload);
  return [...rows.values()];
}

/** The image families the targets talk about, from the image name (see types.ts). */
export type Kind = 'echo' | 'python' | 'node' | 'hostile' | 'fat-sparse';
export function kindOf(image: string): Kind | undefined {
  const n = image.toLowerCase();
  return (['hostile', 'fat-sparse', 'python', 'node', 'echo'] as const).find((k) => n.includes(k));
}

/** Values of field f over the successful samples of a row and mode. */
export function values(samples: Sample[], row: Row, mode: Mode, f: (s: Sample) => number | undefined): number[] {
  const out: number[] = [];
  for (const s of samples) {
    if (s.image !== row.image || s.workload !== row.workload || s.mode !== mode || s.error) continue;
    const v = f(s);
    if (v !== undefined && Number.isFinite(v)) out.push(v);
  }
  return out;
}

const dash = '–';
const fix = (x: number, d: number) => (Number.isFinite(x) ? x.toFixed(d) : dash);
const sec = (ms: number) => fix(ms / 1000, 2);
const mb = (b: number) => fix(b / 1e6, 1);
const pct = (part: number, whole: number) => (whole > 0 && Number.isFinite(part) ? `${((100 * part) / whole).toFixed(1)} %` : dash);
const escapeCell = (s: string) => s.replace(/\|/g, '\\|');

/** p50s of one row in one profile (NaN where absent). */
function figures(d: ProfileData, row: Row, img: ImageInfo | undefined) {
  const v = (mode: Mode, f: (s: Sample) => number | undefined) => values(d.samples, row, mode, f);
  const full = v('full', (s) => s.ttrMs),
    lazy = v('lazy', (s) => s.ttrMs);
  const model = v('lazy', (s) => s.modelMs);
  return {
    fullP50: p50(full),
    fullP90: p90(full),
    lazyP50: p50(lazy),
    lazyP90: p90(lazy),
    warmP50: p50(v('warm', (s) => s.ttrMs)),
    lazyPull: p50(v('lazy', (s) => s.pullMs)),
    firstByte: p50(v('lazy', (s) => s.firstByteMs)),
    lazyBytes: p50(v('lazy', (s) => s.bytesFetched)),
    fullBytes: p50(v('full', (s) => s.bytesFetched)),
    compressed: img?.compressedBytes ?? NaN,
    ranges: p50(v('lazy', (s) => s.rangeRequests)),
    // On-demand bytes only: what came after the pull (spans) ÷ what the reads needed; the pull's metadata and
    // non-indexed layers are not amplification.
    amplification: p50(v('lazy', (s) => (s.neededCompressed ? (s.bytesFetched - (s.pullBytes ?? 0)) / s.neededCompressed : undefined))),
    model: p50(model.length ? model : v('full', (s) => s.modelMs)),
    cpu: p50(v('lazy', (s) => s.daemonCpuMs)),
    rss: p50(v('lazy', (s) => s.daemonPeakRssBytes)),
    replayP50: p50(v('replay', (s) => s.ttrMs)),
    awsP50: p50(v('aws', (s) => s.ttrMs)),
    awsReplayP50: p50(v('aws-replay', (s) => s.ttrMs)),
    bytesOf: (mode: Mode) => p50(v(mode, (s) => s.bytesFetched)),
    rssOf: (mode: Mode) => p50(v(mode, (s) => s.daemonPeakRssBytes)),
  };
}

const SIDE_MODES: Mode[] = ['replay', 'aws', 'aws-replay'];

/** full, AWS's snapshotter, ours, each with and without the prefetch artifacts, side by side: one run's p50s and ratios. */
function sideBySideTable(d: ProfileData, rows: Row[], images: Map<string, ImageInfo>): string | undefined {
  if (!d.samples.some((s) => SIDE_MODES.includes(s.mode))) return undefined;
  const head = [
    'image / workload',
    'full',
    'aws',
    'ours',
    'aws + prefetch',
    'ours + replay',
    'model',
    'ours ÷ aws',
    'replay ÷ model',
    'replay ÷ aws',
    'replay ÷ aws + prefetch',
    'MB fetched: aws · ours · aws + prefetch · replay',
    'RSS MB: aws · ours',
  ];
  const lines = [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`];
  for (const row of rows) {
    if (!d.samples.some((s) => s.image === row.image && s.workload === row.workload && SIDE_MODES.includes(s.mode))) continue;
    const f = figures(d, row, images.get(row.image));
    lines.push(
      `| ${[
        escapeCell(row.label),
        sec(f.fullP50),
        sec(f.awsP50),
        sec(f.lazyP50),
        sec(f.awsReplayP50),
        `**${sec(f.replayP50)}**`,
        sec(f.model),
        fix(f.lazyP50 / f.awsP50, 2),
        fix(f.replayP50 / f.model, 2),
        fix(f.replayP50 / f.awsP50, 2),
        fix(f.replayP50 / f.awsReplayP50, 2),
        (['aws', 'lazy', 'aws-replay', 'replay'] as const).map((m) => mb(f.bytesOf(m))).join(' · '),
        `${mb(f.rssOf('aws'))} · ${mb(f.rssOf('lazy'))}`,
      ].join(' | ')} |`,
    );
  }
  return [
    "Seconds, p50 of time to ready. aws = AWS's soci-snapshotter-grpc; ours + replay and aws + prefetch pull the image converted with",
    "the workload's own prefetch record (`soci convert --prefetch-record`), each daemon with `[prefetch] enable = true`.",
    '',
    ...lines,
  ].join('\n');
}

function profileTable(d: ProfileData, rows: Row[], images: Map<string, ImageInfo>): string {
  const head = [
    'image / workload',
    'full p50 s',
    'full p90 s',
    'lazy p50 s',
    'lazy p90 s',
    'warm p50 s',
    'lazy ÷ full',
    'lazy pull p50 s',
    'first byte p50 s',
    'lazy fetched MB (% image)',
    'full fetched MB (% image)',
    'range req. (lazy)',
    'amplification',
    'model p50 s',
    'lazy ÷ model',
    'lazy CPU s',
    'lazy RSS MB',
  ];
  const lines = [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`];
  const notes: string[] = [];
  for (const row of rows) {
    if (!d.samples.some((s) => s.image === row.image && s.workload === row.workload)) continue;
    const f = figures(d, row, images.get(row.image));
    lines.push(
      `| ${[
        escapeCell(row.label),
        sec(f.fullP50),
        sec(f.fullP90),
        `**${sec(f.lazyP50)}**`,
        sec(f.lazyP90),
        sec(f.warmP50),
        fix(f.lazyP50 / f.fullP50, 2),
        sec(f.lazyPull),
        sec(f.firstByte),
        `${mb(f.lazyBytes)} (${pct(f.lazyBytes, f.compressed)})`,
        `${mb(f.fullBytes)} (${pct(f.fullBytes, f.compressed)})`,
        fix(f.ranges, 0),
        fix(f.amplification, 2),
        sec(f.model),
        fix(f.lazyP50 / f.model, 2),
        fix(f.cpu / 1000, 2),
        mb(f.rss),
      ].join(' | ')} |`,
    );
    const mine = d.samples.filter((s) => s.image === row.image && s.workload === row.workload);
    const failed = mine.filter((s) => s.error);
    if (failed.length)
      notes.push(`${row.label}: ${failed.length} failed sample(s) left out (${[...new Set(failed.map((s) => `${s.mode}: ${s.error}`))].join('; ')})`);
    const short = mine.filter(
      (s) => s.mode === 'lazy' && s.lazyLayers !== undefined && s.expectedLazyLayers !== undefined && s.lazyLayers < s.expectedLazyLayers,
    );
    if (short.length)
      notes.push(`${row.label}: ${short.length} lazy sample(s) mounted only ${short[0]!.lazyLayers} of ${short[0]!.expectedLazyLayers} layers lazily`);
  }
  return [...lines, ...(notes.length ? ['', ...notes.map((n) => `- ⚠ ${n}`)] : [])].join('\n');
}

export type Verdict = { target: string; row: string; figure: string; pass?: boolean };

/** The issue's targets over whatever the data covers. */
export function evaluateTargets(results: ResultsFile[]): Verdict[] {
  const data = byProfile(results);
  const images = new Map(allImages(results).map((i) => [i.name, i]));
  const rows = allRows(results).filter((r) => data.some((d) => d.samples.some((s) => s.image === r.image && s.workload === r.workload)));
  const at = (profile: string, row: Row) => {
    const d = data.find((x) => x.profile === profile);
    return d && figures(d, row, images.get(row.image));
  };
  const out: Verdict[] = [];
  const none = (target: string, row: string) => out.push({ target, row, figure: dash });
  const ok = Number.isFinite;

  const A = '(a) echo at p2: lazy TTR ≤ 1/3 of full';
  const echo = rows.filter((r) => kindOf(r.image) === 'echo');
  if (!echo.length) none(A, 'echo');
  for (const r of echo) {
    const f = at('p2', r);
    if (!f || !ok(f.lazyP50 / f.fullP50)) none(A, r.label);
    else out.push({ target: A, row: r.label, figure: `lazy ÷ full = ${(f.lazyP50 / f.fullP50).toFixed(2)}`, pass: f.lazyP50 <= f.fullP50 / 3 });
  }

  const speed = (p: string, need: number) => `(b) lazy ≥ ${need}× faster than full at ${p}`;
  const B = '(b) lazy within 1.5× of the model bound';
  for (const kind of ['python', 'node', 'fat-sparse'] as const) {
    const mine = rows.filter((r) => kindOf(r.image) === kind && (kind !== 'fat-sparse' || /(^|\D)1pct/.test(r.workload)));
    if (!mine.length) none('(b) speed-ups and model bound', kind === 'fat-sparse' ? 'fat-sparse / 1pct' : kind);
    for (const r of mine) {
      for (const [p, need] of [
        ['p0', 3],
        ['p2', 5],
      ] as const) {
        const f = at(p, r);
        const speedup = f ? f.fullP50 / f.lazyP50 : NaN;
        if (!ok(speedup)) none(speed(p, need), r.label);
        else out.push({ target: speed(p, need), row: r.label, figure: `full ÷ lazy = ${speedup.toFixed(1)}×`, pass: speedup >= need });
      }
      const ratios = data
        .map((d) => [d.profile, at(d.profile, r)!] as const)
        .map(([p, f]) => [p, f.lazyP50 / f.model] as const)
        .filter(([, x]) => ok(x));
      if (!ratios.length) none(B, r.label);
      else
        out.push({
          target: B,
          row: r.label,
          figure: `lazy ÷ model: ${ratios.map(([p, x]) => `${p} ${x.toFixed(2)}`).join(' · ')}`,
          pass: ratios.every(([, x]) => x <= 1.5),
        });
    }
  }

  const C = '(c) hostile: lazy ≤ 1.25× full at every profile';
  const hostile = rows.filter((r) => kindOf(r.image) === 'hostile');
  if (!hostile.length) none(C, 'hostile');
  for (const r of hostile) {
    const ratios = data
      .map((d) => [d.profile, at(d.profile, r)!] as const)
      .map(([p, f]) => [p, f.lazyP50 / f.fullP50] as const)
      .filter(([, x]) => ok(x));
    if (!ratios.length) none(C, r.label);
    else
      out.push({
        target: C,
        row: r.label,
        figure: `lazy ÷ full: ${ratios.map(([p, x]) => `${p} ${x.toFixed(2)}`).join(' · ')}`,
        pass: ratios.every(([, x]) => x <= 1.25),
      });
  }

  const D = '(d) sparse workloads: lazy fetched before ready ≤ 10 % of the image (compressed)';
  const sparse = rows.filter((r) => kindOf(r.image) !== 'hostile' && (kindOf(r.image) !== 'fat-sparse' || /(^|\D)(1|5)pct/.test(r.workload)));
  if (!sparse.length) none(D, 'sparse images');
  for (const r of sparse) {
    const shares = data
      .map((d) => [d.profile, at(d.profile, r)!] as const)
      .map(([p, f]) => [p, f.lazyBytes / f.compressed] as const)
      .filter(([, x]) => ok(x));
    if (!shares.length) none(D, r.label);
    else
      out.push({
        target: D,
        row: r.label,
        figure: shares.map(([p, x]) => `${p} ${(100 * x).toFixed(1)} %`).join(' · '),
        pass: shares.every(([, x]) => x <= 0.1),
      });
  }
  sideBySideTargets(rows, at, out);
  out.push(...parallelTargets(data, rows));
  return out;
}

type Figures = ReturnType<typeof figures>;

/** Record-and-replay and AWS side by side: ratios of p50s measured in the same run. */
function sideBySideTargets(rows: Row[], at: (profile: string, row: Row) => Figures | undefined, out: Verdict[]): void {
  const ratio = (target: string, row: Row, profiles: string[], name: string, f: (x: Figures) => number, max: number) => {
    const got = profiles.map((p) => [p, at(p, row)] as const).map(([p, x]) => [p, x ? f(x) : NaN] as const);
    const measured = got.filter(([, x]) => Number.isFinite(x));
    if (!measured.length) return out.push({ target, row: row.label, figure: dash });
    const figure = `${name}: ${measured.map(([p, x]) => `${p} ${x.toFixed(2)}`).join(' · ')}`;
    // Every profile the target names must be measured before it can pass.
    const pass = measured.length === got.length ? measured.every(([, x]) => x <= max) : measured.some(([, x]) => x > max) ? false : undefined;
    out.push({ target, row: row.label, figure, ...(pass === undefined ? {} : { pass }) });
  };
  const hard = rows.filter(
    (r) => (kindOf(r.image) === 'python' && r.workload === 'imports') || (kindOf(r.image) === 'node' && r.workload === 'http') || kindOf(r.image) === 'hostile',
  );
  for (const r of hard) ratio('(e) with replay: lazy ≤ 1.3× the model at p2 and p4', r, ['p2', 'p4'], 'replay ÷ model', (x) => x.replayP50 / x.model, 1.3);
  for (const r of rows) {
    ratio("(f) with replay: ours ≤ 0.7× AWS's without prefetch, at p2 and p4", r, ['p2', 'p4'], 'replay ÷ aws', (x) => x.replayP50 / x.awsP50, 0.7);
    ratio(
      "(g) with replay: ours ≤ 0.9× AWS's with the same artifacts, at p2 and p4",
      r,
      ['p2', 'p4'],
      'replay ÷ aws + prefetch',
      (x) => x.replayP50 / x.awsReplayP50,
      0.9,
    );
    ratio(
      '(h) without replay: ours ≤ AWS, every profile measured',
      r,
      PROFILE_ORDER.filter((p) => at(p, r) && Number.isFinite(at(p, r)!.awsP50)),
      'ours ÷ aws',
      (x) => x.lazyP50 / x.awsP50,
      1,
    );
  }
}

export function renderReport(results: ResultsFile[], opts: { chartPath?: string } = {}): string {
  const data = byProfile(results);
  const imageList = allImages(results);
  const images = new Map(imageList.map((i) => [i.name, i]));
  const rows = allRows(results);
  const out: string[] = [];
  out.push(`![time to ready, p50 with p90 whiskers, per profile](${opts.chartPath ?? 'bench/results/ttr.svg'})`, '');
  out.push(
    'Time to ready (TTR): from the pull command to the first HTTP 200 or exit 0; warm: from `ctr run` with the image',
    'already local. full = containerd pull + overlayfs; lazy = our SOCI snapshotter. Bytes fetched: from the registry through',
    'the shaping proxy, pull start to ready. Amplification: lazy bytes fetched after the pull (spans) ÷ compressed estimate of what was read. Model:',
    'the lower bound computed by bench/run.ts. p50/p90 are nearest-rank.',
    '',
  );
  if (imageList.length) {
    out.push('| image | layers | compressed MB | uncompressed MB | workloads |', '|---|---|---|---|---|');
    for (const i of imageList)
      out.push(
        `| ${escapeCell(i.name)} | ${i.layers} | ${mb(i.compressedBytes)} | ${mb(i.uncompressedBytes)} | ${escapeCell(i.workloads.map((w) => `${w.name}: ${w.description}`).join('; '))} |`,
      );
    out.push('');
  }
  for (const d of data) {
    out.push(`### ${d.profile} — ${d.label}`, '');
    out.push(...d.commands.map((c) => `\`${c}\``));
    out.push(`(${d.machine}; ${d.samplesPerMode} samples per mode; ${d.startedAt} → ${d.finishedAt}; code measured: ${builds(d.samples)})`, '');
    out.push(profileTable(d, rows, images), '');
    const side = sideBySideTable(d, rows, images);
    if (side) out.push(side, '');
    const parallel = parallelTable(d, rows);
    if (parallel) out.push(parallel, '');
  }
  if (!data.length) out.push('No results.', '');
  out.push('### Targets', '', '| target | image / workload | figure | result |', '|---|---|---|---|');
  for (const v of evaluateTargets(results))
    out.push(`| ${escapeCell(v.target)} | ${escapeCell(v.row)} | ${v.figure} | ${v.pass === undefined ? 'not measured' : v.pass ? '✅' : '❌'} |`);
  return out.join('\n') + '\n';
}

/** Replaces the text between the ttr markers (appending a section with them if absent); atomic rename. */
export function updateBenchmarksMd(path: string, section: string): void {
  let text = '';
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    text = '# Benchmarks\n';
  }
  const body = `${BEGIN}\n${section.trim()}\n${END}`;
  const b = text.indexOf(BEGIN);
  const e = b < 0 ? -1 : text.indexOf(END, b);
  if (b >= 0 && e >= 0) text = text.slice(0, b) + body + text.slice(e + END.length);
  else text = `${text.replace(/\n*$/, '')}\n\n## Issue 6 — time-to-ready\n\n${body}\n`;
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, text);
  renameSync(tmp, path);
}

/** "abc1234 (120 samples), not recorded (60 samples)": which commit each sample measured. */
export function builds(samples: Sample[]): string {
  const n = new Map<string, number>();
  for (const s of samples) {
    const b = s.build ?? 'not recorded';
    n.set(b, (n.get(b) ?? 0) + 1);
  }
  return [...n].map(([b, c]) => `${b} (${c} samples)`).join(', ');
}
