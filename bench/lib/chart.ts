/**
 * Time-to-ready chart as a self-contained SVG (hand-written, no deps): one panel per profile, one group
 * of horizontal bars per image/workload (one per mode present in the data, fixed order and colours),
 * bar = p50, whisker = p90.
 * The x axis is logarithmic and shared by all panels, so 0.5 s and 300 s are both readable and panels
 * compare directly. About 1000 px wide.
 */
import type { Mode, ResultsFile } from './types.js';
import { allRows, byProfile, values } from './report.js';
import { p50, p90 } from './stats.js';

export const MODES: Mode[] = ['full', 'aws-parallel', 'parallel', 'aws', 'lazy', 'aws-replay', 'replay', 'warm'];
export const COLOURS: Record<Mode, string> = {
  full: '#4e79a7',
  'aws-parallel': '#edc948',
  parallel: '#76b7b2',
  aws: '#9c755f',
  lazy: '#f28e2b',
  'aws-replay': '#b07aa1',
  replay: '#e15759',
  warm: '#59a14f',
};
const NAMES: Record<Mode, string> = {
  full: 'full pull (overlayfs)',
  'aws-parallel': 'AWS parallel pull',
  parallel: 'parallel pull (ours)',
  aws: "AWS's snapshotter",
  lazy: 'lazy (ours)',
  'aws-replay': 'AWS + prefetch',
  replay: 'ours + replay',
  warm: 'warm (image local)',
};

const W = 1000,
  LEFT = 230,
  RIGHT = 70,
  BAR = 10,
  PITCH = 12,
  GROUP_GAP = 8,
  PANEL_HEAD = 26,
  AXIS = 28,
  TOP = 64,
  LEGEND_PER_LINE = 6;
const PW = W - LEFT - RIGHT;

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const n = (x: number) => (Math.round(x * 10) / 10).toString();
const secs = (s: number) => (s >= 100 ? s.toFixed(0) : s >= 10 ? s.toFixed(1) : s.toFixed(2));
const text = (x: number, y: number, s: string, attrs = '') => `<text x="${n(x)}" y="${n(y)}"${attrs ? ` ${attrs}` : ''}>${esc(s)}</text>`;

interface Bar {
  mode: Mode;
  p50: number;
  p90: number;
  n: number;
}
interface Group {
  label: string;
  image: string;
  workload: string;
  bars: Bar[];
}

export function renderChart(results: ResultsFile[]): string {
  const rows = allRows(results);
  const present = new Set(results.flatMap((r) => r.samples.map((s) => s.mode)));
  const modes = MODES.filter((m) => present.has(m));
  const panels = byProfile(results)
    .map((d) => ({
      title: `${d.profile} — ${d.label}`,
      profile: d.profile,
      groups: rows
        .map(
          (row): Group => ({
            label: row.label,
            image: row.image,
            workload: row.workload,
            bars: modes
              .map((mode) => {
                const xs = values(d.samples, row, mode, (s) => s.ttrMs / 1000);
                return { mode, p50: p50(xs), p90: p90(xs), n: xs.length };
              })
              .filter((b) => b.n > 0),
          }),
        )
        .filter((g) => g.bars.length > 0),
    }))
    .filter((p) => p.groups.length > 0);

  const all = panels.flatMap((p) => p.groups.flatMap((g) => g.bars));
  if (!all.length)
    return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="60" viewBox="0 0 ${W} 60">${text(20, 35, 'time to ready: no results', 'font-family="sans-serif" font-size="14"')}</svg>\n`;

  // Shared log axis over whole decades (at least one), from the smallest p50 to the largest p90.
  const lo = 10 ** Math.floor(Math.log10(Math.max(0.01, Math.min(...all.map((b) => b.p50)))));
  let hi = 10 ** Math.ceil(Math.log10(Math.max(...all.map((b) => Math.max(b.p50, b.p90)))));
  if (hi <= lo) hi = lo * 10;
  const x = (s: number) => LEFT + (PW * (Math.log10(Math.min(hi, Math.max(lo, s))) - Math.log10(lo))) / (Math.log10(hi) - Math.log10(lo));
  const ticks: number[] = [];
  for (let d = lo; d < hi * 1.001; d *= 10) for (const m of [1, 2, 5]) if (d * m <= hi * 1.001) ticks.push(d * m);

  const out: string[] = [];
  let y = TOP;
  for (const p of panels) {
    const height = p.groups.length * (modes.length * PITCH + GROUP_GAP);
    out.push(`<g class="panel" data-profile="${esc(p.profile)}">`);
    out.push(text(10, y + 17, p.title, 'font-size="15" font-weight="bold"'));
    const top = y + PANEL_HEAD;
    for (const t of ticks) {
      const major = Math.abs(Math.log10(t) - Math.round(Math.log10(t))) < 1e-9;
      out.push(`<line x1="${n(x(t))}" y1="${n(top - 4)}" x2="${n(x(t))}" y2="${n(top + height)}" stroke="${major ? '#bbb' : '#e4e4e4'}"/>`);
      out.push(text(x(t), top + height + 15, `${t >= 1 ? t.toFixed(0) : Number(t.toPrecision(1))} s`, 'text-anchor="middle" font-size="11" fill="#555"'));
    }
    let gy = top;
    for (const g of p.groups) {
      const label = g.label.length > 34 ? `…${g.label.slice(-33)}` : g.label;
      out.push(text(LEFT - 8, gy + (modes.length * PITCH) / 2 + 4, label, 'text-anchor="end"'));
      for (const b of g.bars) {
        const by = gy + modes.indexOf(b.mode) * PITCH;
        const x50 = x(b.p50),
          x90 = x(b.p90),
          mid = by + BAR / 2;
        const tip = `${p.profile} ${g.label} ${b.mode}: p50 ${secs(b.p50)} s, p90 ${secs(b.p90)} s (${b.n} samples)`;
        out.push(
          `<rect class="bar" data-series="${esc(`${p.profile}|${g.image}|${g.workload}|${b.mode}`)}" x="${LEFT}" y="${n(by)}" width="${n(Math.max(1, x50 - LEFT))}" height="${BAR}" fill="${COLOURS[b.mode]}"><title>${esc(tip)}</title></rect>`,
        );
        if (x90 > x50 + 0.5)
          out.push(`<path class="whisker" d="M${n(x50)} ${n(mid)}H${n(x90)}M${n(x90)} ${n(by + 1)}V${n(by + BAR - 1)}" stroke="#333" fill="none"/>`);
        out.push(text(Math.max(x50, x90) + 4, by + BAR - 1, `${secs(b.p50)} s`, 'font-size="10" fill="#333"'));
      }
      gy += modes.length * PITCH + GROUP_GAP;
    }
    out.push(`<line x1="${LEFT}" y1="${n(top - 4)}" x2="${LEFT}" y2="${n(top + height)}" stroke="#333"/>`, '</g>');
    y = top + height + AXIS;
  }

  // Six entries fit a line; more go on a second one, above the first panel.
  const legend = modes.map((m, i) => {
    const lx = 10 + (i % LEGEND_PER_LINE) * 165,
      ly = 36 + Math.floor(i / LEGEND_PER_LINE) * 14;
    return `<g class="legend"><rect x="${lx}" y="${ly}" width="14" height="10" fill="${COLOURS[m]}"/>${text(lx + 20, ly + 9, NAMES[m])}</g>`;
  });
  const H = y + 10;
  return (
    [
      `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
      `<rect width="${W}" height="${H}" fill="#fff"/>`,
      text(10, 22, 'Time to ready: bar = p50, whisker = p90 (log scale, seconds)', 'font-size="16" font-weight="bold"'),
      ...legend,
      ...out,
      '</svg>',
    ].join('\n') + '\n'
  );
}
