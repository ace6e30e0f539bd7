/**
 * `soci mount` trees are visible to every user of the host: by default they are nosuid,nodev, so a
 * setuid-root binary of the image run by `nobody` keeps euid 65534 and a device node of the image
 * cannot be opened, from a lazy (FUSE) layer and from a locally unpacked one alike, through the
 * overlay (several layers) and through the bind mount (one layer). `--allow-suid` / `--allow-dev`
 * opt in. Real registry, real `soci convert`, real mounts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { needs } from '../../harness/env.js';
import { makeLayer } from '../../harness/fixtures.js';
import { buildEuidProbe } from '../../harness/hostile-image.js';
import { ociLayout } from '../../harness/images.js';
import { startRegistry } from '../../harness/registry.js';
import { exec, mountsUnder } from '../../harness/containerd.js';
import { readMountinfo } from '../../src/host/index.js';
import { scratch } from './util.js';
import { sociRun } from '../../harness/soci-cli.js';

const pexec = promisify(execFile);
const NOBODY = ['--reuid=65534', '--regid=65534', '--clear-groups'];

test('soci mount: nosuid,nodev by default (lazy and local layers, overlay and bind); --allow-suid / --allow-dev opt in', {
  skip: needs({ root: true, tools: ['docker-registry', 'skopeo', 'python3', 'gcc', 'setpriv'] }),
  timeout: 600_000,
}, async (t) => {
  const { dir, defer } = await scratch(t, 'soci-mount-nosuid-');
  await chmod(dir, 0o755); // nobody must reach the mount points
  const reg = await startRegistry(t);
  const probe = await buildEuidProbe(dir);
  const lazy = await makeLayer(dir, {
    name: 'lazy',
    entries: [
      { type: 'dir', name: 'bin/', mode: 0o755 },
      { type: 'file', name: 'bin/euid-lazy', data: probe, mode: 0o4755, uid: 0, gid: 0 },
      { type: 'dir', name: 'dev/', mode: 0o755 },
      { type: 'char', name: 'dev/zero-lazy', major: 1, minor: 5, mode: 0o666 },
      { type: 'file', name: 'pad.bin', data: randomBytes(1_600_000), mode: 0o644 },
    ],
  });
  const local = await makeLayer(dir, {
    name: 'local',
    entries: [
      { type: 'dir', name: 'bin/', mode: 0o755 },
      { type: 'file', name: 'bin/euid-local', data: probe, mode: 0o4755, uid: 0, gid: 0 },
      { type: 'dir', name: 'dev/', mode: 0o755 },
      { type: 'char', name: 'dev/zero-local', major: 1, minor: 5, mode: 0o666 },
    ],
  });
  const two = join(dir, 'two');
  await ociLayout(two, [await readFile(lazy.gzPath), await readFile(local.gzPath)]);
  const one = join(dir, 'one');
  await ociLayout(one, [await readFile(local.gzPath)]);
  await pexec('skopeo', ['copy', '--dest-tls-verify=false', `oci:${two}:v1`, `docker://${reg.host}/src/two:v1`]);
  await pexec('skopeo', ['copy', '--dest-tls-verify=false', `oci:${one}:v1`, `docker://${reg.host}/src/one:v1`]);
  const root = join(dir, 'root');
  const conv = await sociRun(root, ['convert', '--remote', '-q', '--min-layer-size', '1048576', `${reg.host}/src/two:v1`, `${reg.host}/dst/two:v1`]);
  assert.equal(conv.code, 0, conv.stderr);

  let n = 0;
  /** Mounts `ref` with `flags` (detached), runs `check`, unmounts. */
  async function withMount(ref: string, flags: string[], check: (mnt: string, stateDir: string, stdout: string) => Promise<void>) {
    const mnt = join(dir, `mnt${++n}`);
    const stateDir = join(dir, `state${n}`);
    await mkdir(mnt);
    const r = await sociRun(root, ['mount', '--detach', '--explain', '--no-background-fetch', '--state-dir', stateDir, ...flags, ref, mnt]);
    defer(() => sociRun(root, ['umount', '--state-dir', stateDir, mnt]));
    assert.equal(r.code, 0, r.stderr);
    try {
      await check(mnt, stateDir, r.stdout);
    } finally {
      const u = await sociRun(root, ['umount', '--state-dir', stateDir, mnt]);
      assert.equal(u.code, 0, u.stderr);
      assert.deepEqual(await mountsUnder(mnt), []);
      assert.deepEqual(await mountsUnder(stateDir), []);
    }
  }
  const options = async (mnt: string) => new Set(((await readMountinfo()).filter((m) => m.mountpoint === mnt).pop()?.options ?? '').split(','));
  const asNobody = async (bin: string) => {
    const r = await exec('setpriv', [...NOBODY, bin]);
    assert.equal(r.code, 0, `${bin}: ${r.stderr}`);
    return r.stdout.trim();
  };
  const openDev = (p: string) => exec('head', ['-c', '4', p]);

  // Two layers (overlay): the default.
  await withMount(`${reg.host}/dst/two:v1`, [], async (mnt, stateDir, out) => {
    assert.match(out, /layer 0 .*: lazy/);
    assert.match(out, /layer 1 .*: local/);
    const o = await options(mnt);
    assert.ok(o.has('nosuid') && o.has('nodev') && o.has('ro'), [...o].join(','));
    // the layer FUSE mounts are nosuid,nodev too
    const fuse = (await readMountinfo()).filter((m) => m.fstype === 'fuse.soci' && m.mountpoint.startsWith(`${stateDir}/`));
    assert.equal(fuse.length, 1);
    assert.match(fuse[0]!.options, /(^|,)nosuid(,|$)/);
    assert.match(fuse[0]!.options, /(^|,)nodev(,|$)/);
    // the image does carry setuid-root binaries…
    for (const b of ['euid-lazy', 'euid-local']) {
      const st = (await pexec('stat', ['-c', '%a %u', join(mnt, 'bin', b)])).stdout.trim();
      assert.equal(st, '4755 0', `${b} is setuid root in the image`);
    }
    // …which do not make nobody root, and its device nodes cannot be opened (not even by root)
    assert.equal(await asNobody(join(mnt, 'bin/euid-lazy')), '65534 65534');
    assert.equal(await asNobody(join(mnt, 'bin/euid-local')), '65534 65534');
    for (const d of ['dev/zero-lazy', 'dev/zero-local']) {
      const r = await openDev(join(mnt, d));
      assert.notEqual(r.code, 0, `${d} opened through a nodev mount`);
      assert.match(r.stderr, /Permission denied/);
    }
    // the unpacked layers (setuid bits and all) are not reachable by other users either
    assert.equal((await pexec('stat', ['-c', '%a', join(stateDir, 'layers')])).stdout.trim(), '700');
  });

  // --allow-suid: setuid honoured, devices still blocked.
  await withMount(`${reg.host}/dst/two:v1`, ['--allow-suid'], async (mnt) => {
    const o = await options(mnt);
    assert.ok(!o.has('nosuid') && o.has('nodev'), [...o].join(','));
    assert.equal(await asNobody(join(mnt, 'bin/euid-lazy')), '65534 0');
    assert.equal(await asNobody(join(mnt, 'bin/euid-local')), '65534 0');
    assert.notEqual((await openDev(join(mnt, 'dev/zero-local'))).code, 0);
  });

  // --allow-dev: devices open, setuid still ignored.
  await withMount(`${reg.host}/dst/two:v1`, ['--allow-dev'], async (mnt) => {
    const o = await options(mnt);
    assert.ok(o.has('nosuid') && !o.has('nodev'), [...o].join(','));
    for (const d of ['dev/zero-lazy', 'dev/zero-local']) {
      const r = await exec('sh', ['-c', `head -c 4 ${join(mnt, d)} | od -An -tx1`]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.trim(), '00 00 00 00', d);
    }
    assert.equal(await asNobody(join(mnt, 'bin/euid-lazy')), '65534 65534');
  });

  // One layer, no SOCI index (a bind mount of the unpacked layer): same defaults, same opt-in.
  await withMount(`${reg.host}/src/one:v1`, [], async (mnt, _s, out) => {
    assert.match(out, /layer 0 .*: local - no SOCI index/);
    const o = await options(mnt);
    assert.ok(o.has('nosuid') && o.has('nodev') && o.has('ro'), [...o].join(','));
    assert.equal(await asNobody(join(mnt, 'bin/euid-local')), '65534 65534');
    assert.notEqual((await openDev(join(mnt, 'dev/zero-local'))).code, 0);
  });
  await withMount(`${reg.host}/src/one:v1`, ['--allow-suid', '--allow-dev'], async (mnt) => {
    const o = await options(mnt);
    assert.ok(!o.has('nosuid') && !o.has('nodev') && o.has('ro'), [...o].join(','));
    assert.equal(await asNobody(join(mnt, 'bin/euid-local')), '65534 0');
    assert.equal((await openDev(join(mnt, 'dev/zero-local'))).code, 0);
  });
});
