/**
 * `soci mount` end to end against a real registry: a 3-layer image (a 300 MB layer, a mid layer
 * with hardlinks/symlinks/whiteouts/an opaque dir, a small unindexed layer) is pushed, converted
 * with `soci convert` (v2), mounted with `soci mount --detach`, and the merged tree is compared with
 * `umoci unpack` of the original image. Laziness: reading one small file fetches only its spans.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdir, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { needs } from '../../harness/env.js';
import { fixtureCacheDir, makeBigLayer, makeLayer } from '../../harness/fixtures.js';
import { ociLayout, pseudoRandom } from '../../harness/images.js';
import { startRegistry } from '../../harness/registry.js';
import { mountsUnder } from '../../harness/containerd.js';
import { compareDumps, isAscii, scratch } from './util.js';
import { SOCI_MAIN, soci } from '../../harness/soci-cli.js';

const pexec = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));

type Dump = Record<string, Record<string, unknown>>;
async function walk(path: string): Promise<Dump> {
  const { stdout } = await pexec('python3', [join(here, 'tree_dump.py'), 'walk', path], { maxBuffer: 1 << 28, timeout: 180_000 });
  return JSON.parse(stdout) as Dump;
}

/** Overlay hides trusted.overlay.* and lower inode numbers/nlink differ: compare the rest. */
function normalize(d: Dump): Dump {
  const out: Dump = {};
  for (const [p, e] of Object.entries(d)) {
    if (p === '') continue;
    const xattrs = Object.fromEntries(Object.entries((e.xattrs as Record<string, string>) ?? {}).filter(([k]) => !k.startsWith('trusted.overlay.')));
    const { ino: _i, nlink: _n, ...rest } = e;
    const mode = e.mode as number;
    // Directory mtimes depend on how the unpacker replays changes; files and symlinks must match.
    if ((mode & 0o170000) === 0o040000) delete rest.mtime_ns;
    out[p] = { ...rest, xattrs };
  }
  return out;
}

test('soci mount: merged lazy tree equals umoci unpack; one small read fetches only its spans', {
  skip: needs({ root: true, tools: ['docker-registry', 'skopeo', 'umoci', 'python3', 'pigz', 'setfattr', 'mknod'] }),
  timeout: 600_000,
}, async (t) => {
  const { dir, defer } = await scratch(t, 'soci-mount-e2e-');
  const reg = await startRegistry(t);
  const big = await makeBigLayer(fixtureCacheDir(), 300); // ≥ 200 MB; cached, shared with test/ztoc
  const mid = await makeLayer(dir, {
    name: 'mid',
    entries: [
      { type: 'dir', name: 'etc/' },
      { type: 'file', name: 'etc/hosts', data: '127.0.0.1 localhost\n', mode: 0o644 },
      { type: 'hardlink', name: 'etc/hosts-link', linkname: 'etc/hosts' },
      { type: 'symlink', name: 'etc/alias', linkname: 'hosts' },
      { type: 'file', name: 'etc/suid', data: 'x', mode: 0o4755, uid: 1000, gid: 1000, pax: { 'SCHILY.xattr.user.note': 'mid-layer' } },
      { type: 'file', name: 'data/d0/.wh.file-0000.bin', data: '' },
      { type: 'file', name: 'data/d1/.wh..wh..opq', data: '' },
      { type: 'file', name: 'data/d1/only-this.txt', data: 'opaque dir content\n' },
      { type: 'dir', name: 'opq/' },
      { type: 'file', name: 'opq/old.txt', data: 'hidden by the next layer\n' },
      { type: 'file', name: 'blob.bin', data: pseudoRandom(2_500_000, 7, 0.2) },
    ],
  });
  const small = await makeLayer(dir, {
    name: 'small',
    entries: [
      { type: 'file', name: 'etc/.wh.alias', data: '' },
      { type: 'file', name: 'opq/.wh..wh..opq', data: '' },
      { type: 'file', name: 'opq/new.txt', data: 'new\n' },
      { type: 'file', name: 'top.txt', data: 'top layer\n', mode: 0o600 },
      { type: 'hardlink', name: 'top-link.txt', linkname: 'top.txt' },
      { type: 'symlink', name: 'bin', linkname: 'usr/bin' },
    ],
  });
  const oci = join(dir, 'oci');
  await ociLayout(oci, [await readFile(big.gzPath), await readFile(mid.gzPath), await readFile(small.gzPath)]);
  await pexec('skopeo', ['copy', '--dest-tls-verify=false', `oci:${oci}:v1`, `docker://${reg.host}/src/app:v1`]);
  const root = join(dir, 'root');
  await soci(root, ['convert', '--remote', '--min-layer-size', '1000000', '--span-size', '1048576', `${reg.host}/src/app:v1`, `${reg.host}/dst/app:v1`]);

  // Reference tree: umoci unpack of the original image.
  await pexec('umoci', ['unpack', '--image', `${oci}:v1`, join(dir, 'bundle')], { maxBuffer: 1 << 26 });
  const want = normalize(await walk(join(dir, 'bundle', 'rootfs')));

  const mnt = join(dir, 'mnt');
  await mkdir(mnt);
  const stateDir = join(dir, 'state');
  const r = await soci(root, ['mount', '--detach', '--explain', '--no-background-fetch', '--state-dir', stateDir, `${reg.host}/dst/app:v1`, mnt]);
  defer(async () => {
    await soci(root, ['umount', '--state-dir', stateDir, mnt]).catch((e: Error) => process.stderr.write(`umount: ${e.message}\n`));
  });
  t.diagnostic(r.stdout.trim());
  assert.match(r.stdout, /layer 0 .*: lazy/);
  assert.match(r.stdout, /layer 1 .*: lazy/);
  assert.match(r.stdout, /layer 2 .*: local - not in the SOCI index/);
  const state = JSON.parse(await readFile(join(stateDir, 'state.json'), 'utf8')) as {
    pid: number;
    layers: Array<{ digest: string; lazy: boolean; dir: string }>;
  };
  const layerState = async (i: number) => {
    const l = state.layers[i]!;
    return JSON.parse((await pexec('cat', [join(l.dir, '.soci-snapshotter', `${l.digest}.json`)])).stdout) as {
      size: number;
      fetchedSize: number;
      stats: { rangeRequests: number; spansFetched: number; totalSpans: number };
    };
  };

  // Nothing fetched yet; one small read fetches one (or two) 1 MiB spans of the big layer.
  const s0 = await layerState(0);
  assert.equal(s0.fetchedSize, 0);
  const f = [...big.files].filter((x) => !x.name.includes('/d0/') && !x.name.includes('/d1/')).sort((a, b) => a.size - b.size)[0]!;
  const head = (await pexec('head', ['-c', '100', join(mnt, f.name)], { encoding: 'buffer' })).stdout;
  assert.equal(head.length, 100);
  const s1 = await layerState(0);
  t.diagnostic(
    `big layer: ${s1.size} B, ${s1.stats.totalSpans} spans; after reading 100 B: ${s1.stats.rangeRequests} range requests, ${s1.stats.spansFetched} spans, ${s1.fetchedSize} B fetched`,
  );
  assert.ok(s1.stats.totalSpans >= 8, `want many spans, got ${s1.stats.totalSpans}`);
  assert.ok(s1.stats.spansFetched >= 1 && s1.stats.spansFetched <= 2, `spans fetched: ${s1.stats.spansFetched}`);
  assert.ok(s1.fetchedSize < s1.size / 4, `fetched ${s1.fetchedSize} of ${s1.size}`);
  const blobGets = (await reg.accessLog()).filter((e) => e.method === 'GET' && e.path.includes(`/dst/app/blobs/${state.layers[0]!.digest}`));
  assert.equal(blobGets.length, s1.stats.rangeRequests, 'registry saw exactly the span manager range requests');

  // The whole merged tree equals the reference unpack.
  const got = normalize(await walk(mnt));
  assert.ok(Object.keys(want).length > 20, `reference tree has only ${Object.keys(want).length} entries`);
  const diffs = compareDumps(got, want, { skipNames: (p) => !isAscii(p) });
  assert.deepEqual(diffs, []);
  assert.ok(!got[Buffer.from('data/d0/file-0000.bin').toString('base64')], 'whiteout hides the big layer file');
  assert.ok(!got[Buffer.from('opq/old.txt').toString('base64')], 'opaque dir hides lower content');
  // The unconverted image (no SOCI index): every layer unpacked locally, same tree.
  const mnt2 = join(dir, 'mnt2');
  await mkdir(mnt2);
  const state2 = join(dir, 'state2');
  const r2 = await soci(root, ['mount', '--detach', '--explain', '--state-dir', state2, `${reg.host}/src/app:v1`, mnt2]);
  defer(async () => {
    await soci(root, ['umount', '--state-dir', state2, mnt2]).catch((e: Error) => process.stderr.write(`umount: ${e.message}\n`));
  });
  assert.match(r2.stdout, /index: none/);
  assert.match(r2.stdout, /layer 0 .*: local - no SOCI index/);
  assert.deepEqual(compareDumps(normalize(await walk(mnt2)), want, { skipNames: (p) => !isAscii(p) }), []);

  // Hardlinks within the lazy mid layer share one inode on its FUSE mount.
  const ino = async (p: string) => (await pexec('stat', ['-c', '%i %h', join(state.layers[1]!.dir, p)])).stdout.trim();
  assert.equal(await ino('etc/hosts'), await ino('etc/hosts-link'));
  assert.match(await ino('etc/hosts'), / 2$/);

  // A crashed daemon (SIGKILL): `soci umount` still cleans up the tree and its FUSE layers.
  process.kill(state.pid, 'SIGKILL');
  await soci(root, ['umount', '--state-dir', stateDir, mnt]);
  assert.deepEqual(await mountsUnder(mnt), []);
  assert.deepEqual(await mountsUnder(stateDir), []);

  // Foreground mode: SIGTERM unmounts everything and exits 0.
  const mnt3 = join(dir, 'mnt3');
  await mkdir(mnt3);
  const state3 = join(dir, 'state3');
  const child = spawn(process.execPath, ['--import', 'tsx', SOCI_MAIN, '--root', root, 'mount', '--state-dir', state3, `${reg.host}/dst/app:v1`, mnt3], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  defer(async () => {
    if (child.exitCode === null) child.kill('SIGKILL');
    await soci(root, ['umount', '--state-dir', state3, mnt3]).catch(() => undefined);
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  for (let i = 0; i < 300 && !out.includes('mounted'); i++) await new Promise((r) => setTimeout(r, 100));
  assert.match(out, /mounted .* \(2 of 3 layers lazy\)/);
  assert.equal((await pexec('cat', [join(mnt3, 'top.txt')])).stdout, 'top layer\n');
  assert.ok((await mountsUnder(state3)).length === 2, 'two lazy layer mounts');
  child.kill('SIGTERM');
  assert.equal(await exited, 0);
  assert.deepEqual(await mountsUnder(mnt3), []);
  assert.deepEqual(await mountsUnder(state3), []);
});
