/** bench/lib/{stats,report,chart}.ts on synthetic results: figures, target verdicts, markers, SVG. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { renderChart } from '../../bench/lib/chart.js';
import { builds, evaluateTargets, renderReport, updateBenchmarksMd } from '../../bench/lib/report.js';
import { median, p50, p90 } from '../../bench/lib/stats.js';
import type { Mode, ResultsFile, Sample } from '../../bench/lib/types.js';

const MB = 1e6;
const images = [
  { name: 'echo', compressedBytes: 500 * MB, uncompressedBytes: 1400 * MB, layers: 4, workloads: [{ name: 'http', description: 'busybox httpd' }] },
  { name: 'hostile', compressedBytes: 200 * MB, uncompressedBytes: 400 * MB, layers: 2, workloads: [{ name: 'readall', description: 'reads every file' }] },
  {
    name: 'fat-sparse',
    compressedBytes: 1000 * MB,
    uncompressedBytes: 1000 * MB,
    layers: 3,
    workloads: [
      { name: '1pct', description: 'reads 1 %' },
      { name: '5pct', description: 'reads 5 %' },
    ],
  },
];

/** 5 samples of one series; ttr in seconds (shuffled order on purpose), the rest scaled per sample. */
function series(profile: string, image: string, workload: string, mode: Mode, ttrS: number[], o: { bytes?: number; model?: number } = {}): Sample[] {
  return ttrS.map((t, i) => ({
    image,
    workload,
    profile,
    mode,
    iteration: i,
    ttrMs: t * 1000,
    pullMs: mode === 'warm' ? 0 : t * 800,
    runMs: t * 200,
    bytesFetched: mode === 'warm' ? 0 : (o.bytes ?? 0),
    requests: 10,
    rangeRequests: mode === 'lazy' ? 7 : 0,
    connections: 2,
    ...(mode === 'lazy'
      ? { firstByteMs: 300, neededCompressed: (o.bytes ?? 0) / 2, daemonCpuMs: 1500, daemonPeakRssBytes: 120 * MB, modelMs: (o.model ?? 1) * 1000 }
      : {}),
  }));
}

/** full/lazy/warm of one row: p50s full F, lazy L (the samples are p50 × [0.9, 1.2, 1, 0.8, 1.5]). */
function row(profile: string, image: string, workload: string, F: number, L: number, o: { lazyBytes: number; model?: number }): Sample[] {
  const spread = (m: number) => [0.9, 1.2, 1, 0.8, 1.5].map((k) => m * k);
  return [
    ...series(profile, image, workload, 'full', spread(F), { bytes: 999 * MB }),
    ...series(profile, image, workload, 'lazy', spread(L), { bytes: o.lazyBytes, ...(o.model ? { model: o.model } : {}) }),
    ...series(profile, image, workload, 'warm', spread(0.5)),
  ];
}

function file(profile: string, label: string, samples: Sample[]): ResultsFile {
  return {
    profile,
    profileLabel: label,
    startedAt: '2026-11-23T10:00:00Z',
    finishedAt: '2026-11-23T11:00:00Z',
    command: `node --import tsx bench/run.ts --profile ${profile}`,
    samplesPerMode: 5,
    machine: '2 vCPU',
    images,
    samples,
  };
}

const P0 = file('p0', 'unshaped', [
  ...row('p0', 'echo', 'http', 20, 2, { lazyBytes: 25 * MB }),
  ...row('p0', 'hostile', 'readall', 10, 11, { lazyBytes: 210 * MB }), // 1.10× full: pass
  ...row('p0', 'fat-sparse', '1pct', 9, 2, { lazyBytes: 30 * MB, model: 1.5 }), // 4.5×: pass; model 1.33: pass
  ...row('p0', 'fat-sparse', '5pct', 9, 3, { lazyBytes: 120 * MB }), // 12 %: fail
]);
const P2 = file('p2', '100 Mbit/s, 20 ms RTT', [
  ...row('p2', 'echo', 'http', 60, 12, { lazyBytes: 25 * MB }), // 0.20: pass
  ...row('p2', 'hostile', 'readall', 30, 42, { lazyBytes: 210 * MB }), // 1.40: fail
  ...row('p2', 'fat-sparse', '1pct', 40, 10, { lazyBytes: 30 * MB, model: 8 }), // 4×: fail; model 1.25: pass
  ...row('p2', 'fat-sparse', '5pct', 40, 12, { lazyBytes: 120 * MB }),
]);

const line = (md: string, profile: string, label: string) => {
  const section = md.slice(md.indexOf(`### ${profile} `));
  return section.split('\n').find((l) => l.startsWith(`| ${label} |`)) ?? '';
};

test('stats: nearest-rank percentiles and median', () => {
  assert.equal(p50([5, 1, 4, 2, 3]), 3);
  assert.equal(p90([5, 1, 4, 2, 3]), 5);
  assert.equal(p90([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]), 9);
  assert.equal(p50([1, 2, 3, 4]), 2);
  assert.equal(median([1, 2, 3, 4]), 2.5);
  assert.ok(Number.isNaN(p50([])));
});

test('the profile tables carry p50/p90 and the derived columns', () => {
  const md = renderReport([P2, P0]);
  assert.ok(md.indexOf('### p0 — unshaped') < md.indexOf('### p2 — 100 Mbit/s, 20 ms RTT'), 'profiles in order');
  assert.match(md, /`node --import tsx bench\/run.ts --profile p2`/);
  const echo = line(md, 'p0', 'echo / http')
    .split('|')
    .map((c) => c.trim());
  // full 20 s × [0.9, 1.2, 1, 0.8, 1.5] → p50 20, p90 30; lazy 2 → p50 2, p90 3; warm 0.5
  assert.deepEqual(echo.slice(2, 8), ['20.00', '30.00', '**2.00**', '3.00', '0.50', '0.10']);
  assert.equal(echo[8], '1.60'); // lazy pull = 0.8 × ttr
  assert.equal(echo[9], '0.30'); // first byte
  assert.equal(echo[10], '25.0 (5.0 %)');
  assert.equal(echo[11], '999.0 (199.8 %)');
  assert.equal(echo[12], '7'); // range requests
  assert.equal(echo[13], '2.00'); // amplification
  assert.deepEqual(echo.slice(16, 18), ['1.50', '120.0']); // CPU s, RSS MB
  const fs1 = line(md, 'p2', 'fat-sparse / 1pct')
    .split('|')
    .map((c) => c.trim());
  assert.deepEqual([fs1[14], fs1[15]], ['8.00', '1.25']); // model p50, lazy ÷ model
});

test('targets: pass and fail cases, and not measured', () => {
  const v = evaluateTargets([P0, P2]);
  const get = (target: string, row: string) => v.filter((x) => x.target.includes(target) && x.row === row);
  assert.deepEqual(
    get('(a)', 'echo / http').map((x) => [x.pass, x.figure]),
    [[true, 'lazy ÷ full = 0.20']],
  );
  assert.deepEqual(
    get('faster than full at p0', 'fat-sparse / 1pct').map((x) => [x.pass, x.figure]),
    [[true, 'full ÷ lazy = 4.5×']],
  );
  assert.deepEqual(
    get('faster than full at p2', 'fat-sparse / 1pct').map((x) => [x.pass, x.figure]),
    [[false, 'full ÷ lazy = 4.0×']],
  );
  assert.deepEqual(
    get('model bound', 'fat-sparse / 1pct').map((x) => [x.pass, x.figure]),
    [[true, 'lazy ÷ model: p0 1.33 · p2 1.25']],
  );
  assert.deepEqual(
    get('(c)', 'hostile / readall').map((x) => [x.pass, x.figure]),
    [[false, 'lazy ÷ full: p0 1.10 · p2 1.40']],
  );
  assert.deepEqual(
    get('(d)', 'fat-sparse / 1pct').map((x) => x.pass),
    [true],
  );
  assert.deepEqual(
    get('(d)', 'fat-sparse / 5pct').map((x) => [x.pass, x.figure]),
    [[false, 'p0 12.0 % · p2 12.0 %']],
  );
  assert.deepEqual(
    get('(d)', 'echo / http').map((x) => x.pass),
    [true],
  );
  assert.equal(get('(d)', 'hostile / readall').length, 0, 'hostile is not a sparse workload');
  for (const missing of ['python', 'node'])
    assert.deepEqual(
      get('(b)', missing).map((x) => x.pass),
      [undefined],
    );

  // p0 only: the p2 targets are not measured, the p0 ones still are
  const v0 = evaluateTargets([P0]);
  assert.equal(v0.find((x) => x.target.startsWith('(a)'))!.pass, undefined);
  assert.equal(v0.find((x) => x.target.includes('faster than full at p2') && x.row === 'fat-sparse / 1pct')!.pass, undefined);
  assert.equal(v0.find((x) => x.target.startsWith('(c)'))!.pass, true);
  const md = renderReport([P0]);
  assert.match(md, /\| \(a\) echo at p2[^\n]*\| echo \/ http \| – \| not measured \|/);
  assert.match(md, /\| \(c\) hostile[^\n]*\| hostile \/ readall \| lazy ÷ full: p0 1\.10 \| ✅ \|/);
  assert.match(renderReport([P0, P2]), /\| \(c\) hostile[^\n]*\| ❌ \|/);
});

test('side by side with AWS: the table, and the replay targets over p2 and p4', () => {
  const spread = (m: number) => [0.9, 1.2, 1, 0.8, 1.5].map((k) => m * k);
  // p50s in seconds: full F, ours L, ours + replay R, aws A, aws + prefetch AR; model M.
  const side = (profile: string, F: number, L: number, R: number, A: number, AR: number, M: number) => [
    ...row(profile, 'python', 'imports', F, L, { lazyBytes: 20 * MB, model: M }),
    ...series(profile, 'python', 'imports', 'replay', spread(R), { bytes: 30 * MB }),
    ...series(profile, 'python', 'imports', 'aws', spread(A), { bytes: 40 * MB }),
    ...series(profile, 'python', 'imports', 'aws-replay', spread(AR), { bytes: 50 * MB }),
  ];
  const p2 = file('p2', '100 Mbit/s, 20 ms RTT', side('p2', 30, 6, 4, 8, 5, 3.5));
  const p4 = file('p4', '20 Mbit/s, 100 ms RTT', side('p4', 90, 18, 12, 15, 12, 10));
  const md = renderReport([p2, p4]);
  const section = md.slice(md.indexOf('### p2 '), md.indexOf('### p4 '));
  const rows = section.split('\n').filter((l) => l.startsWith('| python / imports |'));
  assert.equal(rows.length, 2, 'the profile table, then the side-by-side one');
  assert.deepEqual(
    rows[1]!
      .split('|')
      .map((c) => c.trim())
      .slice(2, 14),
    ['30.00', '8.00', '6.00', '5.00', '**4.00**', '3.50', '0.75', '1.14', '0.50', '0.80', '40.0 · 20.0 · 50.0 · 30.0', '– · 120.0'],
  );
  const v = evaluateTargets([p2, p4]);
  const get = (target: string) => v.filter((x) => x.target.startsWith(target)).map((x) => [x.pass, x.figure]);
  assert.deepEqual(get('(e)'), [[true, 'replay ÷ model: p2 1.14 · p4 1.20']]);
  assert.deepEqual(get('(f)'), [[false, 'replay ÷ aws: p2 0.50 · p4 0.80']]);
  assert.deepEqual(get('(g)'), [[false, 'replay ÷ aws + prefetch: p2 0.80 · p4 1.00']]);
  assert.deepEqual(get('(h)'), [[false, 'ours ÷ aws: p2 0.75 · p4 1.20']]);
  // p2 alone: a passing figure is not yet a pass (p4 is missing), a failing one is already a fail.
  const only2 = evaluateTargets([p2]);
  assert.deepEqual(
    only2.filter((x) => x.target.startsWith('(e)')).map((x) => x.pass),
    [undefined],
  );
  assert.deepEqual(
    only2.filter((x) => x.target.startsWith('(h)')).map((x) => x.pass),
    [true],
  );
  assert.ok(!renderReport([P0]).includes('ours + replay |'), 'no side-by-side table without those modes');
  const svg = renderChart([p2, p4]);
  assert.equal((svg.match(/class="legend"/g) ?? []).length, 6, 'a legend entry per mode present');
  assert.equal((svg.match(/data-series="p4\|python\|imports\|aws-replay"/g) ?? []).length, 1);
});

test('parallel pull: the table beside full and AWS, and its targets at p0 and p1', () => {
  const spread = (m: number) => [0.9, 1.2, 1, 0.8, 1.5].map((k) => m * k);
  // p50s in seconds: full F, ours P, AWS's A; our peak RSS in MB (per sample, the highest is the target's figure).
  const par = (profile: string, image: string, workload: string, F: number, P: number, A: number, rssMb: number[]) => [
    ...series(profile, image, workload, 'full', spread(F), { bytes: 999 * MB }),
    ...series(profile, image, workload, 'parallel', spread(P), { bytes: 1000 * MB }).map((s, i) => ({
      ...s,
      daemonPeakRssBytes: rssMb[i]! * MB,
      daemonCpuMs: 4000,
      rangeRequests: 60,
    })),
    ...series(profile, image, workload, 'aws-parallel', spread(A), { bytes: 1000 * MB }).map((s) => ({ ...s, daemonPeakRssBytes: 90 * MB, rangeRequests: 64 })),
  ];
  const p0 = file('p0', 'unshaped', [
    ...par('p0', 'echo', 'http', 10, 5, 6, [150, 160, 170, 180, 190]),
    ...par('p0', 'fat-sparse', '1pct', 20, 10, 9, [250, 260, 240, 230, 280]),
  ]);
  const p1 = file('p1', '1 Gbit/s, 2 ms RTT', [
    ...par('p1', 'echo', 'http', 12, 7.8, 8, [150, 150, 150, 150, 150]),
    ...par('p1', 'fat-sparse', '1pct', 30, 15, 16, [250, 310, 240, 230, 280]),
  ]);
  const md = renderReport([p0, p1]);
  const section = md.slice(md.indexOf('### p0 '), md.indexOf('### p1 '));
  assert.match(
    section,
    /\| image \/ workload \| full \| parallel \(ours\) \| aws-parallel \| parallel ÷ full \(target ≤ 0\.6\) \| parallel ÷ aws-parallel \(target ≤ 1\) \|/,
  );
  const rows = section.split('\n').filter((l) => l.startsWith('| echo / http |'));
  assert.equal(rows.length, 2, 'the profile table, then the parallel one');
  assert.deepEqual(
    rows[1]!
      .split('|')
      .map((c) => c.trim())
      .slice(2, 11),
    ['10.00', '**5.00**', '6.00', '0.50', '0.83', '8.00 · 4.00 · 4.80', '170 · 90', '4.0 · –', '60 · 64'],
  );
  const v = evaluateTargets([p0, p1]);
  const get = (target: string, row: string) => v.filter((x) => x.target.startsWith(target) && x.row === row).map((x) => [x.pass, x.figure]);
  assert.deepEqual(get('(i)', 'echo / http'), [[false, 'parallel ÷ full: p0 0.50 · p1 0.65']]);
  assert.deepEqual(get('(i)', 'fat-sparse / 1pct'), [[true, 'parallel ÷ full: p0 0.50 · p1 0.50']]);
  assert.deepEqual(get('(j)', 'echo / http'), [[true, 'parallel ÷ aws-parallel: p0 0.83 · p1 0.97']]);
  assert.deepEqual(get('(j)', 'fat-sparse / 1pct'), [[false, 'parallel ÷ aws-parallel: p0 1.11 · p1 0.94']]);
  assert.deepEqual(get('(k)', 'fat-sparse'), [[false, 'peak RSS: p0 280 MB · p1 310 MB']]);
  assert.match(md, /\| \(k\) our peak daemon RSS[^\n]*\| fat-sparse \| peak RSS: p0 280 MB · p1 310 MB \| ❌ \|/);
  // p0 alone: a passing ratio waits for p1, a failing one already fails; the RSS target counts what was measured.
  const only0 = evaluateTargets([p0]);
  assert.deepEqual(
    only0.filter((x) => x.target.startsWith('(i)')).map((x) => [x.row, x.pass]),
    [
      ['echo / http', undefined],
      ['fat-sparse / 1pct', undefined],
    ],
  );
  assert.deepEqual(
    only0.filter((x) => x.target.startsWith('(j)') && x.row === 'fat-sparse / 1pct').map((x) => x.pass),
    [false],
  );
  assert.deepEqual(
    only0.filter((x) => x.target.startsWith('(k)')).map((x) => x.pass),
    [true],
  );
  // Without parallel samples: no table, and the targets say "not measured" once each.
  const none = renderReport([P0]);
  assert.ok(!none.includes('parallel (ours)'), 'no parallel table without those modes');
  assert.match(none, /\| \(i\) images without an index[^\n]*\| images without an index \| – \| not measured \|/);
  assert.match(none, /\| \(k\) our peak daemon RSS[^\n]*\| fat-sparse \| – \| not measured \|/);
  const svg = renderChart([p0, p1]);
  assertWellFormed(svg);
  assert.equal((svg.match(/class="legend"/g) ?? []).length, 3, 'full, aws-parallel, parallel');
  assert.equal((svg.match(/data-series="p1\|fat-sparse\|1pct\|parallel"/g) ?? []).length, 1);
});

test('failed samples are left out and reported', () => {
  const bad = file('p0', 'unshaped', [
    ...row('p0', 'echo', 'http', 20, 2, { lazyBytes: 1 }),
    { ...series('p0', 'echo', 'http', 'lazy', [500])[0]!, error: 'timeout' },
  ]);
  const md = renderReport([bad]);
  assert.equal(line(md, 'p0', 'echo / http').split('|')[4]!.trim(), '**2.00**');
  assert.match(md, /echo \/ http: 1 failed sample\(s\) left out \(lazy: timeout\)/);
});

test('updateBenchmarksMd replaces between the markers, or appends a section', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ttr-report-'));
  try {
    const path = join(dir, 'BENCHMARKS.md');
    writeFileSync(path, '# Benchmarks\n\n## Issue 4\n\ntext\n');
    updateBenchmarksMd(path, 'first');
    assert.equal(
      readFileSync(path, 'utf8'),
      '# Benchmarks\n\n## Issue 4\n\ntext\n\n## Issue 6 — time-to-ready\n\n<!-- ttr:begin -->\nfirst\n<!-- ttr:end -->\n',
    );
    writeFileSync(path, readFileSync(path, 'utf8') + '\n## Issue 7\n\nafter\n');
    updateBenchmarksMd(path, 'second\n');
    assert.equal(
      readFileSync(path, 'utf8'),
      '# Benchmarks\n\n## Issue 4\n\ntext\n\n## Issue 6 — time-to-ready\n\n<!-- ttr:begin -->\nsecond\n<!-- ttr:end -->\n\n## Issue 7\n\nafter\n',
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** A tiny XML well-formedness check: tags balance, attributes quoted, no stray '<' or '&'. */
function assertWellFormed(xml: string): void {
  const stack: string[] = [];
  const re = /<(\/?)([a-zA-Z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>|<|&(?!(amp|lt|gt|quot|apos);)/g;
  for (const m of xml.matchAll(re)) {
    assert.ok(m[2], `stray markup at ${m.index}: ${xml.slice(m.index, m.index! + 40)}`);
    if (m[4]) continue;
    if (m[1]) assert.equal(stack.pop(), m[2], `unbalanced </${m[2]}> at ${m.index}`);
    else stack.push(m[2]!);
  }
  assert.deepEqual(stack, []);
}

test('the SVG chart: well-formed, one bar per series, legend', () => {
  const svg = renderChart([P0, P2]);
  assert.ok(svg.startsWith('<svg') && svg.trimEnd().endsWith('</svg>'));
  assertWellFormed(svg);
  const series = [...svg.matchAll(/class="bar" data-series="([^"]+)"/g)].map((m) => m[1]);
  assert.equal(series.length, 2 * 4 * 3, '2 profiles × 4 image/workloads × 3 modes');
  assert.equal(new Set(series).size, series.length);
  assert.ok(series.includes('p2|fat-sparse|5pct|warm'));
  for (const name of ['full pull', 'lazy (ours)', 'warm']) assert.ok(svg.includes(name), `legend ${name}`);
  assert.equal((svg.match(/class="legend"/g) ?? []).length, 3);
  assert.match(svg, /p2 — 100 Mbit\/s, 20 ms RTT/);
  // the log axis covers 0.4 s (warm) … 90 s (p90 of full echo at p2)
  assert.match(svg, />0\.1 s</);
  assert.match(svg, />100 s</);
  assertWellFormed(renderChart([]));
});

test('each profile says which commit its samples measured', () => {
  const tagged = file('p3', '1 Gbit/s, 50 ms RTT', [
    ...row('p3', 'echo', 'http', 20, 2, { lazyBytes: 25 * MB }).map((s) => ({ ...s, build: 'abc1234' })),
    ...row('p3', 'hostile', 'readall', 10, 11, { lazyBytes: 210 * MB }),
  ]);
  assert.equal(builds(tagged.samples), 'abc1234 (15 samples), not recorded (15 samples)');
  assert.match(renderReport([tagged]), /code measured: abc1234 \(15 samples\), not recorded \(15 samples\)\)/);
});
