/**
 * Parallel pull and unpack against real components (registry, containerd + CRI, our daemon): an
 * image with a gzip, a zstd and an uncompressed layer (whiteouts, opaque dirs, hardlinks, symlinks,
 * xattrs, setuid bits, owners) is pulled through CRI with `[pull_modes.parallel_pull_unpack]
 * enable = true`, and every layer's snapshot dir, in overlay form, equals the one containerd's own
 * pull and unpack gives with overlayfs; so does the merged tree. containerd fetches no layer blob:
 * our daemon does, in chunked Range requests. With `experimental_parallel_pull_as_fallback`, an
 * image without an index is pulled the same way, its blobs kept in containerd's content store, and
 * an indexed one stays lazy.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { CONTAINERD_VERSIONS, mountsUnder, sociFuseMounts, startContainerd, startSnapshotter, type StartedContainerd } from '../../harness/containerd.js';
import { criPull } from '../../harness/cri.js';
import { needs } from '../../harness/env.js';
import { makeLayer } from '../../harness/fixtures.js';
import { pseudoRandom } from '../../harness/images.js';
import { writeLayout } from '../../harness/layout.js';
import { startRegistry, type TestRegistry } from '../../harness/registry.js';
import { soci } from '../../harness/soci-cli.js';
import { umountPath } from '../../src/host/index.js';
import { chainIds, digestOf } from '../../src/oci/digest.js';
import { compareDumps, scratch } from '../fs/util.js';

const pexec = promisify(execFile);
const DUMP = join(dirname(fileURLToPath(import.meta.url)), '..', 'fs', 'tree_dump.py');
const skip = needs({ root: true, tools: ['containerd', 'ctr', 'runc', 'docker-registry', 'skopeo', 'python3', 'zstd', 'setfattr', 'mknod'] });

type Dump = Record<string, Record<string, unknown>>;

async function walk(path: string): Promise<Dump> {
  const { stdout } = await pexec('python3', [DUMP, 'walk', path], { maxBuffer: 1 << 28, timeout: 180_000 });
  return JSON.parse(stdout) as Dump;
}

/** Inode numbers differ between two trees; which names share one is kept as a group key. */
function comparable(d: Dump): Dump {
  const groups = new Map<unknown, string>();
  for (const [p, e] of Object.entries(d)) if ((e.nlink as number) > 1 && (e.mode as number) >>> 12 !== 4) groups.set(e.ino, groups.get(e.ino) ?? p);
  const out: Dump = {};
  for (const [p, e] of Object.entries(d)) {
    const { ino: _i, ...rest } = e;
    out[p] = { ...rest, ...(groups.has(e.ino) && (e.mode as number) >>> 12 !== 4 ? { link_group: groups.get(e.ino) } : {}) };
  }
  return out;
}

/**
 * Differences between two dumps. Directories the layer does not list (the root, parents it only
 * implies) and whiteout devices get the time of the unpack on either side: their mtimes, later than
 * `since`, are not compared.
 */
function treeDiffs(got: Dump, want: Dump, since: number): string[] {
  const unpackTime = (e: Record<string, unknown> | undefined) =>
    e !== undefined && ((e.mode as number) >>> 12 === 4 || (e.mode as number) >>> 12 === 2) && (e.mtime_ns as number) > since * 1e6;
  const strip = (d: Dump) =>
    Object.fromEntries(
      Object.entries(d).map(([p, e]) => {
        if (!unpackTime(want[p]) || !unpackTime(got[p])) return [p, e];
        const { mtime_ns: _m, ...rest } = e;
        return [p, rest];
      }),
    );
  const diffs = compareDumps(strip(got), strip(want));
  for (const [p, g] of Object.entries(got))
    if (want[p] && g.link_group !== want[p].link_group) diffs.push(`${Buffer.from(p, 'base64').toString()}: hardlink group differs`);
  return diffs;
}

/** The three layers, bottom first, and their media types; `seed` varies the big files' bytes (and so every digest). */
async function buildImage(dir: string, seed = 11): Promise<{ layout: string; diffIds: string[]; layers: string[] }> {
  const base = await makeLayer(dir, {
    name: `base-${seed}`,
    entries: [
      { type: 'dir', name: 'etc/', mode: 0o755 },
      { type: 'file', name: 'etc/hosts', data: '127.0.0.1 localhost\n' },
      { type: 'hardlink', name: 'etc/hosts.bak', linkname: 'etc/hosts' },
      { type: 'symlink', name: 'etc/alias', linkname: 'hosts' },
      { type: 'file', name: 'etc/suid', data: 'x', mode: 0o4755, uid: 1000, gid: 1000, pax: { 'SCHILY.xattr.user.note': 'base' } },
      { type: 'dir', name: 'opq/', mode: 0o750 },
      { type: 'file', name: 'opq/old.txt', data: 'hidden by the opaque marker above\n' },
      { type: 'dir', name: 'gone/' },
      { type: 'file', name: 'gone/a.txt', data: 'a' },
      { type: 'file', name: 'big.bin', data: pseudoRandom(3_000_000, seed, 0.2) },
      { type: 'fifo', name: 'run/fifo' },
      { type: 'dir', name: 'xdir/', mode: 0o711, pax: { 'SCHILY.xattr.user.note': 'lower dir' } },
      { type: 'file', name: 'xdir/f', data: 'f' },
    ],
  });
  const mid = await makeLayer(dir, {
    name: `mid-${seed}`,
    entries: [
      { type: 'file', name: 'etc/.wh.alias', data: '' },
      { type: 'file', name: 'opq/.wh..wh..opq', data: '' },
      // implied, and only marked opaque: containerd copies the lower dir's owner, mode, xattrs and times
      { type: 'file', name: 'xdir/.wh..wh..opq', data: '' },
      { type: 'file', name: 'opq/new.txt', data: 'new\n', mode: 0o600, uid: 33, gid: 33 },
      { type: 'file', name: '.wh.gone', data: '' },
      { type: 'file', name: 'mid.bin', data: pseudoRandom(700_000, seed + 1, 0.5) },
      { type: 'hardlink', name: 'mid-link.bin', linkname: 'mid.bin' },
    ],
  });
  const top = await makeLayer(dir, {
    name: `top-${seed}`,
    entries: [
      { type: 'file', name: 'etc/hosts', data: '127.0.0.1 localhost top\n' },
      { type: 'dir', name: 'gone/', mode: 0o700 },
      { type: 'file', name: 'gone/b.txt', data: 'b' },
      { type: 'symlink', name: 'bin', linkname: 'usr/bin' },
      { type: 'file', name: '.wh.mid-link.bin', data: '' },
    ],
  });
  const raw = await Promise.all([base, mid, top].map((l) => readFile(l.tarPath)));
  const zstd = (await pexec('zstd', ['-q', '-c', mid.tarPath], { encoding: 'buffer', maxBuffer: 1 << 26 })).stdout;
  const layers = [
    { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', diffId: digestOf(raw[0]!), bytes: await readFile(base.gzPath) },
    { mediaType: 'application/vnd.oci.image.layer.v1.tar+zstd', diffId: digestOf(raw[1]!), bytes: zstd },
    { mediaType: 'application/vnd.oci.image.layer.v1.tar', diffId: digestOf(raw[2]!), bytes: raw[2]! },
  ];
  const layout = join(dir, `oci-${seed}`);
  const w = writeLayout(layout, [{ layers, config: { config: {} } }], { tag: 'v1' });
  return { layout, diffIds: layers.map((l) => l.diffId), layers: w.layers[0]! };
}

/**
 * The layer dirs of an image's snapshots, bottom first, from the mounts of a view of its top, printed
 * as the view is made: a view takes no lease, so containerd may collect it at once, but the
 * committed layers' dirs stay.
 */
async function layerDirs(cd: StartedContainerd, ns: string, snapshotter: string, top: string, n: number): Promise<string[]> {
  const key = `view-${snapshotter}-${Date.now()}`;
  const v = await cd.ctr(['-n', ns, 'snapshots', '--snapshotter', snapshotter, 'view', '--mounts', key, top]);
  assert.equal(v.code, 0, v.stderr);
  // ctr prints the mounts with Go's field names (Type, Source, Options).
  const mounts = JSON.parse(v.stdout) as Array<{ Options?: string[]; options?: string[] }>;
  const lower = (mounts[0]?.Options ?? mounts[0]?.options ?? []).find((o) => o.startsWith('lowerdir='));
  assert.ok(lower, `view mounts: ${v.stdout}`);
  const dirs = lower.slice('lowerdir='.length).split(':').reverse();
  assert.equal(dirs.length, n, v.stdout);
  await cd.ctr(['-n', ns, 'snapshots', '--snapshotter', snapshotter, 'rm', key]);
  return dirs;
}

/** The merged tree of these layer dirs, through a read-only overlay mount of our own. */
async function mergedDump(dirs: string[], at: string): Promise<Dump> {
  await mkdir(at, { recursive: true });
  await pexec('mount', ['-t', 'overlay', 'overlay', '-o', `ro,lowerdir=${[...dirs].reverse().join(':')}`, at]);
  try {
    return comparable(await walk(at));
  } finally {
    await umountPath(at);
  }
}

async function push(reg: TestRegistry, layout: string, ref: string): Promise<void> {
  await pexec('skopeo', ['copy', '--preserve-digests', '--dest-tls-verify=false', `oci:${layout}:v1`, `docker://${reg.host}/${ref}`], { timeout: 120_000 });
}

for (const version of CONTAINERD_VERSIONS)
  test(`parallel pull and unpack: gzip, zstd and uncompressed layers give overlayfs's trees (containerd ${version})`, { skip, timeout: 900_000 }, async (t) => {
    const { dir, defer } = await scratch(t, 'soci-ppu-');
    const reg = await startRegistry(t);
    const since = Date.now();
    const img = await buildImage(dir);
    await push(reg, img.layout, 'ppu/app:v1');
    const ref = `${reg.host}/ppu/app:v1`;
    const chunk = 256 * 1024;
    const sn = await startSnapshotter(t, {
      config: `[pull_modes.parallel_pull_unpack]\nenable = true\nconcurrent_download_chunk_size = "256kb"\nmax_concurrent_unpacks_per_image = 2\ndiscard_unpacked_layers = true\n`,
    });
    const cd = await startContainerd(t, { snapshotterSocket: sn.address, cri: true, version, plainHttpRegistries: [reg.host] });
    defer(async () => {
      for (const m of await mountsUnder(dir)) await umountPath(m).catch(() => undefined);
    });

    const logFrom = (await reg.accessLog()).length;
    await criPull(cd.address, ref);
    // Our daemon prepared every layer itself; containerd fetched none of them.
    const prepared = sn.logLines().filter((l) => l.msg === 'layer pulled and unpacked in parallel');
    assert.deepEqual(prepared.map((l) => l.layer).sort(), [...img.layers].sort());
    const content = await cd.ctr(['-n', 'k8s.io', 'content', 'ls', '-q']);
    for (const l of img.layers) assert.ok(!content.stdout.includes(l), `containerd's content store has layer ${l}`);
    const gets = (await reg.accessLog()).slice(logFrom).filter((e) => e.method === 'GET' && img.layers.some((l) => e.path.endsWith(l)));
    const sizes = await Promise.all(img.layers.map(async (l) => (await readFile(join(img.layout, 'blobs', 'sha256', l.slice(7)))).length));
    assert.equal(
      gets.length,
      sizes.reduce((a, s) => a + Math.ceil(s / chunk), 0),
      'one GET per chunk of every layer',
    );
    assert.deepEqual(await sociFuseMounts(sn.root), [], 'nothing is lazily mounted in parallel mode');

    // The same image through containerd's own pull and unpack (ctr's default snapshotter: overlayfs).
    const pull = await cd.ctr(['-n', 'default', 'images', 'pull', '--hosts-dir', cd.hostsDir, ref], { timeoutMs: 300_000 });
    assert.equal(pull.code, 0, pull.stderr);

    const top = chainIds(img.diffIds).at(-1)!;
    const ours = await layerDirs(cd, 'k8s.io', 'soci', top, 3);
    const theirs = await layerDirs(cd, 'default', 'overlayfs', top, 3);
    for (let i = 0; i < 3; i++) {
      const [g, w] = [comparable(await walk(ours[i]!)), comparable(await walk(theirs[i]!))];
      assert.ok(Object.keys(w).length > 3, `layer ${i}: ${Object.keys(w).length} entries`);
      assert.deepEqual(treeDiffs(g, w, since), [], `layer ${i} (${['gzip', 'zstd', 'uncompressed'][i]}) in overlay form`);
    }
    const merged = await mergedDump(ours, join(dir, 'merged-ours'));
    assert.deepEqual(treeDiffs(merged, await mergedDump(theirs, join(dir, 'merged-theirs')), since), [], 'merged trees');
    const names = Object.keys(merged).map((p) => Buffer.from(p, 'base64').toString());
    for (const hidden of ['etc/alias', 'opq/old.txt', 'gone/a.txt', 'mid-link.bin']) assert.ok(!names.includes(hidden), `${hidden} is hidden`);
    for (const shown of ['opq/new.txt', 'gone/b.txt', 'etc/hosts.bak', 'mid.bin', 'big.bin']) assert.ok(names.includes(shown), `${shown} is there`);
  });

test('experimental_parallel_pull_as_fallback: an image without an index is pulled in parallel, an indexed one stays lazy', {
  skip,
  timeout: 900_000,
}, async (t) => {
  const { dir } = await scratch(t, 'soci-ppf-');
  const reg = await startRegistry(t);
  // Two images with no layer in common: a layer already unpacked would not be prepared again.
  await push(reg, (await buildImage(dir, 21)).layout, 'ppf/plain:v1');
  await push(reg, (await buildImage(dir, 31)).layout, 'ppf/src:v1');
  const root = join(dir, 'soci-root');
  await soci(root, ['convert', '--remote', '--min-layer-size', '1000000', `${reg.host}/ppf/src:v1`, `${reg.host}/ppf/lazy:v1`]);
  // The blobs are kept (AWS's default), in containerd's content store: the daemon is told where
  // containerd will listen before containerd, which needs the daemon's socket, starts.
  const address = join(dir, 'containerd.sock');
  const sn = await startSnapshotter(t, {
    config: `[pull_modes.parallel_pull_unpack]\nexperimental_parallel_pull_as_fallback = true\n[content_store]\ntype = "containerd"\ncontainerd_address = "${address}"\n[background_fetch]\ndisable = true\n`,
  });
  const cd = await startContainerd(t, { snapshotterSocket: sn.address, cri: true, version: '2.2', plainHttpRegistries: [reg.host], address });

  await criPull(cd.address, `${reg.host}/ppf/plain:v1`);
  const parallel = sn.logLines().filter((l) => l.msg === 'layer pulled and unpacked in parallel');
  assert.equal(parallel.length, 3, 'every layer of the image without an index');
  assert.deepEqual(await sociFuseMounts(sn.root), []);
  // containerd fetched no layer, yet has them all: the daemon wrote them, so the image is complete.
  const check = await cd.ctr(['-n', 'k8s.io', 'images', 'check']);
  assert.match(check.stdout, /ppf\/plain:v1\s.*\scomplete \(4\/4\)/, check.stdout); // the config and 3 layers

  await criPull(cd.address, `${reg.host}/ppf/lazy:v1`);
  // Only big.bin's layer is above --min-layer-size: it is mounted lazily; the small ones are unpacked.
  assert.equal((await sociFuseMounts(sn.root)).length, 1, 'the indexed layer is lazily mounted');
  assert.ok(await sn.waitLine((l) => l.msg === 'remote snapshot successfully prepared'));
});
