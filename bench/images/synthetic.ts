/**
 * fat-sparse: deterministic synthetic bulk (many files of 256 KiB–8 MiB, ~1.5 MB on average) and
 * the read lists of its workloads.
 *
 * Content per file is either incompressible ("bin": an AES-128-CTR keystream, like media or
 * already-compressed archives) or log-like text built from a fixed vocabulary (~3.8× with gzip -6).
 * 40 % bin / 60 % log files gives ~1.8× for the whole image. Everything derives from fixed seeds:
 * the plan (names, sizes, kinds) can be recomputed without reading the files.
 */
import { createCipheriv, createHash } from 'node:crypto';
import { closeSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { xorshift32 as xorshift } from '../../harness/random.js';

export interface SynthFile {
  path: string;
  size: number;
  kind: 'bin' | 'log';
}

const pad = (n: number, w: number) => String(n).padStart(w, '0');

/**
 * The files of bulk layer `layer` (1-based) adding up to ≥ targetBytes, in tar order (zero-padded
 * names sort like the plan). Sizes: 256 KiB × 32^(u²), u uniform → 256 KiB–8 MiB, skewed small.
 */
export function layerPlan(layer: number, targetBytes: number): SynthFile[] {
  const rnd = xorshift(0x9e3779b9 ^ (layer * 7919));
  const files: SynthFile[] = [];
  let total = 0;
  for (let i = 0; total < targetBytes; i++) {
    const u = rnd() / 2 ** 32;
    const size = Math.round(256 * 1024 * 32 ** (u * u));
    const kind = rnd() % 10 < 4 ? 'bin' : 'log';
    files.push({ path: `data/part${layer}/d${pad(Math.floor(i / 32), 2)}/f${pad(i, 4)}.${kind}`, size, kind });
    total += size;
  }
  return files;
}

// Shared vocabulary: 4096 pseudo-words, 512 line templates of 4–12 words each.
const vocabRnd = xorshift(12345);
const vocab: string[] = [];
for (let i = 0; i < 4096; i++) {
  let s = '';
  const n = 3 + (vocabRnd() % 8);
  for (let k = 0; k < n; k++) s += String.fromCharCode(97 + (vocabRnd() % 26));
  vocab.push(s);
}
const templates: Buffer[] = [];
for (let j = 0; j < 512; j++) {
  const words: string[] = [];
  for (let w = 4 + (vocabRnd() % 9); w > 0; w--) words.push(vocab[vocabRnd() % 4096]!);
  templates.push(Buffer.from(words.join(' ') + ' ', 'latin1'));
}
const levels = ['INFO  ', 'DEBUG ', 'WARN  ', 'ERROR '].map((s) => Buffer.from(s, 'latin1'));
const HEX = Buffer.from('0123456789abcdef', 'latin1');

/** Log-like lines: "<epoch> <LEVEL> <template words> id=<4 hex>\n", templates Zipf-ish skewed. */
function logChunks(seed: number, size: number, emit: (b: Buffer) => void): void {
  const rnd = xorshift(seed);
  const chunk = Buffer.alloc((1 << 20) + 512);
  let ts = 1_700_000_000 + (seed % 1_000_000);
  let left = size;
  while (left > 0) {
    let i = 0;
    while (i < 1 << 20) {
      ts += rnd() % 3;
      i += chunk.write(String(ts), i, 'latin1');
      chunk[i++] = 32;
      const lv = levels[(rnd() & 15) < 12 ? 0 : rnd() & 3]!;
      i += lv.copy(chunk, i);
      const r = rnd() / 2 ** 32;
      i += templates[Math.floor(512 * r * r)]!.copy(chunk, i);
      i += chunk.write('id=', i, 'latin1');
      for (let k = 0; k < 4; k++) chunk[i++] = HEX[rnd() & 15]!;
      chunk[i++] = 10;
    }
    const n = Math.min(left, i);
    emit(chunk.subarray(0, n));
    left -= n;
  }
}

/** AES-128-CTR keystream keyed by the file path: incompressible, fast, deterministic. */
function binChunks(path: string, size: number, emit: (b: Buffer) => void): void {
  const key = createHash('sha256').update(path).digest().subarray(0, 16);
  const c = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  const zeros = Buffer.alloc(1 << 20);
  for (let left = size; left > 0; left -= zeros.length) emit(c.update(left >= zeros.length ? zeros : zeros.subarray(0, left)));
}

/** Writes the plan's files below root. */
export function writePlan(root: string, plan: SynthFile[]): void {
  for (const f of plan) {
    const p = join(root, f.path);
    mkdirSync(dirname(p), { recursive: true });
    const fd = openSync(p, 'w', 0o644);
    try {
      const emit = (b: Buffer) => {
        for (let off = 0; off < b.length; ) off += writeSync(fd, b, off);
      };
      if (f.kind === 'bin') binChunks(f.path, f.size, emit);
      else logChunks(parseInt(createHash('sha256').update(f.path).digest('hex').slice(0, 8), 16), f.size, emit);
    } finally {
      closeSync(fd);
    }
  }
}

export interface ReadList {
  name: string;
  files: string[];
  bytes: number;
  fraction: number;
  detail: string;
}

/**
 * A run of consecutive files (tar order) of one layer, starting about a third into it, whose
 * total is closest to target (start chosen among the next 64 files).
 */
export function clusteredList(name: string, layerFiles: SynthFile[], target: number, denominator: number): ReadList {
  let best = { s: 0, e: 0, sum: 0, err: Infinity };
  const from = Math.floor(layerFiles.length / 3);
  for (let s = from; s < Math.min(from + 64, layerFiles.length); s++) {
    let sum = 0;
    for (let e = s; e < layerFiles.length; e++) {
      sum += layerFiles[e]!.size;
      const err = Math.abs(sum - target);
      if (err < best.err) best = { s, e: e + 1, sum, err };
      if (sum >= target) break;
    }
  }
  const files = layerFiles.slice(best.s, best.e).map((f) => '/' + f.path);
  return {
    name,
    files,
    bytes: best.sum,
    fraction: best.sum / denominator,
    detail: `${files.length} consecutive files ${files[0]} … ${files[files.length - 1]}`,
  };
}

/** Files drawn with a seeded shuffle across all bulk layers until the total is within ±2 % of target. */
export function scatteredList(name: string, all: SynthFile[], target: number, denominator: number, seed: number): ReadList {
  const rnd = xorshift(seed);
  const order = all.map((_, i) => i);
  for (let i = order.length - 1; i > 0; i--) {
    const j = rnd() % (i + 1);
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  const files: string[] = [];
  let sum = 0;
  for (const i of order) {
    if (sum >= target * 0.98) break;
    if (sum + all[i]!.size > target * 1.02) continue;
    files.push('/' + all[i]!.path);
    sum += all[i]!.size;
  }
  return { name, files, bytes: sum, fraction: sum / denominator, detail: `${files.length} files picked at random across all bulk layers` };
}
