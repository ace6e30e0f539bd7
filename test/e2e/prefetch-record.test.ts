/**
 * Record → convert → replay through the snapshotter, with containerd 2.2 and a container serving
 * HTTP. The daemon runs with `[prefetch_record] enable = true` and `[prefetch] enable = true`:
 *   1. a lazily started container serves a page; the daemon writes which files its start read;
 *   2. `soci convert --prefetch-record` makes a new image with AWS-format prefetch artifacts;
 *   3. the new image pulled lazily: its prefetch spans are fetched when the layer is mounted, and
 *      the container's start then sends no Range request at all (counted in the registry's log):
 *      everything it read was fetched before it read it. The container still serves the page.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { appCommand, APP_INDEX_HTML, buildAppImage } from '../../harness/app-image.js';
import { CONTAINERD2_BIN, exec as run, startContainerd, startSnapshotter, type StartedContainerd } from '../../harness/containerd.js';
import { criPull } from '../../harness/cri.js';
import { needs, tempDir, waitFor } from '../../harness/env.js';
import { freePort, startRegistry } from '../../harness/registry.js';
import { sociOn } from '../../harness/store-soci.js';

const exec = promisify(execFile);
const skip = needs({ root: true, tools: ['runc', 'docker-registry', 'skopeo', 'curl', join(CONTAINERD2_BIN, 'containerd')] });

async function serve(cd: StartedContainerd, image: string): Promise<string> {
  const port = await freePort();
  const id = `rec-${Date.now()}`;
  try {
    const r = await cd.ctr(['-n', 'k8s.io', 'run', '-d', '--net-host', '--snapshotter', 'soci', image, id, ...appCommand(port)]);
    assert.equal(r.code, 0, r.stderr);
    let body = '';
    await waitFor(
      async () => {
        const c = await run('curl', ['-sf', '--max-time', '2', `http://127.0.0.1:${port}/index.html`]);
        body = c.stdout;
        return c.code === 0;
      },
      60_000,
      200,
    );
    return body;
  } finally {
    await cd.ctr(['-n', 'k8s.io', 'task', 'kill', '-s', 'SIGKILL', id]);
    await new Promise((r) => setTimeout(r, 500));
    await cd.ctr(['-n', 'k8s.io', 'task', 'rm', '-f', id]);
    await cd.ctr(['-n', 'k8s.io', 'containers', 'rm', id]);
  }
}

test('the snapshotter records a start; converted with the record, the next start reads only prefetched spans', { skip, timeout: 600_000 }, async (t) => {
  const tmp = await tempDir(t);
  const reg = await startRegistry(t);
  const app = buildAppImage(join(tmp, 'app'), { bulkMb: 16, seed: 31 });
  const src = `${reg.host}/library/app:latest`;
  await exec('skopeo', ['copy', '--dest-tls-verify=false', `oci:${app.dir}:latest`, `docker://${src}`]);
  const sn = await startSnapshotter(t, {
    config: '[prefetch]\nenable = true\n[prefetch_record]\nenable = true\nquiet_period_sec = 2\n[background_fetch]\ndisable = true\n',
  });
  const cd = await startContainerd(t, { version: '2.2', snapshotterSocket: sn.address, cri: true, plainHttpRegistries: [reg.host] });
  const soci = sociOn(cd, join(tmp, 'soci-root'));
  const pushConverted = (dst: string, extra: string[]) => soci.convertAndPush(src, dst, ['--min-layer-size', String(1 << 20), ...extra]);

  // 1. A lazy start, recorded.
  const first = `${reg.host}/library/app-soci:v1`;
  await pushConverted(first, []);
  await criPull(cd.address, first);
  assert.equal(await serve(cd, first), APP_INDEX_HTML);
  const records = join(sn.root, 'prefetch-records');
  await waitFor(async () => (await readdir(records).catch(() => [])).length > 0, 30_000, 200);
  const [file] = await readdir(records);
  const rec = join(records, file!);
  const record = JSON.parse(await readFile(rec, 'utf8')) as { files: Array<{ path: string }> };
  const paths = record.files.map((f) => f.path);
  assert.ok(paths.includes('bin/busybox') && paths.includes('www/index.html'), `the start read busybox and the page: ${paths.join(', ')}`);
  assert.ok(!paths.some((p) => p.startsWith('usr/share/bulk/')), 'the unused bulk was never read');

  // 2. Converted again, with the record.
  const second = `${reg.host}/library/app-soci:v2`;
  const conv = await pushConverted(second, ['--prefetch-record', rec]);
  const layer = /^Created prefetch artifact for layer (sha256:[0-9a-f]{64}): sha256:[0-9a-f]{64}$/m.exec(conv)?.[1];
  assert.ok(layer, conv);

  // 3. The replay: spans fetched at mount; the start itself sends no Range request.
  const rangeGets = async () => (await reg.accessLog()).filter((e) => e.method === 'GET' && e.path.endsWith(`/blobs/${layer}`)).length;
  const before = await rangeGets();
  await criPull(cd.address, second);
  let settled = -1;
  await waitFor(
    async () => {
      const n = await rangeGets();
      const same = n === settled && n > before;
      settled = n;
      return same;
    },
    30_000,
    500,
  );
  assert.equal(await serve(cd, second), APP_INDEX_HTML, 'the container still serves the page');
  assert.equal(await rangeGets(), settled, 'every byte the start read was prefetched before it read it');
  assert.match(sn.logs(), /prefetch record written/);
});
