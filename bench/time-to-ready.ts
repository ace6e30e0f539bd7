/**
 * Time-to-ready, full pull vs lazy (a first, unshaped cut of issue 6's experiment): an echo-like image
 * = the three real-file bulk layers of bench/convert.ts (543 MB compressed, never read) + a small app
 * layer (busybox httpd). Each sample starts a fresh containerd + snapshotter (cold caches), then times
 * CRI PullImage → `ctr run` → first HTTP 200, like the seed's check_running_time.sh.
 *   full: CRI snapshotter overlayfs (containerd downloads and unpacks everything)
 *   lazy: CRI snapshotter soci (our daemon; index from `soci convert`)
 * Usage (root): node --import tsx bench/time-to-ready.ts [--samples 5]
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync, existsSync, cpSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { appCommand, APP_INDEX_HTML } from '../test/helpers/app-image.js';
import { removeTree, startContainerd, startSnapshotter } from '../test/helpers/containerd.js';
import { criPull } from '../test/helpers/cri.js';
import { makeLayerTar } from '../test/helpers/images.js';
import { freePort, startRegistry } from '../test/helpers/registry.js';
import { buildImage } from './convert.js';

const exec = promisify(execFile);
const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const arg = (n: string, d: string) => (process.argv.includes(`--${n}`) ? process.argv[process.argv.indexOf(`--${n}`) + 1]! : d);
const work = resolve('.bench-work');

/** The bulk image of bench/convert.ts plus an app layer on top (cached). */
async function echoImage(): Promise<string> {
  const bulk = join(work, 'convert-image');
  await buildImage(bulk);
  const dir = join(work, 'echo-image');
  if (existsSync(join(dir, 'index.json'))) return dir;
  cpSync(bulk, dir, { recursive: true });
  const idx = JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8'));
  const mPath = join(dir, 'blobs', 'sha256', idx.manifests[0].digest.slice(7));
  const m = JSON.parse(readFileSync(mPath, 'utf8'));
  const cfg = JSON.parse(readFileSync(join(dir, 'blobs', 'sha256', m.config.digest.slice(7)), 'utf8'));
  const tar = makeLayerTar({ files: { 'bin/busybox': { content: readFileSync('/bin/busybox'), mode: 0o755 }, 'www/index.html': APP_INDEX_HTML } });
  const layer = await new Promise<Buffer>((res, rej) => {
    const p = execFile('gzip', ['-n', '-6'], { encoding: 'buffer', maxBuffer: 1 << 28 }, (e, out) => (e ? rej(e) : res(out as Buffer)));
    p.stdin!.end(tar);
  });
  writeFileSync(join(dir, 'blobs', 'sha256', sha(layer).slice(7)), layer);
  m.layers.push({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: sha(layer), size: layer.length });
  cfg.rootfs.diff_ids.push(sha(tar));
  const cfgBytes = Buffer.from(JSON.stringify(cfg));
  writeFileSync(join(dir, 'blobs', 'sha256', sha(cfgBytes).slice(7)), cfgBytes);
  m.config = { ...m.config, digest: sha(cfgBytes), size: cfgBytes.length };
  const mBytes = Buffer.from(JSON.stringify(m));
  writeFileSync(join(dir, 'blobs', 'sha256', sha(mBytes).slice(7)), mBytes);
  idx.manifests[0] = { ...idx.manifests[0], digest: sha(mBytes), size: mBytes.length };
  writeFileSync(join(dir, 'index.json'), JSON.stringify(idx));
  return dir;
}

async function sample(mode: 'full' | 'lazy', reg: { host: string }, image: string): Promise<{ pull: number; ready: number }> {
  const cleanups: Array<() => unknown> = [];
  const t = { after: (fn: () => unknown) => void cleanups.push(fn) };
  const dir = await mkdtemp(join(tmpdir(), 'soci-ttr-'));
  try {
    const sn = await startSnapshotter(t, { dir, config: '[background_fetch]\ndisable = true\n', logLevel: 'info' });
    const snapshotter = mode === 'full' ? 'overlayfs' : 'soci';
    const cd = await startContainerd(t, {
      snapshotterSocket: sn.address,
      cri: true,
      criSnapshotter: snapshotter,
      extraToml: `[plugins."io.containerd.grpc.v1.cri".registry.mirrors."${reg.host}"]\n  endpoint = ["http://${reg.host}"]\n`,
    });
    const port = await freePort();
    const id = `ttr${port}`;
    const t0 = performance.now();
    await criPull(cd.address, image);
    const pull = performance.now() - t0;
    const r = await cd.ctr(['-n', 'k8s.io', 'run', '-d', '--net-host', '--snapshotter', snapshotter, image, id, ...appCommand(port)]);
    if (r.code !== 0) throw new Error(r.stderr);
    cleanups.push(async () => {
      await cd.ctr(['-n', 'k8s.io', 'task', 'kill', '-s', 'SIGKILL', id]);
      await new Promise((res) => setTimeout(res, 300));
      await cd.ctr(['-n', 'k8s.io', 'task', 'rm', '-f', id]);
    });
    while (!(await exec('curl', ['-sf', '--max-time', '2', `http://127.0.0.1:${port}/index.html`]).then(() => true, () => false))) {
      await new Promise((res) => setTimeout(res, 20));
    }
    return { pull, ready: performance.now() - t0 };
  } finally {
    for (const f of cleanups.reverse()) await Promise.resolve(f()).catch(() => undefined);
    await removeTree(dir).catch(() => undefined);
  }
}

async function main() {
  const samples = Number(arg('samples', '5'));
  mkdirSync(work, { recursive: true });
  const layout = await echoImage();
  const cleanups: Array<() => unknown> = [];
  const reg = await startRegistry({ after: (fn) => void cleanups.push(fn) });
  try {
    await exec('skopeo', ['copy', '--dest-tls-verify=false', `oci:${layout}:latest`, `docker://${reg.host}/echo:v1`], { maxBuffer: 1 << 26 });
    await exec(process.execPath, ['bin/soci.js', '--root', join(work, 'ttr-soci-root'), 'convert', '-q', `${reg.host}/echo:v1`, `${reg.host}/echo:soci`]);
    const res: Record<'full' | 'lazy', Array<{ pull: number; ready: number }>> = { full: [], lazy: [] };
    for (let i = 0; i < samples; i++) {
      for (const mode of (Math.random() < 0.5 ? ['full', 'lazy'] : ['lazy', 'full']) as Array<'full' | 'lazy'>) {
        res[mode].push(await sample(mode, reg, `${reg.host}/echo:${mode === 'full' ? 'v1' : 'soci'}`));
      }
    }
    const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const p90 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.ceil(xs.length * 0.9) - 1)]!;
    console.log(`image: 543 MB compressed bulk (3 layers, never read) + busybox httpd layer; ${samples} cold samples per mode, order randomised; unshaped loopback`);
    console.log('| mode | pull p50 s | time-to-ready p50 s | p90 s | samples (ready, s) |');
    console.log('|---|---|---|---|---|');
    for (const m of ['full', 'lazy'] as const) {
      const ready = res[m].map((x) => x.ready / 1000);
      console.log(`| ${m} | ${(med(res[m].map((x) => x.pull)) / 1000).toFixed(2)} | ${med(ready).toFixed(2)} | ${p90(ready).toFixed(2)} | ${ready.map((x) => x.toFixed(2)).join(' / ')} |`);
    }
    console.log(`lazy ÷ full (p50 time-to-ready) = ${(med(res.lazy.map((x) => x.ready)) / med(res.full.map((x) => x.ready))).toFixed(3)}`);
  } finally {
    for (const f of cleanups.reverse()) await Promise.resolve(f()).catch(() => undefined);
  }
}

main().then(() => process.exit(0), (e) => (console.error(e), process.exit(1)));
