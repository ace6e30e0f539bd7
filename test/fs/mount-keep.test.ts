/**
 * `soci mount` outlives its own process: each lazy layer's FUSE connection is kept by a holder, so
 * a `soci mount` that is SIGKILLed leaves its tree mounted and its readers waiting, not failing; the
 * same `soci mount` run again takes the tree over (no new mounts) and answers them. `soci umount`
 * then ends the holders. Registry, FUSE and overlayfs are real.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { convertedAppImage } from '../../harness/loop.js';
import { mountsUnder } from '../../harness/containerd.js';
import { needs, waitFor } from '../../harness/env.js';
import { startRegistry } from '../../harness/registry.js';
import { soci } from '../../harness/soci-cli.js';
import { ConnectionKeeper } from '../../src/fuse/index.js';
import { scratch } from './util.js';

const pexec = promisify(execFile);

test('soci mount: a SIGKILLed mount keeps its tree, and soci mount again takes it over; soci umount ends the holders', {
  skip: needs({ root: true, tools: ['docker-registry', 'skopeo', 'md5sum'] }),
  timeout: 300_000,
}, async (t) => {
  assert.equal(ConnectionKeeper.unavailable(), null, 'the fdpass addon is built (npm install)');
  const { dir, defer } = await scratch(t, 'soci-mount-keep-');
  const reg = await startRegistry(t);
  const { image, md5s } = await convertedAppImage(reg, dir, 6);
  const root = join(dir, 'soci');
  const mnt = join(dir, 'mnt');
  await mkdir(mnt);
  const state = join(dir, 'state');
  const args = ['mount', '--detach', '--no-background-fetch', '--state-dir', state, image, mnt];
  defer(() => soci(root, ['umount', '--state-dir', state, mnt]));

  assert.match((await soci(root, args)).stdout, /^mounted .* \(1 of 2 layers lazy\)$/m);
  const first = JSON.parse(await readFile(join(state, 'state.json'), 'utf8')) as { pid: number };
  const mountsBefore = await mountsUnder(dir);
  assert.equal((await pexec('md5sum', [join(mnt, 'usr/share/bulk/part0.bin')])).stdout.split(' ')[0], md5s[0]);

  // The process dies: the tree stays, and a read of a file never read before waits for a server.
  process.kill(first.pid, 'SIGKILL');
  await waitFor(() => !existsSync(`/proc/${first.pid}`), 10_000);
  assert.deepEqual(await mountsUnder(dir), mountsBefore, 'every mount stays');
  const waiting = pexec('md5sum', [join(mnt, 'usr/share/bulk/part3.bin')], { timeout: 60_000 });
  await new Promise((r) => setTimeout(r, 500));

  const again = await soci(root, args);
  assert.match(again.stdout, new RegExp(`^took over .* from pid ${first.pid} \\(1 of 2 layers lazy\\)$`, 'm'));
  assert.equal((await waiting).stdout.split(' ')[0], md5s[3], 'the waiting read is answered right');
  for (const i of [1, 2, 4, 5]) {
    assert.equal((await pexec('md5sum', [join(mnt, `usr/share/bulk/part${i}.bin`)])).stdout.split(' ')[0], md5s[i]);
  }
  assert.deepEqual(await mountsUnder(dir), mountsBefore, 'the same mounts, no new ones');

  // soci umount: nothing mounted, nothing kept.
  const holders = (await new ConnectionKeeper(join(state, 'fuse-connections')).live()).map((k) => k.holder!.pid);
  assert.equal(holders.length, 1, 'one lazy layer, one holder');
  await soci(root, ['umount', '--state-dir', state, mnt]);
  assert.deepEqual(await mountsUnder(dir), []);
  assert.ok(await waitFor(() => holders.every((p) => !existsSync(`/proc/${p}`)), 5000), 'the holders are gone');
});
