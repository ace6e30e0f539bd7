/**
 * Demo driver (see scripts/demo.sh). Options: --bulk-mb N (unused bulk in the app layer, default 128).
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { appCommand, buildAppImage, APP_INDEX_HTML } from '../harness/app-image.js';
import { sociFuseMounts, startContainerd, startSnapshotter } from '../harness/containerd.js';
import { criPull } from '../harness/cri.js';
import { freePort, startRegistry } from '../harness/registry.js';

const exec = promisify(execFile);
const cleanups: Array<() => unknown> = [];
const t = { after: (fn: () => unknown) => void cleanups.push(fn) };
const arg = (name: string, def: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1]! : def;
};
const say = (s: string) => process.stdout.write(`\n==> ${s}\n`);
const ms = (t0: number) => `${((performance.now() - t0) / 1000).toFixed(2)} s`;

async function main() {
  const bulkMb = Number(arg('bulk-mb', '128'));
  const tmp = await mkdtemp(join(tmpdir(), 'soci-demo-'));
  cleanups.push(() => rm(tmp, { recursive: true, force: true }));

  say('starting a private registry (docker-registry on 127.0.0.1)');
  const reg = await startRegistry(t);
  console.log(`registry: ${reg.url}`);

  say(`building the sample image: busybox httpd + ${bulkMb} MB of bulk it never reads`);
  const app = buildAppImage(join(tmp, 'app'), { bulkMb });
  await exec('skopeo', ['copy', '--dest-tls-verify=false', `oci:${app.dir}:latest`, `docker://${reg.host}/demo/app:v1`]);
  const layerSize = (await stat(join(app.dir, 'blobs', 'sha256', app.layers[0]![0]!.slice(7)))).size;
  console.log(`pushed ${reg.host}/demo/app:v1 (app layer ${(layerSize / 1e6).toFixed(1)} MB compressed)`);

  say('starting soci-snapshotter-grpc and a private containerd (CRI plugin: snapshotter = "soci")');
  const sn = await startSnapshotter(t, { config: '[background_fetch]\ndisable = true\n', logLevel: 'info' });
  const cd = await startContainerd(t, { snapshotterSocket: sn.address, cri: true, plainHttpRegistries: [reg.host] });
  console.log(`snapshotter: ${sn.address}\ncontainerd:  ${cd.address}`);

  // AWS's walkthrough: pull, convert in containerd's image store, push (ctr stands in for nerdctl).
  const must = (what: string, r: { code: number; stderr: string }) => {
    if (r.code !== 0) throw new Error(`${what}: ${r.stderr.trim()}`);
  };
  say(`ctr images pull ${reg.host}/demo/app:v1`);
  must('pull', await cd.ctr(['images', 'pull', '--hosts-dir', cd.hostsDir, `${reg.host}/demo/app:v1`], { timeoutMs: 300_000 }));
  say("soci convert: in containerd's image store, SOCI index v2 (zTOCs from containerd's content store)");
  let t0 = performance.now();
  const conv = await exec(process.execPath, [
    'bin/soci.js',
    '--address',
    cd.address,
    '--root',
    join(tmp, 'soci'),
    'convert',
    '--json',
    `${reg.host}/demo/app:v1`,
    `${reg.host}/demo/app:v1-soci`,
  ]);
  const r = JSON.parse(conv.stdout);
  console.log(`converted in ${ms(t0)}: ${reg.host}/demo/app:v1-soci = ${r.digest}`);
  for (const i of r.indexes) console.log(`  SOCI index ${i.sociIndex} (${i.ztocs.length} zTOC) for ${i.platform.os}/${i.platform.architecture}`);
  say(`ctr images push ${reg.host}/demo/app:v1-soci (the whole graph, zTOCs included)`);
  must('push', await cd.ctr(['images', 'push', '--hosts-dir', cd.hostsDir, `${reg.host}/demo/app:v1-soci`], { timeoutMs: 300_000 }));

  const image = `${reg.host}/demo/app:v1-soci`;
  say(`pulling ${image} through CRI (lazily: only the zTOCs are fetched)`);
  t0 = performance.now();
  await criPull(cd.address, image);
  console.log(`pulled in ${ms(t0)}`);
  const fuse = await sociFuseMounts();
  console.log(`FUSE mounts (mount | grep fuse.soci):\n${fuse.map((m) => `  soci on ${m} type fuse.soci`).join('\n')}`);

  say('running the container from the lazy snapshots (ctr run --snapshotter soci)');
  const port = await freePort();
  const id = `demo-${process.pid}`;
  t.after(async () => {
    await cd.ctr(['-n', 'k8s.io', 'task', 'kill', '-s', 'SIGKILL', id]);
    await new Promise((res) => setTimeout(res, 500));
    await cd.ctr(['-n', 'k8s.io', 'task', 'rm', '-f', id]);
    await cd.ctr(['-n', 'k8s.io', 'containers', 'rm', id]);
  });
  t0 = performance.now();
  const run = await cd.ctr(['-n', 'k8s.io', 'run', '-d', '--net-host', '--snapshotter', 'soci', image, id, ...appCommand(port)]);
  if (run.code !== 0) throw new Error(`ctr run failed: ${run.stderr}`);
  let body = '';
  for (let i = 0; i < 300 && body !== APP_INDEX_HTML; i++) {
    body = await exec('curl', ['-sf', '--max-time', '2', `http://127.0.0.1:${port}/index.html`]).then(
      (x) => x.stdout,
      () => '',
    );
    if (body !== APP_INDEX_HTML) await new Promise((res) => setTimeout(res, 100));
  }
  if (body !== APP_INDEX_HTML) throw new Error('the container never answered');
  console.log(`HTTP 200 from the container ${ms(t0)} after ctr run: ${body.trim()}`);

  const layer = app.layers[0]![0]!;
  for (const m of fuse) {
    const state = JSON.parse(await readFile(join(m, '.soci-snapshotter', `${layer}.json`), 'utf8').catch(() => '{}'));
    if (state.digest)
      console.log(
        `lazy layer ${layer.slice(0, 19)}…: fetched ${(state.fetchedSize / 1e6).toFixed(2)} MB of ${(state.size / 1e6).toFixed(1)} MB (${state.fetchedPercent.toFixed(1)} %)`,
      );
  }
  say('done; stopping everything this demo started');
}

main()
  .then(
    () => 0,
    (e) => {
      console.error(`demo failed: ${(e as Error).message}`);
      return 1;
    },
  )
  .then(async (code) => {
    for (const f of cleanups.reverse()) await Promise.resolve(f()).catch(() => undefined);
    process.exit(code);
  });
