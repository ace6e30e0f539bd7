/**
 * Our daemon alone, driven over gRPC like containerd drives it: error codes, Update masks,
 * List filters, Usage, Cleanup, the remote-snapshot protocol with a fake mounter, restart,
 * SIGINT/SIGTERM, socket/root permissions and metrics.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { needs } from '../../harness/env.js';
import { mountsUnder, removeTree, repoRoot, startSnapshotter } from '../../harness/containerd.js';
import { TestClient } from './grpc-client.js';
import { freePort } from '../../harness/registry.js';

const skip = needs({ root: true, tools: ['mount', 'umount'] });
const REF = 'containerd.io/snapshot.ref';
const DIGEST = 'containerd.io/snapshot/cri.layer-digest';

async function scratch(t: { after: (fn: () => unknown) => void }): Promise<string> {
  const d = await mkdtemp(join(process.env.SOCI_TEST_TMP ?? tmpdir(), 'soci-dt-'));
  t.after(() => removeTree(d));
  return d;
}

function metrics(socketPath: string): Promise<string> {
  return new Promise((res, rej) => {
    request({ socketPath, path: '/metrics' }, (r) => {
      let body = '';
      r.on('data', (b) => (body += b));
      r.on('end', () => res(body));
    })
      .on('error', rej)
      .end();
  });
}

const countOf = (body: string, op: string): number => {
  const m = new RegExp(`^soci_fs_operation_count\\{operation_type="${op}",layer="[^"]*"\\} (\\d+)`, 'm').exec(body);
  const all = [...body.matchAll(new RegExp(`^soci_fs_operation_count\\{operation_type="${op}",layer="[^"]*"\\} (\\d+)`, 'gm'))];
  return m ? all.reduce((s, x) => s + Number(x[1]), 0) : NaN;
};

test('snapshot semantics and error codes over gRPC', { skip }, async (t) => {
  const sn = await startSnapshotter(t);
  const c = new TestClient(sn.address);
  t.after(() => c.close());

  // permissions: socket and root are not world-writable
  const sock = await stat(sn.address);
  assert.equal(sock.mode & 0o777, 0o660);
  assert.equal((await stat(sn.root)).mode & 0o777, 0o700);

  assert.equal(await c.code('Stat', { key: 'nope' }), status.NOT_FOUND);
  const m1 = await c.call('Prepare', { key: 'a', parent: '', labels: { x: '1' } });
  assert.equal(m1.mounts.length, 1);
  assert.equal(m1.mounts[0].type, 'bind');
  assert.deepEqual(m1.mounts[0].options, ['rw', 'rbind']);
  assert.equal(await c.code('Prepare', { key: 'a' }), status.ALREADY_EXISTS);
  assert.equal(await c.code('Prepare', { key: 'a2', parent: 'a' }), status.INVALID_ARGUMENT); // as containerd's storage
  assert.equal(await c.code('Prepare', { key: 'a3', parent: 'missing' }), status.NOT_FOUND);
  assert.equal(await c.code('Prepare', { key: 'big', labels: { k: 'v'.repeat(5000) } }), status.INVALID_ARGUMENT);

  await writeFile(join(m1.mounts[0].source, 'file'), Buffer.alloc(10000, 1));
  const ua = await c.call('Usage', { key: 'a' });
  assert.equal(ua.inodes, '2');
  assert.ok(Number(ua.size) >= 12288, `usage ${ua.size}`);

  await c.call('Commit', { name: 'base', key: 'a', labels: { committed: 'yes' } });
  assert.equal(await c.code('Stat', { key: 'a' }), status.NOT_FOUND);
  const base = (await c.call('Stat', { key: 'base' })).info;
  assert.equal(base.kind, 'COMMITTED');
  assert.deepEqual(base.labels, { committed: 'yes' }); // commit replaces labels
  assert.equal((await c.call('Usage', { key: 'base' })).inodes, '2'); // stored at commit
  assert.equal(await c.code('Mounts', { key: 'base' }), status.FAILED_PRECONDITION);
  assert.equal(await c.code('Commit', { name: 'base', key: 'base' }), status.ALREADY_EXISTS);

  const m2 = await c.call('Prepare', { key: 'child', parent: 'base' });
  assert.equal(m2.mounts[0].type, 'overlay');
  const opts: string[] = m2.mounts[0].options;
  assert.ok(
    opts.some((o) => o === `lowerdir=${m1.mounts[0].source}`),
    opts.join(','),
  );
  assert.ok(opts.some((o) => o.startsWith('upperdir=')) && opts.some((o) => o.startsWith('workdir=')));
  assert.deepEqual((await c.call('Mounts', { key: 'child' })).mounts, m2.mounts);

  const v1 = await c.call('View', { key: 'v1', parent: 'base' });
  assert.deepEqual(v1.mounts[0], { type: 'bind', source: m1.mounts[0].source, target: '', options: ['ro', 'rbind'] });
  assert.equal(await c.code('Commit', { name: 'vc', key: 'v1' }), status.FAILED_PRECONDITION);
  await c.call('Commit', { name: 'mid', key: 'child' });
  const v2 = await c.call('View', { key: 'v2', parent: 'mid' });
  assert.equal(v2.mounts[0].type, 'overlay');
  assert.ok(!v2.mounts[0].options.some((o: string) => o.startsWith('upperdir=')));
  assert.ok(v2.mounts[0].options.some((o: string) => /^lowerdir=.*\/fs:.*\/fs$/.test(o)));
  assert.equal(await c.code('Remove', { key: 'base' }), status.FAILED_PRECONDITION);

  // Update like containerd: labels.<k> paths, zero timestamps, immutable fields ignored
  const zero = { seconds: '-62135596800', nanos: 0 };
  const before = (await c.call('Stat', { key: 'base' })).info;
  const u = (
    await c.call('Update', {
      info: { name: 'base', kind: 'UNKNOWN', parent: 'bogus', created_at: zero, updated_at: zero, labels: { foo: 'bar', committed: '' } },
      update_mask: { paths: ['labels.foo', 'labels.committed'] },
    })
  ).info;
  assert.deepEqual(u.labels, { foo: 'bar' });
  assert.deepEqual(u.created_at, before.created_at);
  assert.equal(u.parent, '');
  assert.equal(u.kind, 'COMMITTED');
  assert.equal(await c.code('Update', { info: { name: 'base', labels: {} }, update_mask: { paths: ['parent'] } }), status.INVALID_ARGUMENT);
  assert.equal(await c.code('Update', { info: { name: 'gone', labels: {} } }), status.NOT_FOUND);
  const all = (await c.call('Update', { info: { name: 'mid', labels: { a: '1', b: '2' } } })).info; // no mask: all labels
  assert.deepEqual(all.labels, { a: '1', b: '2' });

  // List + filters
  const names = (xs: any[]) => xs.map((i) => i.name).sort();
  assert.deepEqual(names(await c.list()), ['base', 'mid', 'v1', 'v2']);
  assert.deepEqual(names(await c.list(['parent==base'])), ['mid', 'v1']);
  assert.deepEqual(names(await c.list(['kind==view'])), ['v1', 'v2']);
  assert.deepEqual(names(await c.list(['labels."foo"==bar', 'labels.a==1'])), ['base', 'mid']);
  assert.deepEqual(names(await c.list(['kind==committed,labels.b'])), ['mid']);
  assert.equal(
    await c.list(['name~=[']).then(
      () => 0,
      (e) => e.code,
    ),
    status.INVALID_ARGUMENT,
  );

  // Remove + Cleanup (orphans are deleted; mounted orphans are unmounted, never deleted through)
  const vdir = v2.mounts[0].options; // keep a reference so the view's id dir exists
  assert.ok(vdir);
  await c.call('Remove', { key: 'v2' });
  assert.equal(await c.code('Stat', { key: 'v2' }), status.NOT_FOUND);
  const snapshots = join(sn.root, 'snapshotter', 'snapshots');
  const keep = await scratch(t);
  await writeFile(join(keep, 'precious'), 'x');
  await mkdir(join(snapshots, '9999', 'fs'), { recursive: true });
  execFileSync('mount', ['--bind', keep, join(snapshots, '9999', 'fs')]);
  await mkdir(join(snapshots, '9998', 'fs'), { recursive: true });
  await c.call('Cleanup', {});
  assert.ok(!existsSync(join(snapshots, '9999')) && !existsSync(join(snapshots, '9998')));
  assert.equal(await readFile(join(keep, 'precious'), 'utf8'), 'x');
  assert.ok(existsSync(m1.mounts[0].source), 'live snapshot dirs survive Cleanup');
});

test('remote snapshot protocol with a fake mounter; restart and SIGINT', { skip }, async (t) => {
  const dir = await scratch(t);
  const src = join(dir, 'layer');
  await mkdir(src);
  await writeFile(join(src, 'hello.txt'), 'from the lazy layer\n');
  const logFile = join(dir, 'mounter.log');
  const metricsSock = join(dir, 'metrics.sock');
  const opts = {
    dir,
    entry: join(repoRoot, 'test', 'snapshotter', 'fixtures', 'fake-mounter-daemon.ts'),
    env: { FAKE_MOUNTER_LOG: logFile, FAKE_LAYER_SRC: src },
    config: `metrics_address = "${metricsSock}"\nmetrics_network = "unix"\n[snapshotter]\nmin_layer_size = 1000\n`,
  };
  let sn = await startSnapshotter(t, opts);
  let c = new TestClient(sn.address, 'ns1');
  const calls = async () =>
    (await readFile(logFile, 'utf8').catch(() => ''))
      .trim()
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l));

  // success → committed under the target name, ALREADY_EXISTS, remote labels, dir mounted
  const labels = { [REF]: 'layer-1', [DIGEST]: 'sha256:good', 'containerd.io/snapshot/cri.image-ref': 'example.com/a:b' };
  assert.equal(await c.code('Prepare', { key: 'extract-1 layer-1', labels }), status.ALREADY_EXISTS);
  assert.equal(await c.code('Stat', { key: 'extract-1 layer-1' }), status.NOT_FOUND);
  const info = (await c.call('Stat', { key: 'layer-1' })).info;
  assert.equal(info.kind, 'COMMITTED');
  assert.equal(info.labels['containerd.io/snapshot/remote'], 'remote snapshot');
  assert.equal(info.labels['containerd.io/snapshot/remote/has.soci.index.digest'], 'true');
  assert.equal(info.labels['containerd.io/snapshot/remote/namespace'], 'ns1');
  assert.equal(info.labels[DIGEST], 'sha256:good');
  const mountCall = (await calls()).find((x) => x.op === 'mount');
  assert.equal(mountCall.namespace, 'ns1');
  assert.equal(mountCall.key, 'extract-1 layer-1');
  const remoteFs: string = mountCall.mountpoint;
  assert.equal(await readFile(join(remoteFs, 'hello.txt'), 'utf8'), 'from the lazy layer\n');
  assert.ok(await sn.waitLine((l) => l['remote-snapshot-prepared'] === 'true'));
  // the same target prepared again (two images sharing a layer): ALREADY_EXISTS, duplicate dropped
  assert.equal(await c.code('Prepare', { key: 'extract-1b layer-1', labels }), status.ALREADY_EXISTS);
  assert.equal(await c.code('Stat', { key: 'extract-1b layer-1' }), status.NOT_FOUND);
  const dup = (await calls()).filter((x) => x.op === 'mount')[1].mountpoint;
  assert.notEqual(dup, remoteFs);
  assert.ok((await calls()).some((x) => x.op === 'unmount' && x.mountpoint === dup));
  assert.ok(!existsSync(dup));
  // Remove of a remote snapshot unmounts through the mounter and never deletes the layer's files
  assert.equal(await c.code('Prepare', { key: 'extract-6', labels: { ...labels, [REF]: 'layer-6' } }), status.ALREADY_EXISTS);
  const fs6 = (await calls()).filter((x) => x.op === 'mount').pop().mountpoint;
  await c.call('Remove', { key: 'layer-6' });
  assert.ok((await calls()).some((x) => x.op === 'unmount' && x.mountpoint === fs6));
  assert.ok(!existsSync(fs6));
  assert.equal(await readFile(join(src, 'hello.txt'), 'utf8'), 'from the lazy layer\n');
  // a child of the remote snapshot overlays it
  const ch = await c.call('Prepare', { key: 'ctr-1', parent: 'layer-1' });
  assert.ok(ch.mounts[0].options.includes(`lowerdir=${remoteFs}`));
  assert.ok(
    (await calls()).some((x) => x.op === 'check' && x.mountpoint === remoteFs),
    'remote parents are checked',
  );
  // an unhealthy remote layer below: UNAVAILABLE (SOCI's checkAvailability), healthy again: fine
  await writeFile(`${logFile}.unavailable`, '');
  assert.equal(await c.code('Mounts', { key: 'ctr-1' }), status.UNAVAILABLE);
  assert.equal(await c.code('View', { key: 'view-x', parent: 'layer-1' }), status.UNAVAILABLE);
  await rm(`${logFile}.unavailable`);
  assert.deepEqual((await c.call('Mounts', { key: 'ctr-1' })).mounts, ch.mounts);

  // ERR_NO_INDEX → defer: mounts returned, active snapshot kept, logged with the reason
  const d = await c.call('Prepare', { key: 'extract-2', labels: { [REF]: 'layer-2', [DIGEST]: 'sha256:noindex' } });
  assert.equal(d.mounts[0].type, 'bind');
  assert.equal((await c.call('Stat', { key: 'extract-2' })).info.kind, 'ACTIVE');
  const deferLine = await sn.waitLine((l) => l['defer-snapshot-runtime'] === 'true');
  assert.ok(deferLine && String(deferLine.reason).includes('no SOCI index'), JSON.stringify(deferLine));

  // ERR_NO_ZTOC → local unpack, committed, no FUSE failure counted
  assert.equal(await c.code('Prepare', { key: 'extract-3', labels: { [REF]: 'layer-3', [DIGEST]: 'sha256:noztoc' } }), status.ALREADY_EXISTS);
  const l3 = (await c.call('Stat', { key: 'layer-3' })).info;
  assert.equal(l3.labels['containerd.io/snapshot/remote'], undefined);
  assert.ok(await sn.waitLine((l) => l['local-snapshot-prepared'] === 'true'));
  let body = await metrics(metricsSock);
  assert.equal(countOf(body, 'fuse_mount_failure_count'), 0);
  assert.equal(countOf(body, 'local_mount_failure_count'), 0);

  // other mount error → fuse_mount_failure_count, then local; local failure → count + defer
  assert.equal(await c.code('Prepare', { key: 'extract-4', labels: { [REF]: 'layer-4', [DIGEST]: 'sha256:broken' } }), status.ALREADY_EXISTS);
  const m5 = await c.call('Prepare', { key: 'extract-5', labels: { [REF]: 'layer-5', [DIGEST]: 'sha256:broken-unpackfail' } });
  assert.equal(m5.mounts.length, 1);
  assert.ok(!existsSync(join(m5.mounts[0].source, 'unpacked')), 'failed local unpack leaves an empty dir');
  body = await metrics(metricsSock);
  assert.equal(countOf(body, 'fuse_mount_failure_count'), 2);
  assert.equal(countOf(body, 'local_mount_failure_count'), 1);
  // a remote snapshot is never walked for Usage (that would fetch the whole layer)
  assert.equal((await c.call('Usage', { key: 'layer-1' })).size, '0');

  // min_layer_size with a smaller soci.size label: straight to local, no mount attempt
  const before7 = (await calls()).filter((x) => x.op === 'mount').length;
  assert.equal(
    await c.code('Prepare', { key: 'extract-7', labels: { ...labels, [REF]: 'layer-7', 'containerd.io/snapshot/remote/soci.size': '10' } }),
    status.ALREADY_EXISTS,
  );
  assert.equal((await calls()).filter((x) => x.op === 'mount').length, before7);
  // ... but the image's index is looked up meanwhile, for the lazy layers that follow
  assert.deepEqual(
    (await calls()).slice(-2).map((x) => x.op),
    ['resolve', 'unpack'],
  );

  // SIGTERM: exit without cleanup (mount stays); restart: stale mount cleaned, remote re-mounted
  c.close();
  assert.equal(await sn.stop('SIGTERM'), 0);
  assert.deepEqual(await mountsUnder(remoteFs), [remoteFs]);
  sn = await startSnapshotter(t, { ...opts, root: sn.root });
  c = new TestClient(sn.address, 'ns1');
  t.after(() => c.close());
  assert.equal((await c.call('Stat', { key: 'layer-1' })).info.labels['containerd.io/snapshot/remote'], 'remote snapshot');
  assert.equal((await c.call('Stat', { key: 'layer-3' })).info.kind, 'COMMITTED');
  assert.equal((await c.call('Stat', { key: 'extract-2' })).info.kind, 'ACTIVE');
  assert.equal((await calls()).filter((x) => x.op === 'mount' && x.mountpoint === remoteFs).length, 2);
  assert.deepEqual(await mountsUnder(remoteFs), [remoteFs], 'exactly one mount after restart (stale one removed)');
  assert.equal(await readFile(join(remoteFs, 'hello.txt'), 'utf8'), 'from the lazy layer\n');

  // SIGINT: unmount all remote snapshots through the mounter, exit 0
  assert.equal(await sn.stop('SIGINT'), 0);
  assert.deepEqual(await mountsUnder(remoteFs), []);
  assert.ok((await calls()).some((x) => x.op === 'unmount' && x.mountpoint === remoteFs));
  assert.equal(await readFile(join(src, 'hello.txt'), 'utf8'), 'from the lazy layer\n');
});

/** Spawns the daemon with raw args/env (no helper flags) and waits until `sock` answers. */
async function spawnRaw(t: { after: (fn: () => unknown) => void }, cmd: string[], env: NodeJS.ProcessEnv, sock: string) {
  const { spawn } = await import('node:child_process');
  const proc = spawn(cmd[0]!, cmd.slice(1), { cwd: repoRoot, env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  proc.stderr!.on('data', (b) => (err += b));
  const exited = new Promise<number | null>((r) => proc.once('exit', (c) => r(c)));
  t.after(async () => {
    if (proc.exitCode === null) {
      proc.kill('SIGKILL');
      await exited;
    }
  });
  const c = new TestClient(sock);
  t.after(() => c.close());
  for (let i = 0; ; i++) {
    if (existsSync(sock) && (await c.code('Stat', { key: 'nope' }).catch(() => -1)) === status.NOT_FOUND) break;
    if (i > 300 || proc.exitCode !== null) throw new Error(`daemon did not answer on ${sock}: ${err}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return { proc, c, exited, stderr: () => err };
}

test('env configuration, tcp metrics, systemd socket activation (fd://)', { skip }, async (t) => {
  const dir = await scratch(t);
  const main = join(repoRoot, 'src', 'snapshotter', 'main.ts');
  const port = await freePort();
  await writeFile(join(dir, 'env.toml'), `metrics_address = "127.0.0.1:${port}"\n`);
  const sock = join(dir, 'run', 'env.sock');
  const d = await spawnRaw(
    t,
    [process.execPath, '--import', 'tsx', main],
    {
      SOCI_SNAPSHOTTER_ADDRESS: `unix://${sock}`,
      SOCI_SNAPSHOTTER_ROOT: join(dir, 'envroot'),
      SOCI_SNAPSHOTTER_CONFIG: join(dir, 'env.toml'),
      SOCI_SNAPSHOTTER_LOG_LEVEL: 'debug',
    },
    sock,
  );
  assert.ok(existsSync(join(dir, 'envroot', 'snapshotter', 'metadata.db')));
  assert.equal((await stat(join(dir, 'run'))).mode & 0o777, 0o711);
  assert.equal((await stat(sock)).mode & 0o777, 0o660);
  const body = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  assert.match(body, /^soci_fs_operation_count\{operation_type="fuse_mount_failure_count",layer=""\} 0$/m);
  assert.match(body, /^# TYPE soci_fs_operation_duration_milliseconds histogram$/m);
  assert.ok(d.stderr().includes('"level":"debug"'), 'SOCI_SNAPSHOTTER_LOG_LEVEL=debug honoured');
  d.proc.kill('SIGINT');
  assert.equal(await d.exited, 0);
  assert.ok(!existsSync(sock), 'socket removed on SIGINT');

  if (needs({ tools: ['systemd-socket-activate'] })) return t.diagnostic('systemd-socket-activate missing: fd:// not tested');
  const act = join(dir, 'act.sock');
  const a = await spawnRaw(
    t,
    [
      'systemd-socket-activate',
      '-l',
      act,
      process.execPath,
      '--import',
      'tsx',
      main,
      '--address',
      'fd://',
      '--root',
      join(dir, 'actroot'),
      '--config',
      '/dev/null',
    ],
    {},
    act,
  );
  assert.ok(a.stderr().includes('serving on systemd socket'), a.stderr());
  assert.ok(!existsSync('/run/soci-snapshotter-grpc/soci-snapshotter-grpc.sock') || !a.stderr().includes('falling back'));
  a.proc.kill('SIGINT');
  assert.equal(await a.exited, 0);
});
