/**
 * Record → convert → replay, on a real registry and FUSE: `soci mount --record` writes which files
 * a run read, in read order; `soci convert --prefetch-record` turns that into AWS-format prefetch
 * artifacts; `soci mount --prefetch` then fetches those spans at mount, before the first read of
 * them (checked in the request log of a proxy in front of the registry: reading the recorded files
 * sends no more Range requests, reading another file does). A prefetch artifact that is gone from
 * the registry leaves a mount that still works.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { needs, waitFor } from '../../harness/env.js';
import { startFaultProxy } from '../../harness/fault-proxy.js';
import { blobPath } from '../../harness/hostile-image.js';
import { buildLayout, pseudoRandom } from '../../harness/images.js';
import { startRegistry } from '../../harness/registry.js';
import { soci } from '../../harness/soci-cli.js';
import { scratch } from './util.js';

const pexec = promisify(execFile);

test('prefetch: record a run, convert with the record, the replay fetches those spans before they are read', {
  skip: needs({ root: true, tools: ['docker-registry', 'skopeo'] }),
  timeout: 300_000,
}, async (t) => {
  const { dir, defer } = await scratch(t, 'soci-prefetch-');
  const reg = await startRegistry(t);
  const files: Record<string, Buffer> = {};
  for (let i = 0; i < 16; i++) files[`data/f${i}.bin`] = pseudoRandom(192 << 10, 40 + i, 0.1);
  const img = buildLayout(join(dir, 'img'), { images: [{ layers: [{ files }, { files: { 'etc/motd': 'm\n' } }] }] });
  const layer = img.layers[0]![0]!;
  await pexec('skopeo', ['copy', '--dest-tls-verify=false', `oci:${img.dir}:latest`, `docker://${reg.host}/src/app:v1`]);
  const root = join(dir, 'root');
  const convert = ['convert', '--remote', '--min-layer-size', '100000', '--span-size', '65536'];
  await soci(root, [...convert, `${reg.host}/src/app:v1`, `${reg.host}/dst/app:v1`]);

  const mount = async (name: string, args: string[]) => {
    const mnt = join(dir, name);
    const state = join(dir, `${name}-state`);
    await mkdir(mnt);
    await soci(root, ['mount', '--detach', '--no-background-fetch', '--state-dir', state, ...args, mnt]);
    let mounted = true;
    const umount = async () => {
      if (mounted) await soci(root, ['umount', '--state-dir', state, mnt]);
      mounted = false;
    };
    defer(umount);
    return { mnt, umount };
  };

  // 1. Record: two files read, the second one first.
  const rec = join(dir, 'record.json');
  const a = await mount('rec', ['--record', rec, '--record-quiet-ms', '1000', `${reg.host}/dst/app:v1`]);
  await pexec('cat', [join(a.mnt, 'data/f9.bin')]);
  await pexec('cat', [join(a.mnt, 'data/f3.bin')]);
  await waitFor(() => existsSync(rec), 20_000, 100);
  const record = JSON.parse(await readFile(rec, 'utf8')) as {
    version: number;
    manifest: string;
    files: Array<{ layer: string; path: string; ranges?: Array<[number, number]> }>;
  };
  assert.equal(record.version, 1);
  assert.deepEqual(
    record.files.map((f) => [f.layer, f.path]),
    [
      [layer, 'data/f9.bin'],
      [layer, 'data/f3.bin'],
    ],
  );
  assert.deepEqual(
    record.files.map((f) => f.ranges),
    [[[0, 192 << 10]], [[0, 192 << 10]]],
    'each file read whole: one range',
  );
  await a.umount();

  // 2. Convert with the record: AWS-format prefetch artifacts for the layer.
  const conv = await soci(root, [...convert, '--prefetch-record', rec, `${reg.host}/src/app:v1`, `${reg.host}/dst/app2:v1`]);
  const m = new RegExp(`^Created prefetch artifact for layer ${layer}: (sha256:[0-9a-f]{64})$`, 'm').exec(conv.stdout);
  assert.ok(m, conv.stdout);

  // 3. Replay through a recording proxy: the spans are there before the first read.
  const proxy = await startFaultProxy(t, reg.host);
  const ranges = () => proxy.requests.filter((r) => r.path.includes(`/blobs/${layer}`) && r.headers.range).length;
  const b = await mount('replay', ['--prefetch', `${proxy.host}/dst/app2:v1`]);
  const atMount = ranges();
  assert.ok(atMount >= 1, 'the prefetch fetched spans at mount');
  for (const name of ['data/f9.bin', 'data/f3.bin']) assert.ok((await readFile(join(b.mnt, name))).equals(files[name]!), name);
  assert.equal(ranges(), atMount, 'reading the recorded files sends no Range request: they were prefetched');
  assert.ok((await readFile(join(b.mnt, 'data/f14.bin'))).equals(files['data/f14.bin']!));
  assert.ok(ranges() > atMount, 'a file outside the record is fetched on demand');
  await b.umount();

  // 4. The prefetch artifact gone from the registry: the mount still works, on demand.
  await rm(blobPath(reg, m[1]!), { force: true });
  const c = await mount('gone', ['--prefetch', `${reg.host}/dst/app2:v1`]);
  assert.ok((await readFile(join(c.mnt, 'data/f9.bin'))).equals(files['data/f9.bin']!));
  const log = await readFile(join(dir, 'gone-state', 'mount.log'), 'utf8');
  assert.match(log, new RegExp(`soci: prefetch skipped, reads fetch on demand: prefetch artifact ${m[1]}`));
});
