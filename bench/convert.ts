/**
 * Registry → registry `soci convert` vs its two components, on loopback, for a ≥ 500 MB multi-layer
 * image made of real files from this machine (/usr/local/go, /usr/share, /usr/lib/x86_64-linux-gnu):
 *   (a) plain download of every layer blob (our registry client, 2 in parallel, bytes discarded)
 *   (b) `soci convert --standalone` of the same image from an OCI layout on disk
 *   (c) `soci convert SRC DST` straight from the registry to another repository of it
 *   (d) `soci create` of the layout (peak RSS target ≤ 250 MB whatever the layer size)
 * Round-robin, N rounds, medians. Target: c ≤ 1.1 × max(a, b); peak RSS of c ≤ 300 MB.
 * Usage: node --import tsx bench/convert.ts [--rounds 3] [--work .bench-work]
 */
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { RegistryClient } from '../src/registry/index.js';
import { writeLayout } from '../harness/layout.js';
import { digestOf } from '../src/oci/digest.js';
import { benchArgs } from './lib/args.js';
import { median } from './lib/stats.js';

const exec = promisify(execFile);
const { values: flags } = benchArgs({ options: { rounds: { type: 'string', default: '3' }, work: { type: 'string', default: '.bench-work' } }, strict: false });
const rounds = Number(flags.rounds);
const work = resolve(String(flags.work));
const SOCI = resolve('bin/soci.js');
const SOURCES = ['/usr/local/go', '/usr/share', '/usr/lib/x86_64-linux-gnu'];

export async function buildImage(dir: string): Promise<{ layers: Array<{ digest: string; size: number }> }> {
  const stamp = join(dir, 'built.json');
  if (existsSync(stamp)) return JSON.parse(readFileSync(stamp, 'utf8'));
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const blobs: Array<{ file: string; digest: string; size: number; diffId: string }> = [];
  for (const [i, src] of SOURCES.entries()) {
    const tmp = join(dir, `layer${i}.tar.gz`);
    // tar | tee(hash) | pigz: deterministic (sorted, fixed mtime), real file mix
    await exec(
      'bash',
      [
        '-c',
        `set -o pipefail; tar --sort=name --mtime=@1700000000 --owner=0 --group=0 --numeric-owner -C / -cf - ${src.slice(1)} 2>/dev/null | tee >(sha256sum > ${tmp}.diffid) | pigz -n -6 > ${tmp}`,
      ],
      { maxBuffer: 1 << 20 },
    );
    const gz = { file: tmp, digest: digestOf(readFileSync(tmp)), size: statSync(tmp).size };
    await new Promise((r) => setTimeout(r, 200));
    const diffId = `sha256:${readFileSync(`${tmp}.diffid`, 'utf8').split(' ')[0]}`;
    rmSync(`${tmp}.diffid`);
    blobs.push({ diffId, ...gz });
  }
  writeLayout(dir, [{ layers: blobs.map((b) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', ...b })), config: { config: {} } }]);
  for (const b of blobs) rmSync(b.file);
  const out = { layers: blobs.map(({ digest, size }) => ({ digest, size })) };
  writeFileSync(stamp, JSON.stringify(out));
  return out;
}

async function startRegistry(root: string): Promise<{ host: string; stop: () => void }> {
  const port = 20000 + Math.floor(Math.random() * 20000);
  mkdirSync(root, { recursive: true });
  const cfg = join(root, 'config.yml');
  writeFileSync(
    cfg,
    `version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: ${root}/data\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:${port}\n`,
  );
  const p = spawn('docker-registry', ['serve', cfg], { stdio: 'ignore' });
  for (let i = 0; i < 100; i++) {
    try {
      await exec('curl', ['-sf', `http://127.0.0.1:${port}/v2/`]);
      return { host: `127.0.0.1:${port}`, stop: () => p.kill('SIGTERM') };
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new Error('registry did not start');
}

/** wall seconds and peak RSS (MB) of a command, via GNU time */
async function timed(cmd: string, args: string[]): Promise<{ s: number; rssMb: number }> {
  const { stderr } = await exec('/usr/bin/time', ['-f', 'TIME %e %M', cmd, ...args], { maxBuffer: 1 << 26 });
  const m = /TIME ([\d.]+) (\d+)/.exec(stderr)!;
  return { s: Number(m[1]), rssMb: Number(m[2]) / 1024 };
}

async function download(host: string, layers: Array<{ digest: string; size: number }>): Promise<number> {
  const c = new RegistryClient({ registry: host, plainHttp: true });
  const t0 = performance.now();
  let next = 0;
  const worker = async () => {
    while (next < layers.length) {
      const l = layers[next++]!;
      for await (const _ of c.fetchBlob('bench/src', l.digest, { size: l.size })) void _;
    }
  };
  await Promise.all([worker(), worker()]);
  await c.close();
  return (performance.now() - t0) / 1000;
}

async function main() {
  mkdirSync(work, { recursive: true });
  const layout = join(work, 'convert-image');
  console.error('building the image (cached after the first run)…');
  const img = await buildImage(layout);
  const total = img.layers.reduce((n, l) => n + l.size, 0);
  const reg = await startRegistry(join(work, `registry-${process.pid}`));
  try {
    await exec('skopeo', ['copy', '--dest-tls-verify=false', `oci:${layout}:latest`, `docker://${reg.host}/bench/src:latest`], { maxBuffer: 1 << 26 });
    const r: Record<'a' | 'b' | 'c' | 'd', number[]> = { a: [], b: [], c: [], d: [] };
    const rss: Record<'b' | 'c' | 'd', number[]> = { b: [], c: [], d: [] };
    for (let i = 0; i < rounds; i++) {
      const order = ['a', 'b', 'c', 'd'].sort(() => Math.random() - 0.5);
      for (const k of order) {
        const root = join(work, `root-${k}-${i}`);
        rmSync(root, { recursive: true, force: true });
        if (k === 'a') r.a.push(await download(reg.host, img.layers));
        if (k === 'b') {
          const t = await timed(process.execPath, [
            SOCI,
            '--root',
            root,
            'convert',
            '-q',
            '--standalone',
            '--format',
            'oci-dir',
            layout,
            join(work, `out-${i}`),
          ]);
          r.b.push(t.s);
          rss.b.push(t.rssMb);
          rmSync(join(work, `out-${i}`), { recursive: true, force: true });
        }
        if (k === 'c') {
          const t = await timed(process.execPath, [
            SOCI,
            '--root',
            root,
            'convert',
            '--remote',
            '-q',
            `${reg.host}/bench/src:latest`,
            `${reg.host}/bench/dst:r${i}`,
          ]);
          r.c.push(t.s);
          rss.c.push(t.rssMb);
        }
        if (k === 'd') {
          const t = await timed(process.execPath, [SOCI, '--root', root, 'create', '-q', `oci:${layout}`]);
          r.d.push(t.s);
          rss.d.push(t.rssMb);
        }
        rmSync(root, { recursive: true, force: true });
      }
    }
    const a = median(r.a),
      b = median(r.b),
      c = median(r.c),
      d = median(r.d);
    const lines = [
      `image: ${img.layers.length} gzip layers, ${(total / 1e6).toFixed(0)} MB compressed (${SOURCES.join(', ')}); ${rounds} rounds, medians`,
      '',
      '| step | wall s (median) | runs | MB/s (compressed) | peak RSS MB |',
      '|---|---|---|---|---|',
      `| (a) plain download of the layer blobs | ${a.toFixed(2)} | ${r.a.map((x) => x.toFixed(2)).join(' / ')} | ${(total / 1e6 / a).toFixed(0)} | – |`,
      `| (b) convert --standalone (layout on disk) | ${b.toFixed(2)} | ${r.b.map((x) => x.toFixed(2)).join(' / ')} | ${(total / 1e6 / b).toFixed(0)} | ${median(rss.b).toFixed(0)} |`,
      `| (c) convert registry → registry | ${c.toFixed(2)} | ${r.c.map((x) => x.toFixed(2)).join(' / ')} | ${(total / 1e6 / c).toFixed(0)} | ${median(rss.c).toFixed(0)} |`,
      `| (d) soci create (layout, v1) | ${d.toFixed(2)} | ${r.d.map((x) => x.toFixed(2)).join(' / ')} | ${(total / 1e6 / d).toFixed(0)} | ${median(rss.d).toFixed(0)} |`,
      '',
      `c ÷ max(a, b) = ${(c / Math.max(a, b)).toFixed(2)} (target ≤ 1.10); peak RSS of c ${median(rss.c).toFixed(0)} MB (target ≤ 300); of d ${median(rss.d).toFixed(0)} MB (target ≤ 250)`,
    ];
    console.log(lines.join('\n'));
  } finally {
    reg.stop();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
