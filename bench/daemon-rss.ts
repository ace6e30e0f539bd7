/**
 * Daemon memory with N lazily mounted images: N distinct app images (busybox httpd + bulk) are
 * converted, pulled through containerd's CRI with our snapshotter, and each container started once
 * (so its spans are fetched and cached); then the daemon's VmRSS / VmHWM are read from /proc.
 * Usage (root): node --import tsx bench/daemon-rss.ts [--images 10] [--bulk-mb 32]
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { appCommand, buildAppImage } from '../harness/app-image.js';
import { removeTree, sociFuseMounts, startContainerd, startSnapshotter } from '../harness/containerd.js';
import { criPull } from '../harness/cri.js';
import { freePort, startRegistry } from '../harness/registry.js';
import { benchArgs } from './lib/args.js';

const exec = promisify(execFile);
const cleanups: Array<() => unknown> = [];
const t = { after: (fn: () => unknown) => void cleanups.push(fn) };
const { values: flags } = benchArgs({ options: { images: { type: 'string', default: '10' }, 'bulk-mb': { type: 'string', default: '32' } } });
const arg = (n: 'images' | 'bulk-mb', _default: string): string => flags[n];

async function status(pid: number): Promise<{ rss: number; hwm: number }> {
  const s = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(s)![1]) / 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

async function main() {
  const n = Number(arg('images', '10'));
  const bulkMb = Number(arg('bulk-mb', '32'));
  const dir = await mkdtemp(join(tmpdir(), 'soci-rss-'));
  const reg = await startRegistry(t);
  for (let i = 0; i < n; i++) {
    const app = buildAppImage(join(dir, `app${i}`), { bulkMb, seed: 1000 * (i + 1) });
    await exec('skopeo', ['copy', '--dest-tls-verify=false', `oci:${app.dir}:latest`, `docker://${reg.host}/app${i}:v1`]);
    await exec(process.execPath, [
      'bin/soci.js',
      '--root',
      join(dir, 'soci'),
      'convert',
      '--remote',
      '-q',
      `${reg.host}/app${i}:v1`,
      `${reg.host}/app${i}:soci`,
    ]);
  }
  const sn = await startSnapshotter(t, { config: '[background_fetch]\ndisable = true\n', logLevel: 'info' });
  const cd = await startContainerd(t, { snapshotterSocket: sn.address, cri: true, plainHttpRegistries: [reg.host] });
  cleanups.push(() => removeTree(dir));
  const idle = await status(sn.proc.pid!);
  for (let i = 0; i < n; i++) {
    const image = `${reg.host}/app${i}:soci`;
    await criPull(cd.address, image);
    const port = await freePort();
    const id = `rss${i}`;
    const r = await cd.ctr(['-n', 'k8s.io', 'run', '-d', '--net-host', '--snapshotter', 'soci', image, id, ...appCommand(port)]);
    if (r.code !== 0) throw new Error(r.stderr);
    for (let k = 0; k < 100; k++) {
      if (
        await exec('curl', ['-sf', `http://127.0.0.1:${port}/index.html`]).then(
          () => true,
          () => false,
        )
      )
        break;
      await new Promise((res) => setTimeout(res, 100));
    }
    cleanups.push(async () => {
      await cd.ctr(['-n', 'k8s.io', 'task', 'kill', '-s', 'SIGKILL', id]);
      await new Promise((res) => setTimeout(res, 200));
      await cd.ctr(['-n', 'k8s.io', 'task', 'rm', '-f', id]);
    });
  }
  const mounts = (await sociFuseMounts()).length;
  const after = await status(sn.proc.pid!);
  console.log(`| daemon idle (no image) | ${idle.rss.toFixed(0)} MB RSS |`);
  console.log(`| ${n} images pulled lazily and started (${mounts} fuse.soci mounts) | ${after.rss.toFixed(0)} MB RSS, peak ${after.hwm.toFixed(0)} MB |`);
}

main()
  .then(
    () => 0,
    (e) => (console.error(e), 1),
  )
  .then(async (code) => {
    for (const f of cleanups.reverse()) await Promise.resolve(f()).catch(() => undefined);
    process.exit(code);
  });
