/**
 * The remote-snapshot protocol through a real containerd 1.6: its CRI plugin pulls from a private
 * registry with snapshotter "soci" and the CRI labels, our daemon runs a fake LayerMounter, and
 * `ctr run` then starts a container on top of what we answered.
 *   - mounter succeeds (bind-mounts a ready rootfs): every layer is committed remotely
 *     (ALREADY_EXISTS), containerd never unpacks, and the container sees the mounted files;
 *   - mounter says ERR_NO_INDEX: every layer is deferred and containerd unpacks into our mounts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { needs, waitFor } from '../../harness/env.js';
import { exec, removeTree, repoRoot, startContainerd, startSnapshotter } from '../../harness/containerd.js';
import { startRegistry } from '../../harness/registry.js';
import { criPull } from '../../harness/cri.js';
import { buildTinyImage } from './tiny-image.js';

const skip = needs({ root: true, tools: ['containerd', 'ctr', 'runc', 'gcc', 'docker-registry', 'skopeo'] });

for (const mode of ['remote', 'noindex'] as const) {
  test(`CRI pull + ctr run with a fake mounter: ${mode}`, { skip, timeout: 180_000 }, async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'soci-cri-'));
    t.after(() => removeTree(dir));
    const archive = await buildTinyImage(dir, 'docker.io/library/soci-hello:latest');
    const reg = await startRegistry(t);
    const push = await exec('skopeo', ['copy', '--dest-tls-verify=false', `oci-archive:${archive}`, `docker://${reg.host}/hello:v1`]);
    assert.equal(push.code, 0, push.stderr);
    // What the fake "lazy" layers show: the binary in the first, a different message in the second.
    const src = join(dir, 'layers');
    await mkdir(join(src, '0'), { recursive: true });
    await mkdir(join(src, '1'));
    await copyFile(join(dir, 'hello'), join(src, '0', 'hello'));
    await writeFile(join(src, '1', 'msg.txt'), 'remote layer\n');
    const logFile = join(dir, 'mounter.log');
    const sn = await startSnapshotter(t, {
      entry: join(repoRoot, 'test', 'snapshotter', 'fixtures', 'fake-mounter-daemon.ts'),
      env: { FAKE_MOUNTER_LOG: logFile, FAKE_LAYER_SRC: src, FAKE_LAYER_PER_CALL: '1', FAKE_MOUNTER_MODE: mode === 'remote' ? 'bind' : 'noindex' },
    });
    const cd = await startContainerd(t, {
      snapshotterSocket: sn.address,
      cri: true,
      plainHttpRegistries: [reg.host],
    });
    const image = `${reg.host}/hello:v1`;
    await criPull(cd.address, image, { timeoutMs: 60_000 });

    const calls = (await readFile(logFile, 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    const mounts = calls.filter((c) => c.op === 'mount');
    assert.equal(mounts.length, 2, JSON.stringify(calls)); // one Prepare with snapshot.ref per layer
    assert.ok(
      mounts.every((m) => /^sha256:[0-9a-f]{64}$/.test(m.digest) && m.namespace === 'k8s.io' && m.target),
      JSON.stringify(mounts),
    );
    // both layers' decisions are logged before the replies; the stderr pipe may lag them
    await waitFor(() => sn.logLines().filter((l) => l['remote-snapshot-prepared'] === 'true' || l['defer-snapshot-runtime'] === 'true').length >= 2);
    const logs = sn.logLines();
    const count = (k: string) => logs.filter((l) => l[k] === 'true').length;
    if (mode === 'remote') {
      assert.equal(count('remote-snapshot-prepared'), 2);
      assert.equal(count('defer-snapshot-runtime'), 0);
    } else {
      assert.equal(count('defer-snapshot-runtime'), 2);
      assert.equal(count('remote-snapshot-prepared'), 0);
    }

    const id = `hello-${mode}`;
    const run = await cd.ctr(['-n', 'k8s.io', 'run', '--rm', '--snapshotter', 'soci', image, id], { timeoutMs: 60_000 });
    assert.equal(run.code, 0, run.stderr);
    // remote: the two bind-mounted dirs (no /gone, our msg); deferred: containerd unpacked the real image
    assert.equal(run.stdout, `hello from soci\nmsg=${mode === 'remote' ? 'remote layer' : 'layer two'}\ngone=absent\n`);
    const ls = await cd.ctr(['-n', 'k8s.io', 'snapshots', '--snapshotter', 'soci', 'ls']);
    assert.equal(ls.stdout.trim().split('\n').slice(1).length, 2, ls.stdout);
    if (mode === 'remote') {
      const info = JSON.parse(
        (await cd.ctr(['-n', 'k8s.io', 'snapshots', '--snapshotter', 'soci', 'info', ls.stdout.trim().split('\n')[1]!.trim().split(/\s+/)[0]!])).stdout,
      );
      assert.equal(info.Labels['containerd.io/snapshot/remote'], 'remote snapshot', JSON.stringify(info));
    }
  });
}
