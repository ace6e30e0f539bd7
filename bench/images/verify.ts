/**
 * Checks that every workload of the built images runs and becomes ready, chrooted into the merged
 * layers (root needed), and optionally measures how much of the image each exit workload reads.
 *   node --import tsx bench/images/verify.ts [--measure] [name...]
 * --measure, per exit workload:
 *   opened: bytes of the distinct regular files it opened (strace -f -e openat), an upper bound;
 *   cached: bytes of those files resident in the page cache afterwards, with the whole tree
 *           evicted before the run (fincore), i.e. what was actually read (+ kernel readahead).
 */
import { spawn } from 'node:child_process';
import { existsSync, lstatSync, readFileSync, readlinkSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { buildBenchImage, IMAGE_NAMES, type BenchImage, type ImageName, type Workload } from './index.js';
import { materialize, withChrootMounts } from './rootfs.js';
import { fileBytes, mb, removeTree, run, sweepStale } from './sh.js';
import { benchArgs } from '../lib/args.js';

const { values: flags, positionals } = benchArgs({ options: { measure: { type: 'boolean', default: false } }, allowPositionals: true });
const measure = flags.measure;
const names = (positionals.length ? positionals : IMAGE_NAMES) as ImageName[];
const work = resolve('.bench-work');

function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer()
      .listen(0, '127.0.0.1', () => {
        const a = s.address();
        s.close(() => (a && typeof a === 'object' ? res(a.port) : rej(new Error('no port'))));
      })
      .on('error', rej);
  });
}

function imageEnv(img: BenchImage): Record<string, string> {
  const index = JSON.parse(readFileSync(join(img.layout, 'index.json'), 'utf8'));
  const blob = (d: string) => JSON.parse(readFileSync(join(img.layout, 'blobs/sha256', d.slice(7)), 'utf8'));
  const env: string[] = blob(blob(index.manifests[0].digest).config.digest).config.Env;
  return Object.fromEntries(env.map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]));
}

/** Runs one workload chrooted into root; resolves ms to ready. `wrap` prefixes the argv (strace). */
async function runWorkload(root: string, w: Workload, env: Record<string, string>, wrap: string[] = []): Promise<{ ms: number; out: string }> {
  const port = await freePort();
  const t0 = Date.now();
  const p = spawn(wrap.length ? wrap[0]! : 'chroot', [...wrap.slice(1), ...(wrap.length ? ['chroot'] : []), root, ...w.command(port)], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  p.stdout.on('data', (b: Buffer) => (out += b.toString()));
  p.stderr.on('data', (b: Buffer) => (out += b.toString()));
  const exited = new Promise<number | null>((r) => p.on('close', (code) => r(code)));
  if (w.ready.kind === 'exit') {
    const code = await exited;
    if (code !== 0) throw new Error(`${w.name} exited ${code}: ${out.slice(-1500)}`);
    return { ms: Date.now() - t0, out };
  }
  const url = `http://127.0.0.1:${port}${w.ready.path}`;
  let gone = false;
  void exited.then(() => (gone = true));
  try {
    for (;;) {
      if (gone) throw new Error(`${w.name} exited before ready: ${out.slice(-1500)}`);
      if (Date.now() - t0 > 120_000) throw new Error(`${w.name}: not ready after 120 s`);
      const ok = await fetch(url).then(
        (r) => r.status === 200,
        () => false,
      );
      if (ok) return { ms: Date.now() - t0, out };
      await new Promise((r) => setTimeout(r, 20));
    }
  } finally {
    p.kill('SIGTERM');
    await exited;
  }
}

/** A path as the chrooted process saw it → the host path of the file it names (symlinks resolved inside root). */
function inRoot(root: string, path: string): string | undefined {
  let p = path;
  for (let hops = 0; hops < 40; hops++) {
    const host = join(root, p);
    if (!existsSync(host)) return undefined;
    const st = lstatSync(host);
    if (!st.isSymbolicLink()) return st.isFile() ? host : undefined;
    const t = readlinkSync(host);
    p = isAbsolute(t) ? t : join(dirname(p), t);
  }
  return undefined;
}

async function residentBytes(files: string[]): Promise<number> {
  let total = 0;
  for (let i = 0; i < files.length; i += 500) {
    const out = await run(['fincore', '--bytes', '--noheadings', '--raw', '--output', 'RES', ...files.slice(i, i + 500)]);
    for (const l of out.split('\n')) if (l.trim()) total += Number(l.trim());
  }
  return total;
}

async function measureReads(root: string, w: Workload, env: Record<string, string>, denominator: number): Promise<string> {
  // evict the whole tree (after flushing it: dirty pages cannot be dropped)
  await run(['sync', '-f', root]);
  await run(['sh', '-c', 'find "$0" -xdev -type f -exec sh -c \'for f; do dd if="$f" iflag=nocache count=0 status=none; done\' sh {} +', root]);
  const log = join(dirname(root), `strace-${w.name}.log`);
  await runWorkload(root, w, env, ['strace', '-f', '-qq', '-e', 'trace=openat,open', '-o', log]);
  const opened = new Map<string, number>();
  for (const line of readFileSync(log, 'utf8').split('\n')) {
    const m = /open(?:at)?\((?:[^,]*, )?"([^"]+)".*\) = \d+/.exec(line);
    if (!m || !m[1]!.startsWith('/') || m[1]!.startsWith('/proc/') || m[1]!.startsWith('/dev/')) continue;
    const host = inRoot(root, m[1]!);
    if (host) opened.set(host, lstatSync(host).size);
  }
  const openedBytes = [...opened.values()].reduce((a, b) => a + b, 0);
  const cached = await residentBytes([...opened.keys()]);
  const pct = (n: number) => `${((100 * n) / denominator).toFixed(1)} %`;
  return `opened ${opened.size} files, ${mb(openedBytes)} MB = ${pct(openedBytes)}; read (page cache) ${mb(cached)} MB = ${pct(cached)} of ${mb(denominator)} MB file bytes`;
}

const scratch = join(work, 'images', `.verify-${process.pid}`);
await sweepStale(join(work, 'images'));
let failed = 0;
try {
  for (const name of names) {
    const img = await buildBenchImage(name, work);
    const root = join(scratch, name);
    await materialize(
      img.layers.map((l) => join(img.layout, 'blobs/sha256', l.digest.slice(7))),
      root,
    );
    const fb = await fileBytes(root);
    console.log(`${name}: ${fb.files} files, ${mb(fb.bytes)} MB file bytes, ${mb(img.uncompressedBytes)} MB tar`);
    const env = imageEnv(img);
    await withChrootMounts(root, async () => {
      for (const w of img.workloads) {
        try {
          const r = await runWorkload(root, w, env);
          const last = r.out.trim().split('\n').pop()?.slice(0, 140) ?? '';
          console.log(`  ok ${w.name}: ready in ${r.ms} ms${last ? `  | ${last}` : ''}`);
          if (measure && w.ready.kind === 'exit') console.log(`     ${await measureReads(root, w, env, fb.bytes)}`);
        } catch (e) {
          failed++;
          console.log(`  FAIL ${w.name}: ${(e as Error).message}`);
        }
      }
    });
    await removeTree(root);
  }
} finally {
  await removeTree(scratch);
}
process.exit(failed ? 1 : 0);
