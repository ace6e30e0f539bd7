/**
 * Checkpoint-engine benchmark: node --import tsx bench/compression.ts [--size-mb 550] [--rounds 3] [--cache-dir DIR]
 *
 * Builds (once, cached) a realistic ≥ size-mb uncompressed tar — shared libraries, text from
 * /usr/share and Go sources, some random data — compressed with `gzip -6 -n`, then reports the
 * median and best MB/s (10^6 B of uncompressed output per second; CPU-second rates count all threads) of: node:zlib createGunzip (chunkSize
 * 1 MiB), `gzip -dc`, our indexer on the native and the JS engine (each in a fresh child process,
 * streaming from disk, with its peak RSS), and extractSpans over every span (checked by sha256).
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, lstatSync, openSync, readSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Readable, Writable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { createLayerIndexer, extractSpans, nativeAvailable, parseCheckpoints } from '../src/compression/index.js';
import type { EngineName, IndexResult } from '../src/compression/index.js';
import { benchArgs } from './lib/args.js';
import { median } from './lib/stats.js';

const root = resolve(import.meta.dirname, '..');
const { values: flags } = benchArgs({
  options: {
    child: { type: 'string', default: '' },
    file: { type: 'string', default: '' },
    'size-mb': { type: 'string', default: '550' },
    rounds: { type: 'string', default: '3' },
    'cache-dir': { type: 'string', default: '' },
  },
});
const opt = (name: keyof typeof flags, def: string): string => flags[name] || def;
const SPAN = 4 << 20;

/** Child mode: index one file with one engine, print {seconds, out, maxRssMB}. */
async function child(file: string, engine: EngineName): Promise<void> {
  let out = 0;
  const ix = createLayerIndexer({ compression: 'gzip', spanSize: SPAN, engine, onData: (b) => (out += b.length) });
  // Only the indexer is timed (like node:zlib, which inflates from memory): reads are excluded.
  // One reused read buffer: the indexer never keeps its input (this is how a CLI reads a local blob).
  let ns = 0n;
  let cpu = 0;
  const timed = (f: () => void): void => {
    const c0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    f();
    ns += process.hrtime.bigint() - t0;
    cpu += cpuSince(c0);
  };
  const fd = openSync(file, 'r');
  const buf = Buffer.allocUnsafe(1 << 20);
  for (let n; (n = readSync(fd, buf, 0, buf.length, null)) > 0; ) {
    const chunk = buf.subarray(0, n);
    timed(() => ix.write(chunk));
  }
  closeSync(fd);
  let r!: IndexResult;
  timed(() => (r = ix.end()));
  const seconds = Number(ns) / 1e9;
  writeFileSync(`${file}.${engine}.zinfo`, r.checkpoints);
  console.log(JSON.stringify({ seconds, cpu, out, spans: r.maxSpanId + 1, maxRssMB: peakRssMB() }));
}

/**
 * VmHWM of this process. (getrusage's maxRSS is useless in a spawned child: Linux carries the
 * parent's high-water mark across fork+exec.)
 */
function peakRssMB(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) / 1024 : process.resourceUsage().maxRSS / 1024;
}

function collect(dir: string, quota: number, picked: string[]): number {
  let total = 0;
  const walk = (d: string): void => {
    let names: string[];
    try {
      names = readdirSync(d).sort();
    } catch {
      return;
    }
    for (const n of names) {
      if (total >= quota) return;
      const p = join(d, n);
      let st;
      try {
        st = lstatSync(p, { throwIfNoEntry: false }); // symlinks are not file data in the tar
      } catch {
        continue;
      }
      if (!st) continue;
      if (st.isDirectory()) walk(p);
      else if (st.isFile() && st.size < 64 << 20) {
        picked.push(relative('/', p));
        total += st.size;
      }
    }
  };
  walk(dir);
  return total;
}

function build(cache: string, sizeMB: number): string {
  const gz = join(cache, `layer-${sizeMB}.tar.gz`);
  if (existsSync(gz)) return gz;
  mkdirSync(cache, { recursive: true });
  const target = sizeMB * 1e6;
  const picked: string[] = [];
  let got = 0;
  for (const [dir, share] of [
    ['/usr/lib', 0.45],
    ['/usr/share', 0.22],
    ['/usr/local/go', 0.13],
    ['/usr/bin', 0.12],
  ] as const) {
    got += collect(dir, target * share, picked);
  }
  // the rest: incompressible data (stored blocks), in a few files
  const rnd = join(cache, 'random');
  mkdirSync(rnd, { recursive: true });
  const need = Math.max(target - got, target * 0.06);
  for (let i = 0; i * 16e6 < need; i++) {
    const f = join(rnd, `blob-${i}.bin`);
    const n = Math.min(16e6, need - i * 16e6);
    if (!existsSync(f)) writeFileSync(f, randomFill(n, i));
    picked.push(relative('/', f));
  }
  const list = join(cache, 'files.txt');
  writeFileSync(list, picked.join('\n'));
  const tar = join(cache, `layer-${sizeMB}.tar`);
  const t = spawnSync('tar', ['cf', tar, '-C', '/', '-T', list], { stdio: 'inherit' });
  if (t.status !== 0 && t.status !== 1) throw new Error('tar failed');
  console.error(`built ${tar}: ${(statSync(tar).size / 1e6).toFixed(0)} MB; compressing with gzip -6 -n …`);
  const z = spawnSync('sh', ['-c', `gzip -6 -n -c '${tar}' > '${gz}.tmp' && mv '${gz}.tmp' '${gz}' && rm -f '${tar}'`], { stdio: 'inherit' });
  if (z.status !== 0) throw new Error('gzip failed');
  return gz;
}

function randomFill(n: number, seed: number): Uint8Array {
  // counter-mode sha256: fast enough and deterministic
  const out = new Uint8Array(n);
  for (let o = 0, c = 0; o < n; c++) {
    const h = createHash('sha256').update(`${seed}:${c}`).digest();
    out.set(h.subarray(0, Math.min(32, n - o)), o);
    o += 32;
  }
  return out;
}

function cpuSince(c0: NodeJS.CpuUsage): number {
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / 1e6;
}

interface Timing {
  seconds: number;
  cpu: number;
}

async function nodeGunzip(blob: Buffer): Promise<Timing & { out: number }> {
  let out = 0;
  const t0 = process.hrtime.bigint();
  const c0 = process.cpuUsage();
  await pipeline(
    Readable.from(
      (function* () {
        for (let o = 0; o < blob.length; o += 1 << 20) yield blob.subarray(o, o + (1 << 20));
      })(),
    ),
    createGunzip({ chunkSize: 1 << 20 }),
    new Writable({
      write(c: Buffer, _e, cb) {
        out += c.length;
        cb();
      },
    }),
  );
  return { seconds: Number(process.hrtime.bigint() - t0) / 1e9, cpu: cpuSince(c0), out };
}

function gzipDc(file: string): Timing {
  const t0 = process.hrtime.bigint();
  // bash's `time` gives the child's user+sys CPU seconds
  const r = spawnSync('bash', ['-c', `TIMEFORMAT='%U %S'; time gzip -dc '${file}' > /dev/null`], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error('gzip -dc failed');
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const [u, sy] = r.stderr.trim().split('\n').pop()!.split(' ').map(Number);
  return { seconds, cpu: u! + sy! };
}

function indexInChild(file: string, engine: EngineName): Timing & { out: number; spans: number; maxRssMB: number } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'bench/compression.ts'), '--child', engine, '--file', file], {
    encoding: 'utf8',
    cwd: root,
  });
  if (r.status !== 0) throw new Error(`indexer child failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

async function main(): Promise<void> {
  const childEngine = opt('child', '');
  if (childEngine) return child(opt('file', ''), childEngine as EngineName);
  const sizeMB = Number(opt('size-mb', '550'));
  const rounds = Number(opt('rounds', '3'));
  const cache = resolve(opt('cache-dir', join(root, '.bench-work/compression')));
  const file = build(cache, sizeMB);
  const blob = readFileSync(file);
  const engines: EngineName[] = nativeAvailable() ? ['native', 'js'] : ['js'];
  const rows = new Map<string, Timing[]>();
  const add = (k: string, v: Timing) => rows.set(k, [...(rows.get(k) ?? []), v]);
  let usize = 0;
  const rss = new Map<string, number>();
  for (let r = 0; r < rounds; r++) {
    const g = await nodeGunzip(blob);
    usize = g.out;
    add('node:zlib createGunzip (chunkSize 1 MiB)', g);
    add('gzip -dc', gzipDc(file));
    for (const e of engines) {
      const x = indexInChild(file, e);
      if (x.out !== usize) throw new Error(`${e} indexer produced ${x.out} bytes, expected ${usize}`);
      add(`indexer, ${e} engine (+ span digests)`, x);
      rss.set(e, Math.max(rss.get(e) ?? 0, x.maxRssMB));
    }
  }
  const zinfo = readFileSync(`${file}.${engines[0]}.zinfo`);
  if (engines.length === 2 && !zinfo.equals(readFileSync(`${file}.js.zinfo`))) throw new Error('native and js checkpoints differ');
  const table = parseCheckpoints(zinfo, 'gzip', blob.length, usize);
  // extraction: every span, sequentially, checked against the whole stream's sha256
  const want = createHash('sha256');
  await pipeline(Readable.from([blob]), createGunzip({ chunkSize: 1 << 20 }), new Writable({ write: (c: Buffer, _e, cb) => (want.update(c), cb()) }));
  const wantHex = want.digest('hex');
  for (let r = 0; r < rounds; r++) {
    const got = createHash('sha256');
    let secs = 0;
    let cpu = 0;
    for (const s of table.spans) {
      const t0 = process.hrtime.bigint();
      const c0 = process.cpuUsage();
      const out = await extractSpans(table, s.id, s.id, blob.subarray(s.cStart, s.cEnd));
      secs += Number(process.hrtime.bigint() - t0) / 1e9;
      cpu += cpuSince(c0);
      got.update(out);
    }
    if (got.digest('hex') !== wantHex) throw new Error('extracted spans differ from the layer');
    add(`extractSpans, all ${table.spans.length} spans (node:zlib async)`, { seconds: secs, cpu });
  }
  const mbs = (s: number) => usize / 1e6 / s;
  const wall = (k: string) => mbs(median(rows.get(k)!.map((t) => t.seconds)));
  const perCpu = (k: string) => mbs(median(rows.get(k)!.map((t) => t.cpu)));
  const best = (k: string) => mbs(Math.min(...rows.get(k)!.map((t) => t.seconds)));
  const baseKey = 'node:zlib createGunzip (chunkSize 1 MiB)';
  console.log(
    `\nInput: ${(usize / 1e6).toFixed(1)} MB tar, ${(blob.length / 1e6).toFixed(1)} MB gzip -6 (${((100 * blob.length) / usize).toFixed(1)} %), span 4 MiB, ${table.spans.length} spans; median of ${rounds}; Node ${process.version}, zlib ${process.versions.zlib}; load average ${loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')}\n`,
  );
  console.log('| decoder | MB/s (wall, median) | MB/s (wall, best) | MB/s per CPU-second | vs node:zlib (median wall / CPU) | peak RSS |');
  console.log('|---|---|---|---|---|---|');
  for (const k of rows.keys()) {
    const e = k.includes('native') ? 'native' : k.includes(' js ') ? 'js' : '';
    const r = e ? `${rss.get(e)!.toFixed(0)} MB` : '';
    const rel = `${((100 * wall(k)) / wall(baseKey)).toFixed(0)} % / ${((100 * perCpu(k)) / perCpu(baseKey)).toFixed(0)} %`;
    console.log(`| ${k} | ${wall(k).toFixed(0)} | ${best(k).toFixed(0)} | ${perCpu(k).toFixed(0)} | ${rel} | ${r} |`);
  }
}

await main();
