/**
 * The mission end to end, every component real: a private registry, `soci convert`, our
 * soci-snapshotter-grpc, a private containerd 1.6 whose CRI plugin pulls with snapshotter "soci",
 * and runc running the container from the lazily mounted layers until it answers HTTP 200.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { needs, tempDir } from '../../harness/env.js';
import { startRegistry, freePort } from '../../harness/registry.js';
import { sociFuseMounts, startContainerd, startSnapshotter, CONTAINERD_VERSIONS } from '../../harness/containerd.js';
import { criPull } from '../../harness/cri.js';
import { appCommand, buildAppImage, APP_INDEX_HTML } from '../../harness/app-image.js';

const exec = promisify(execFile);
const SOCI = join(process.cwd(), 'bin/soci.js');
const skip = needs({ root: true, tools: ['containerd', 'ctr', 'runc', 'docker-registry', 'skopeo', 'curl'] });

async function waitHttp(url: string, ms: number): Promise<string> {
  const deadline = Date.now() + ms;
  let last = '';
  while (Date.now() < deadline) {
    try {
      return (await exec('curl', ['-sf', '--max-time', '2', url])).stdout;
    } catch (e) {
      last = String(e);
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  throw new Error(`${url} never answered: ${last}`);
}

for (const version of CONTAINERD_VERSIONS)
  test(`CRI pull with the soci snapshotter: lazy FUSE layers, container serves HTTP, few bytes fetched (containerd ${version})`, {
    skip,
    timeout: 600_000,
  }, async (t) => {
    const tmp = await tempDir(t);
    const reg = await startRegistry(t);
    const app = buildAppImage(join(tmp, 'app'), { bulkMb: 32 });
    await exec('skopeo', ['copy', '--dest-tls-verify=false', `oci:${app.dir}:latest`, `docker://${reg.host}/app:v1`]);
    await exec(process.execPath, [SOCI, '--root', join(tmp, 'soci'), 'convert', '--remote', '-q', `${reg.host}/app:v1`, `${reg.host}/app:soci`]);

    const metricsPort = await freePort();
    const sn = await startSnapshotter(t, { config: `metrics_address = "127.0.0.1:${metricsPort}"\n[background_fetch]\ndisable = true\n` });
    const cd = await startContainerd(t, { version, snapshotterSocket: sn.address, cri: true, plainHttpRegistries: [reg.host] });
    const image = `${reg.host}/app:soci`;
    await criPull(cd.address, image);

    const mounts = await sociFuseMounts(sn.root);
    assert.equal(mounts.length, 1, `one indexed layer → one fuse.soci mount, got ${mounts.length}\n${sn.logs().slice(-3000)}`);
    assert.ok(await sn.waitLine((l) => l['remote-snapshot-prepared'] === 'true' || l['remote-snapshot-prepared'] === true), 'remote snapshot prepared');
    // the small layer (not in the index) is downloaded, diff_id-verified and unpacked by us, not deferred
    assert.ok(
      await sn.waitLine((l) => l['local-snapshot-prepared'] === 'true' || l['local-snapshot-prepared'] === true),
      `local snapshot prepared\n${sn.logs().slice(-3000)}`,
    );

    const port = await freePort();
    const id = `app-${Date.now()}`;
    // Stopped here, not in an after-hook: hooks run in registration order, after containerd's own stop.
    const stopTask = async () => {
      await cd.ctr(['-n', 'k8s.io', 'task', 'kill', '-s', 'SIGKILL', id]);
      await new Promise((r) => setTimeout(r, 500));
      await cd.ctr(['-n', 'k8s.io', 'task', 'rm', '-f', id]);
      await cd.ctr(['-n', 'k8s.io', 'containers', 'rm', id]);
    };
    try {
      const run = await cd.ctr(['-n', 'k8s.io', 'run', '-d', '--net-host', '--snapshotter', 'soci', image, id, ...appCommand(port)]);
      assert.equal(run.code, 0, run.stderr);
      assert.equal(await waitHttp(`http://127.0.0.1:${port}/index.html`, 60_000), APP_INDEX_HTML);

      // Fetched bytes of the lazy layer: far below its size (the 32 MB bulk is never read).
      const layer = app.layers[0]![0]!;
      const state = JSON.parse(await readFile(join(mounts[0]!, '.soci-snapshotter', `${layer}.json`), 'utf8'));
      assert.equal(state.digest, layer);
      assert.ok(state.fetchedSize > 0, 'busybox was read through FUSE');
      assert.ok(state.fetchedSize < state.size * 0.25, `fetched ${state.fetchedSize} of ${state.size} bytes`);

      // Prometheus: per-layer fetch figures and FUSE read latencies of the lazy layer.
      const metrics = (await exec('curl', ['-sf', `http://127.0.0.1:${metricsPort}/metrics`])).stdout;
      const fetched = new RegExp(`soci_fs_layer_fetched_size_bytes\\{digest="${layer}",mountpoint="[^"]+"\\} (\\d+)`).exec(metrics);
      assert.ok(fetched, metrics.slice(0, 3000));
      assert.equal(Number(fetched[1]), state.fetchedSize);
      assert.match(metrics, new RegExp(`soci_fs_layer_size_bytes\\{digest="${layer}",mountpoint="[^"]+"\\} ${state.size}`));
      const reads = new RegExp(`soci_fs_operation_duration_microseconds_count\\{operation_type="synchronous_read",layer="${layer}"\\} (\\d+)`).exec(metrics);
      assert.ok(reads && Number(reads[1]) > 0, 'FUSE read latencies recorded');
      assert.match(metrics, /soci_fs_operation_count\{operation_type="fuse_mount_failure_count",layer=""\} 0/);
    } finally {
      await stopTask();
    }
  });
