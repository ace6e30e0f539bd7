/**
 * The daemon as a systemd service (a real systemd, PID 1 of private namespaces: harness/systemd.ts,
 * running the shipped unit with only its command line and log changed): each lazy mount's FUSE
 * connection goes to systemd's fd store, not to a holder process. A container reads files in a loop
 * with md5 checks while the daemon is SIGKILLed (systemd restarts it: Restart=always) and then
 * restarted with `systemctl restart`; each time the new daemon gets the connections back from
 * systemd (LISTEN_FDNAMES), takes the same mount over, and the loop sees no error.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { removeTree, sociFuseMounts, startContainerd } from '../../harness/containerd.js';
import { criPull } from '../../harness/cri.js';
import { needs, waitFor } from '../../harness/env.js';
import { convertedAppImage, lines, loopScript, startLoop, stopLoop, waitForDaemon } from '../../harness/loop.js';
import { startRegistry } from '../../harness/registry.js';
import { SYSTEMD_BIN, startSystemd } from '../../harness/systemd.js';

const REPO = process.cwd();
const skip = needs({ root: true, tools: ['containerd', 'ctr', 'runc', 'docker-registry', 'skopeo', 'unshare', 'nsenter', SYSTEMD_BIN] });
const PARTS = 6; // bulkMb 24 → part0..part5

/** The shipped unit, with our test paths in ExecStart and the log in a file. */
async function testUnit(args: { root: string; address: string; config: string; log: string }): Promise<string> {
  const shipped = await readFile(join(REPO, 'systemd/soci-snapshotter.service'), 'utf8');
  const exec = `ExecStart=${process.execPath} ${join(REPO, 'bin/soci-snapshotter-grpc.js')} --address ${args.address} --root ${args.root} --config ${args.config} --log-level debug`;
  assert.match(shipped, /^ExecStart=.*$/m);
  return shipped
    .replace(/^ExecStart=.*$/m, `${exec}\nStandardOutput=append:${args.log}\nStandardError=append:${args.log}`)
    .replace(/^\[Unit\]$/m, '[Unit]\nDefaultDependencies=no')
    .replace(/^\[Install\][\s\S]*$/m, '');
}

async function logLines(log: string): Promise<Record<string, unknown>[]> {
  return (await readFile(log, 'utf8').catch(() => ''))
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

async function count(log: string, msg: string): Promise<number> {
  return (await logLines(log)).filter((l) => l.msg === msg).length;
}

test('under systemd, running containers keep their lazy mounts through a SIGKILL and a systemctl restart (fd store)', { skip, timeout: 600_000 }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'soci-sd-'));
  const reg = await startRegistry(t);
  const { image, md5s } = await convertedAppImage(reg, dir, PARTS);

  const share = join(dir, 'sn');
  await mkdir(share);
  const root = join(share, 'root');
  const address = join(share, 'sn.sock');
  const config = join(share, 'config.toml');
  const log = join(share, 'daemon.log');
  await writeFile(config, '[background_fetch]\ndisable = true\n');
  const sd = await startSystemd(t, { units: { 'soci-test.service': await testUnit({ root, address, config, log }) }, share: [share] });
  const started = await sd.systemctl(['start', 'soci-test.service']);
  assert.equal(started.code, 0, started.stderr);
  assert.ok(
    await waitFor(async () => existsSync(address) && (await count(log, 'soci-snapshotter-grpc successfully started')) === 1, 30_000),
    await readFile(log, 'utf8').catch(() => ''),
  );

  const cd = await startContainerd(t, { version: '2.2', snapshotterSocket: address, cri: true, plainHttpRegistries: [reg.host] });
  t.after(() => removeTree(dir)); // after the namespace's mounts are gone (hooks run in order)
  await criPull(cd.address, image);
  const [mount] = await sociFuseMounts(root);
  assert.ok(mount, 'one lazy mount, seen outside the namespace');
  const recDir = join(root, 'soci', 'fuse-connections');
  const [recFile] = await readdir(recDir);
  const rec = JSON.parse(await readFile(join(recDir, recFile!), 'utf8')) as { fdName?: string; holder?: unknown };
  assert.match(rec.fdName ?? '', /^soci-fuse-[0-9a-f]{32}$/, 'kept in systemd fd store');
  assert.equal(rec.holder, undefined, 'no holder process');

  const out = join(dir, 'out');
  await mkdir(out);
  const id = `sd-loop-${process.pid}`;
  await startLoop(t, cd, image, out, id, loopScript(md5s));
  assert.ok(await waitFor(async () => (await lines(out)).length >= 6, 60_000), 'the loop runs');

  // 1. SIGKILL: systemd restarts the daemon and hands it the stored connections.
  const firstPid = await sd.mainPid('soci-test.service');
  assert.ok(firstPid > 0);
  process.kill(firstPid, 'SIGKILL');
  assert.ok(
    await waitFor(async () => (await count(log, 'layer mount taken over from the previous daemon')) === 1, 60_000),
    (await readFile(log, 'utf8')).slice(-3000),
  );
  const took = (await logLines(log)).find((l) => l.msg === 'layer mount taken over from the previous daemon')!;
  assert.equal(took.resent, true);
  assert.notEqual(await sd.mainPid('soci-test.service'), firstPid, 'systemd started a new daemon');
  await waitForDaemon(cd);
  await writeFile(join(out, 'go'), '');
  const mark = (await lines(out)).length;
  assert.ok(
    await waitFor(async () => (await lines(out)).slice(mark).filter((l) => l === `ok part${PARTS - 1}`).length >= 2, 120_000),
    `every part read after the restart:\n${(await lines(out)).slice(-10).join('\n')}`,
  );
  assert.deepEqual(await sociFuseMounts(root), [mount], 'the same mount');

  // 2. systemctl restart (SIGTERM, then a new start with the stored connections).
  const restarted = await sd.systemctl(['restart', 'soci-test.service']);
  assert.equal(restarted.code, 0, restarted.stderr);
  assert.ok(await waitFor(async () => (await count(log, 'layer mount taken over from the previous daemon')) === 2, 60_000));
  await waitForDaemon(cd);
  const mark2 = (await lines(out)).length;
  assert.ok(await waitFor(async () => (await lines(out)).length >= mark2 + 2 * PARTS, 60_000), 'the loop goes on after systemctl restart');
  assert.deepEqual(await sociFuseMounts(root), [mount], 'the same mount');

  assert.deepEqual(
    (await lines(out)).filter((l) => !l.startsWith('ok ')),
    [],
    'no read failed or returned wrong bytes',
  );
  await stopLoop(cd, id);
});
