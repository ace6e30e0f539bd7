/**
 * Running containers keep their lazy mounts through a snapshotter crash or restart (registry,
 * containerd + CRI, runc, FUSE, our daemon, all real): a container reads files in a loop with md5
 * checks; the daemon gets SIGKILL (and, second, SIGTERM as in an upgrade) and is started again;
 * third, SIGUSR2 hands over to a new daemon while the old one still serves. The
 * loop sees no error, only a pause; files never read before the crash are served right after it;
 * `ctr snapshots ls` is intact, and the restarted daemon asks the registry for nothing it had (its
 * index, zTOCs and cached spans are on disk). Without the fdpass addon the daemon says so in one line and the
 * old behaviour stays: the container's reads fail after a restart.
 *
 * systemd is not run here: this covers the holder-process path only.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CONTAINERD_VERSIONS, removeTree, sociFuseMounts, startContainerd, startSnapshotter, type StartedSnapshotter } from '../../harness/containerd.js';
import { criPull } from '../../harness/cri.js';
import { needs, waitFor } from '../../harness/env.js';
import { startRegistry } from '../../harness/registry.js';
import { convertedAppImage, lines, loopScript, startLoop, stopLoop, waitForDaemon } from '../../harness/loop.js';

const skip = needs({ root: true, tools: ['containerd', 'ctr', 'runc', 'docker-registry', 'skopeo'] });
// No background fetch: a span nobody read before the crash is fetched only when read after it.
const CONFIG = '[background_fetch]\ndisable = true\n';
const PARTS = 8; // bulkMb 32 → part0..part7, 4 MiB each

for (const version of CONTAINERD_VERSIONS)
  test(`a running container keeps its lazy mount through a snapshotter SIGKILL, a restart and a SIGUSR2 handover (containerd ${version})`, {
    skip,
    timeout: 600_000,
  }, async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'soci-keep-'));
    const reg = await startRegistry(t);
    const { image, md5s, layers } = await convertedAppImage(reg, dir, PARTS);

    const root = join(dir, 'sn-root');
    const address = join(dir, 'sn.sock');
    let sn: StartedSnapshotter = await startSnapshotter(t, { root, address, dir, config: CONFIG });
    const cd = await startContainerd(t, { version, snapshotterSocket: address, cri: true, plainHttpRegistries: [reg.host] });
    t.after(() => removeTree(dir));
    await criPull(cd.address, image);
    const [mount] = await sociFuseMounts(root);
    assert.ok(mount, 'one lazy mount');

    const out = join(dir, 'out');
    await mkdir(out);
    const id = `keep-loop-${process.pid}`;
    await startLoop(t, cd, image, out, id, loopScript(md5s));
    assert.ok(await waitFor(async () => (await lines(out)).length >= 9, 60_000), `the loop runs:\n${(await lines(out)).join('\n')}`);
    const snapshotsBefore = (await cd.ctr(['-n', 'k8s.io', 'snapshots', '--snapshotter', 'soci', 'ls'])).stdout;

    // 1. SIGKILL: the daemon dies mid-loop; the loop's reads wait, then go on once it is back.
    const requestsBefore = (await reg.accessLog()).length;
    await sn.stop('SIGKILL');
    await new Promise((r) => setTimeout(r, 1000));
    assert.deepEqual(await sociFuseMounts(root), [mount], 'the mount stays while the daemon is down');
    const beforeRestart = (await lines(out)).length;
    sn = await startSnapshotter(t, { root, address, dir, config: CONFIG });
    const took = await sn.waitLine((l) => l.msg === 'layer mount taken over from the previous daemon');
    assert.ok(took, sn.logs().slice(-3000));
    assert.equal(took.resent, true, 'FUSE_NOTIFY_RESEND accepted');
    assert.ok(Number(took.cachedSpans) > 0, 'the spans read before the crash come from the cache the old daemon left');
    await waitForDaemon(cd);
    // Files the container never read before the crash: served (and md5-checked) after it.
    await writeFile(join(out, 'go'), '');
    assert.ok(
      await waitFor(async () => (await lines(out)).slice(beforeRestart).filter((l) => l === `ok part${PARTS - 1}`).length >= 2, 120_000),
      `every part read after the restart:\n${(await lines(out)).slice(-20).join('\n')}\n${sn.logs().slice(-2000)}`,
    );
    assert.deepEqual(await sociFuseMounts(root), [mount], 'the same mount, not a new one');
    // Nothing is fetched twice: the image manifest, the SOCI index and the zTOCs come from the
    // daemon's content store; the registry serves only spans of the layers, read for the first time.
    const since = (await reg.accessLog()).slice(requestsBefore).filter((r) => r.path !== '/v2/');
    assert.deepEqual(
      since.filter((r) => !layers.some((d) => r.path.endsWith(`/blobs/${d}`))),
      [],
      'after the restart, the registry serves layer spans only',
    );
    assert.equal((await cd.ctr(['-n', 'k8s.io', 'snapshots', '--snapshotter', 'soci', 'ls'])).stdout, snapshotsBefore, 'ctr snapshots ls is intact');

    // 2. SIGTERM, as an upgrade stops the old binary: the same, with no SIGKILL.
    const mark = (await lines(out)).length;
    await sn.stop('SIGTERM');
    await new Promise((r) => setTimeout(r, 500));
    sn = await startSnapshotter(t, { root, address, dir, config: CONFIG });
    assert.ok(await sn.waitLine((l) => l.msg === 'layer mount taken over from the previous daemon'), sn.logs().slice(-3000));
    await waitForDaemon(cd);
    assert.ok(await waitFor(async () => (await lines(out)).length >= mark + 2 * PARTS, 60_000), 'the loop goes on after the second restart');

    // 3. A graceful upgrade (SIGUSR2): a new daemon of the same binary takes the mounts over while
    //    the old one still serves them, and the old one exits. A new daemon that cannot start (here:
    //    a broken config) leaves the old one serving.
    const good = await readFile(sn.configPath, 'utf8');
    await writeFile(sn.configPath, '[background_fetch\n');
    const old = sn.pid();
    process.kill(old, 'SIGUSR2');
    assert.ok(await sn.waitLine((l) => l.msg === 'handover failed: the new daemon exited; this one goes on serving', 30_000), sn.logs().slice(-3000));
    assert.equal((await cd.ctr(['-n', 'k8s.io', 'snapshots', '--snapshotter', 'soci', 'ls'])).code, 0, 'the old daemon still serves');
    await writeFile(sn.configPath, good);
    const mark3 = (await lines(out)).length;
    const done = await sn.handover();
    assert.equal(done.from, old);
    assert.notEqual(sn.pid(), old);
    const recovered = await sn.waitLine((l) => l.msg === 'requests the previous daemon left unanswered recovered');
    assert.equal(recovered?.mounts, 1, 'the one lazy mount was taken over');
    assert.deepEqual(await sociFuseMounts(root), [mount], 'the same mount after the handover');
    await waitForDaemon(cd);
    assert.ok(await waitFor(async () => (await lines(out)).length >= mark3 + 2 * PARTS, 60_000), 'the loop goes on after the handover');
    assert.equal((await cd.ctr(['-n', 'k8s.io', 'snapshots', '--snapshotter', 'soci', 'ls'])).stdout, snapshotsBefore, 'ctr snapshots ls is intact');

    const all = await lines(out);
    assert.deepEqual(
      all.filter((l) => !l.startsWith('ok ')),
      [],
      'no read failed or returned wrong bytes',
    );
    await stopLoop(cd, id);
  });

test('without the fdpass addon: one line at start, and a restart breaks the running container as before', { skip, timeout: 600_000 }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'soci-nokeep-'));
  const reg = await startRegistry(t);
  const { image } = await convertedAppImage(reg, dir, 3);
  const root = join(dir, 'sn-root');
  const address = join(dir, 'sn.sock');
  const env = { SOCI_FDPASS_ADDON: join(dir, 'absent', 'fdpass.node') };
  let sn = await startSnapshotter(t, { root, address, dir, config: CONFIG, env });
  const warn = await sn.waitLine((l) => l.msg === 'FUSE mounts will not survive a restart of this daemon');
  assert.ok(warn, sn.logs().slice(-2000));
  assert.match(String(warn.reason), /^the fdpass addon \(.*\) is unavailable: not built$/);
  const cd = await startContainerd(t, { version: '2.2', snapshotterSocket: address, cri: true, plainHttpRegistries: [reg.host] });
  t.after(() => removeTree(dir));
  await criPull(cd.address, image);
  const out = join(dir, 'out');
  await mkdir(out);
  const id = `nokeep-loop-${process.pid}`;
  const script =
    'while :; do /bin/busybox cat /www/index.html > /dev/null 2>> /out/err && echo ok >> /out/log || echo BAD >> /out/log; /bin/busybox sleep 0.05; done';
  await startLoop(t, cd, image, out, id, script);
  assert.ok(await waitFor(async () => (await lines(out)).length >= 3, 60_000));
  await sn.stop('SIGKILL');
  sn = await startSnapshotter(t, { root, address, dir, config: CONFIG, env });
  await waitForDaemon(cd);
  assert.ok(await waitFor(async () => (await lines(out)).includes('BAD'), 30_000), 'the old behaviour: the container loses its lazy mount');
  assert.match(await readFile(join(out, 'err'), 'utf8'), /not connected|Stale file handle|I\/O error|No such/);
  await stopLoop(cd, id);
});
