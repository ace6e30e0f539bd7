/**
 * Hostile tar names never reach outside a layer's root. Every name (`.`, `..`, `.wh.`, `.wh..`,
 * `.wh...`, `a/.wh..`, `/abs/path`, `../../escape`, `a/../../b`, `link -> /` then `link/x`,
 * whiteouts, opaque markers and hardlinks through a symlink, a dir later swapped for a symlink) is
 * applied by the local unpacker into a root that sits inside sentinel dirs, and built into the FUSE
 * tree from its zTOC: both give the same answer (normalised inside the root, or the layer refused
 * with a one-line ERR_BAD_TAR), and nothing outside the root changes. End to end: images carrying
 * them in an indexed (lazy) and in an unindexed (unpacked) layer go through `soci convert --remote`
 * and `soci mount`, and their layers through the snapshotter's local unpacker.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { needs } from '../../harness/env.js';
import { rawTar, type RawHeaderFields } from '../../harness/fixtures.js';
import { pseudoRandom } from '../../harness/images.js';
import { startRegistry } from '../../harness/registry.js';
import { mountsUnder } from '../../harness/containerd.js';
import { isSociError } from '../../src/errors.js';
import { LayerTree, unpackLayer } from '../../src/fs/index.js';
import { RegistryClient } from '../../src/registry/index.js';
import { PullingUnpacker } from '../../src/snapshotter/local-unpacker.js';
import { ImagePuller } from '../../src/pull/index.js';
import { defaultConfig, parallelPullSettings } from '../../src/snapshotter/config.js';
import { LABELS } from '../../src/snapshotter/labels.js';
import { buildZtoc } from '../../src/ztoc/index.js';
import { scratch } from './util.js';
import { digestOf } from '../../src/oci/digest.js';
import { oneLineError, soci, sociFail } from '../../harness/soci-cli.js';
import { silentLogger } from '../../src/logger.js';

/** a name at the host's root that an escape through `link -> /` would create */
const ESCAPE = `soci-hostile-escape-${process.pid}`;
const TOOLS = ['mknod', 'setfattr', 'getfattr'];

type Entry = { header: RawHeaderFields; data?: Buffer | string };
const dir = (name: string): Entry => ({ header: { name, typeflag: '5', mode: '0000755\0' } });
const file = (name: string, data: string | Buffer = ''): Entry => ({ header: { name }, data });
const symlink = (name: string, linkname: string): Entry => ({ header: { name, typeflag: '2', linkname } });
const hardlink = (name: string, linkname: string): Entry => ({ header: { name, typeflag: '1', linkname } });

async function* chunks(b: Buffer): AsyncIterable<Buffer> {
  for (let o = 0; o < b.length; o += 777) yield b.subarray(o, o + 777);
}

/**
 * A sentinel world: `top/sentinel.txt`, `top/outside/secret.txt` (what symlinks point at),
 * `top/snapshots/sentinel.txt`, `top/snapshots/10/sentinel.txt`, and the empty root
 * `top/snapshots/10/fs` (the snapshotter's layout). `reset()` empties the root again.
 */
function world(top: string) {
  const root = join(top, 'snapshots', '10', 'fs');
  const outside = join(top, 'outside');
  mkdirSync(root, { recursive: true });
  mkdirSync(outside);
  writeFileSync(join(top, 'sentinel.txt'), 'top');
  writeFileSync(join(outside, 'secret.txt'), 'secret');
  writeFileSync(join(top, 'snapshots', 'sentinel.txt'), 'snapshots');
  writeFileSync(join(top, 'snapshots', '10', 'sentinel.txt'), 'snapshot 10');
  // An old mtime: a directory time replayed through a symlink would show.
  execFileSync('touch', ['-h', '-d', '2001-01-01', outside, join(top, 'snapshots', '10'), join(top, 'snapshots'), top]);
  return {
    top,
    root,
    outside,
    reset() {
      rmSync(root, { recursive: true, force: true });
      mkdirSync(root);
    },
    /** Everything outside the root (the root itself: only that it is a directory). */
    snapshot(): Map<string, string> {
      const out = new Map<string, string>();
      const walk = (p: string) => {
        const st = lstatSync(p);
        if (p === root) {
          out.set(p, st.isDirectory() ? 'root dir' : `root is now mode ${st.mode.toString(8)}`);
          return;
        }
        let d = `${st.mode.toString(8)} ${st.uid}:${st.gid} ${st.size} ${st.mtimeMs} rdev=${st.rdev} ino=${st.ino}`;
        if (st.isSymbolicLink()) d += ` -> ${readlinkSync(p)}`;
        else if (st.isFile()) d += ` ${digestOf(readFileSync(p))}`;
        else if (st.isDirectory())
          d += ` ${execFileSync('getfattr', ['-h', '-d', '-m', '-', '--absolute-names', p])
            .toString()
            .replace(/^#.*\n/m, '')
            .trim()}`;
        out.set(p, d);
        if (st.isDirectory()) for (const n of readdirSync(p)) walk(join(p, n));
      };
      walk(top);
      return out;
    },
  };
}

/** What nothing may ever create: the host-root name an escape through `link -> /` would make. */
function assertNoHostEscape(): void {
  assert.ok(!existsSync(`/${ESCAPE}`), `/${ESCAPE} was created outside every root`);
  rmSync(`/${ESCAPE}`, { force: true, recursive: true });
}

/** The layer as the unpacked dir shows it: path → type (+ symlink target, + file content). */
function dirView(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (p: string, rel: string) => {
    for (const n of readdirSync(p).sort()) {
      const abs = join(p, n);
      const r = rel ? `${rel}/${n}` : n;
      // overlayfs lists a lower layer's whiteout in a dir no other layer has, yet never finds it
      const st = lstatSync(abs, { throwIfNoEntry: false });
      if (!st) continue;
      if (st.isDirectory()) {
        out[r] = 'dir';
        walk(abs, r);
      } else if (st.isSymbolicLink()) out[r] = `symlink ${readlinkSync(abs)}`;
      else if (st.isCharacterDevice() && st.rdev === 0) out[r] = 'whiteout';
      else if (st.isFile()) out[r] = `file ${readFileSync(abs, 'utf8')}`;
      else out[r] = `mode ${st.mode.toString(8)}`;
    }
  };
  walk(root, '');
  return out;
}

/** The same view of the FUSE tree, with overlay's reading of whiteouts (what LayerFs shows). */
function treeView(t: LayerTree, data: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (id: number, rel: string) => {
    const n = t.node(id)!;
    for (const [name, cid] of [...n.children!].sort(([a], [b]) => (a < b ? -1 : 1))) {
      if (name === '.wh..wh..opq') continue;
      const c = t.node(cid)!;
      const r = rel ? `${rel}/${name}` : name;
      if (name.startsWith('.wh.')) {
        if (!n.children!.has(name.slice(4))) out[rel ? `${rel}/${name.slice(4)}` : name.slice(4)] = 'whiteout';
        continue;
      }
      const type = c.mode & 0o170000;
      if (type === 0o040000) {
        out[r] = 'dir';
        walk(cid, r);
      } else if (type === 0o120000) out[r] = `symlink ${c.linkname.toString('latin1')}`;
      else if (type === 0o100000) out[r] = `file ${data.subarray(c.dataOffset, c.dataOffset + c.size).toString('utf8')}`;
      else out[r] = `mode ${c.mode.toString(8)}`;
    }
  };
  walk(1, '');
  return out;
}

async function treeOf(tar: Buffer): Promise<LayerTree> {
  return LayerTree.fromZtoc(await buildZtoc(chunks(tar), { compression: 'uncompressed', spanSize: 1 << 20 }));
}

/** Names that are normalised into the root (or skipped): the layer applies. */
function normalisedLayer(): Entry[] {
  return [
    dir('./'),
    file('.', 'a file named "." is skipped'),
    dir('..'),
    symlink('a/..', '/'),
    file('/abs/path', 'abs'),
    file('../../escape', 'escape'),
    file('a/../../b', 'b'),
    symlink('link', '/'),
    hardlink('h', '/x/../abs/path'),
    dir('d/'),
    file('d/.wh..wh..opq'),
    file('d/.wh.gone'),
    file('.wh.d2/inside', 'skipped: inside a whiteout-named dir'),
  ];
}

/** Layers each of which must be refused, with what the refusal says. */
function refusedLayers(w: { outside: string }): Array<{ what: string; entries: Entry[]; re: RegExp }> {
  return [
    { what: '.wh.', entries: [file('.wh.')], re: /^layer entry "\.wh\." is an invalid whiteout name: it would remove its own directory$/ },
    { what: '.wh..', entries: [file('x', 'x'), file('.wh..')], re: /^layer entry "\.wh\.\." is an invalid whiteout name: it would remove its own directory$/ },
    { what: '.wh...', entries: [file('.wh...')], re: /^layer entry "\.wh\.\.\." is an invalid whiteout name: it would remove the parent of its directory$/ },
    { what: 'a/.wh..', entries: [dir('a/'), file('a/.wh..')], re: /"a\/\.wh\.\." is an invalid whiteout name/ },
    { what: 'a/b/.wh... (implicit dirs)', entries: [file('a/b/.wh...')], re: /"a\/b\/\.wh\.\.\." is an invalid whiteout name: it would remove the parent/ },
    { what: '../.wh... (cleaned first)', entries: [file('../../.wh...')], re: /"\.wh\.\.\." is an invalid whiteout name/ },
    { what: 'a name with a newline', entries: [file('a\nb/.wh..')], re: /^layer entry "a\\nb\/\.wh\.\." is an invalid whiteout name/ },
    {
      what: 'link -> / then link/x',
      entries: [symlink('link', '/'), file(`link/${ESCAPE}`, 'escaped')],
      re: /^layer path "link" is not a directory \(a symlink or file is in the way\)$/,
    },
    { what: 'link -> / then link/.wh.x', entries: [symlink('link', '/'), file(`link/.wh.${ESCAPE}`)], re: /"link" is not a directory/ },
    { what: 'whiteout through a symlink', entries: [symlink('link', w.outside), file('link/.wh.secret.txt')], re: /"link" is not a directory/ },
    { what: 'opaque marker through a symlink', entries: [symlink('link', w.outside), file('link/.wh..wh..opq')], re: /"link" is not a directory/ },
    {
      what: 'hardlink through a symlink',
      entries: [symlink('link', w.outside), hardlink('h', 'link/secret.txt')],
      re: /"link" is not a directory|hardlink "h" to missing "link\/secret\.txt"/,
    },
    { what: 'hardlink above the root', entries: [hardlink('h', '../../sentinel.txt')], re: /^hardlink "h" to missing "sentinel\.txt"$/ },
    { what: 'hardlink to the root', entries: [hardlink('h', '../..')], re: /^layer entry "h" is a hardlink to the layer root$/ },
    { what: 'hardlink to a directory', entries: [dir('d/'), hardlink('h', 'd')], re: /^hardlink "h" to missing "d"$/ },
    { what: 'dir swapped for a symlink', entries: [dir('d/sub/'), symlink('d', w.outside), file('d/sub/.wh.secret.txt')], re: /"d" is not a directory/ },
    { what: 'file in the way', entries: [file('f', 'f'), file('f/x')], re: /"f" is not a directory/ },
  ];
}

test('local unpacker and FUSE tree: normalised names land inside the root, the same way', { skip: needs({ root: true, tools: TOOLS }) }, async (t) => {
  const { dir: top } = await scratch(t, 'soci-hostile-');
  const w = world(top);
  const before = w.snapshot();
  const tar = rawTar(normalisedLayer());
  const st = (await unpackLayer(chunks(tar), 'uncompressed', w.root)) as Awaited<ReturnType<typeof unpackLayer>> & { skipped?: number };
  assert.equal(st.skipped, 3, 'a file and a symlink naming the root, a file inside .wh.d2/');
  assert.deepEqual(w.snapshot(), before, 'nothing outside the root changed');
  assertNoHostEscape();
  const want = {
    abs: 'dir',
    'abs/path': 'file abs',
    b: 'file b',
    d: 'dir',
    'd/gone': 'whiteout',
    escape: 'file escape',
    h: 'file abs',
    link: 'symlink /',
  };
  assert.deepEqual(dirView(w.root), want);
  assert.equal(lstatSync(join(w.root, 'h')).ino, lstatSync(join(w.root, 'abs/path')).ino);
  assert.equal(execFileSync('getfattr', ['-h', '--absolute-names', '-n', 'trusted.overlay.opaque', '--only-values', join(w.root, 'd')]).toString(), 'y');

  const tree = await treeOf(tar);
  assert.equal(tree.skipped, 3);
  assert.deepEqual(treeView(tree, tar), want, 'the FUSE tree shows what the unpacker made');
  assert.ok(tree.node(tree.node(1)!.children!.get('d')!)!.opaque);
});

test('local unpacker: whiteouts and replacements never follow a symlink out of the root', { skip: needs({ root: true, tools: TOOLS }) }, async (t) => {
  const { dir: top } = await scratch(t, 'soci-hostile-');
  const w = world(top);
  const before = w.snapshot();
  const tar = rawTar([
    symlink('l1', w.outside),
    file('.wh.l1'), // removes the link, not the dir it points at
    symlink('l2', join(w.outside, 'secret.txt')),
    file('l2', 'replaced'), // replaces the link, does not write through it
    symlink('l3', '/'),
    dir('l3/'), // a dir over a symlink: the link goes, a real dir comes
    file('l3/inside', 'in'),
    dir('t/'),
    symlink('t', w.outside), // the dir's times must not be replayed through the link
    symlink('.wh.l4', '/'), // a whiteout marker of any type is a whiteout
  ]);
  await unpackLayer(chunks(tar), 'uncompressed', w.root);
  assert.deepEqual(w.snapshot(), before, 'nothing outside the root changed');
  assert.deepEqual(dirView(w.root), { l1: 'whiteout', l2: 'file replaced', l3: 'dir', 'l3/inside': 'file in', l4: 'whiteout', t: `symlink ${w.outside}` });
  assertNoHostEscape();
});

test('local unpacker and FUSE tree: refused names fail the layer in one line, nothing outside the root changes', {
  skip: needs({ root: true, tools: TOOLS }),
}, async (t) => {
  const { dir: top } = await scratch(t, 'soci-hostile-');
  const w = world(top);
  for (const c of refusedLayers(w)) {
    w.reset();
    const before = w.snapshot();
    const tar = rawTar(c.entries);
    await assert.rejects(unpackLayer(chunks(tar), 'uncompressed', w.root), (e: unknown) => {
      assert.ok(isSociError(e, 'ERR_BAD_TAR'), `${c.what}: ${String(e)}`);
      assert.doesNotMatch(e.message, /[\n\r]/, c.what);
      assert.match(e.message, c.re, c.what);
      return true;
    });
    assert.deepEqual(w.snapshot(), before, `${c.what}: nothing outside the root changed`);
    assertNoHostEscape();
    await assert.rejects(treeOf(tar), (e: unknown) => isSociError(e, 'ERR_BAD_TAR') && c.re.test(e.message), `FUSE tree, ${c.what}`);
  }
});

// ---- end to end: a registry, `soci convert --remote`, `soci mount`, the snapshotter's unpacker ----

/** Device nodes under `top` outside the layer roots (`…/layers/<n>`, `…/snapshots/<n>/fs`) and the mountpoints. */
function strayDevices(top: string): string[] {
  const out: string[] = [];
  const walk = (p: string) => {
    for (const n of readdirSync(p)) {
      const abs = join(p, n);
      if (/\/layers\/\d+$|\/snapshots\/\d+\/fs$|\/mnt-[^/]+$/.test(abs)) continue; // layer roots, merged views
      const st = lstatSync(abs);
      if (st.isCharacterDevice() || st.isBlockDevice()) out.push(abs);
      else if (st.isDirectory()) walk(abs);
    }
  };
  walk(top);
  return out;
}

test('soci mount and the snapshotter local unpacker: hostile names in a lazy and in an unpacked layer', {
  skip: needs({ root: true, tools: ['docker-registry', ...TOOLS] }),
  timeout: 600_000,
}, async (t) => {
  const { dir: top, defer } = await scratch(t, 'soci-hostile-e2e-');
  const reg = await startRegistry(t);
  const client = new RegistryClient({ registry: reg.host, plainHttp: true });
  t.after(() => client.close());
  const sociRoot = join(top, 'soci-root');
  const filler = file('filler.bin', pseudoRandom(300_000, 5, 0)); // makes the layer big enough for a zTOC

  const push = async (repo: string, tars: Buffer[]): Promise<{ manifest: string; layers: string[] }> => {
    const layers = [];
    for (const tar of tars) {
      const gz = gzipSync(tar);
      await client.pushBlob(repo, digestOf(gz), gz.length, gz);
      layers.push({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: digestOf(gz), size: gz.length });
    }
    const config = Buffer.from(
      JSON.stringify({ architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: tars.map((b) => digestOf(b)) } }),
    );
    await client.pushBlob(repo, digestOf(config), config.length, config);
    const m = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: digestOf(config), size: config.length },
        layers,
      }),
    );
    const manifest = await client.putManifest(repo, 'v1', m, 'application/vnd.oci.image.manifest.v1+json');
    await soci(sociRoot, [
      'convert',
      '--remote',
      '--min-layer-size',
      '150000',
      '--span-size',
      '65536',
      `${reg.host}/${repo}:v1`,
      `${reg.host}/${repo}-soci:v1`,
    ]);
    return { manifest, layers: layers.map((l) => l.digest) };
  };

  // The snapshotter's local unpacker, into <world>/snapshots/10/fs.
  const unpacker = new PullingUnpacker(
    await ImagePuller.open({
      stagingDir: join(top, 'staging'),
      contentDir: join(top, 'content'),
      clientFor: () => client,
      logger: silentLogger,
      settings: parallelPullSettings(defaultConfig()), // AWS's defaults, nothing kept
    }),
  );
  const w = world(join(top, 'world'));
  const localUnpack = (repo: string, img: { manifest: string }, layer: string) =>
    unpacker.unpack(
      w.root,
      [],
      { [LABELS.imageRef]: `${reg.host}/${repo}:v1`, [LABELS.layerDigest]: layer, [LABELS.manifestDigest]: img.manifest },
      { namespace: 'default', key: 'k' },
    );

  const mount = async (repo: string, name: string) => {
    const state = join(top, `state-${name}`);
    const mnt = join(top, `mnt-${name}`);
    // Layer roots are <state>/layers/<n>: sentinels next to them, above them, and next to the state dir.
    mkdirSync(state, { recursive: true });
    mkdirSync(mnt);
    writeFileSync(join(state, 'sentinel.txt'), 'state');
    writeFileSync(join(top, 'sentinel.txt'), 'top');
    const args = ['mount', '--detach', '--explain', '--no-background-fetch', '--state-dir', state, `${reg.host}/${repo}-soci:v1`, mnt];
    const check = async () => {
      assert.equal(readFileSync(join(state, 'sentinel.txt'), 'utf8'), 'state');
      assert.equal(readFileSync(join(top, 'sentinel.txt'), 'utf8'), 'top');
      assert.ok(lstatSync(state).isDirectory() && lstatSync(mnt).isDirectory() && lstatSync(top).isDirectory());
      const layers = lstatSync(join(state, 'layers'), { throwIfNoEntry: false });
      assert.ok(!layers || layers.isDirectory(), 'the layers dir is a dir (or removed with a failed mount)');
      assert.deepEqual(strayDevices(top), [], 'no device node outside a layer root');
      assertNoHostEscape();
    };
    return { state, mnt, args, check };
  };

  // 1. Normalised names in both layers: the mount works and shows them inside the tree.
  const okLazy = rawTar([filler, ...normalisedLayer()]);
  const okLocal = rawTar([
    dir('./'),
    file('.'),
    dir('..'),
    file('/abs2/path2', 'abs2'),
    file('../../escape2', 'escape2'),
    file('a/../../b2', 'b2'),
    symlink('link2', '/'),
    file('.wh.link'),
  ]);
  const ok = await push('hostile/ok', [okLazy, okLocal]);
  {
    const m = await mount('hostile/ok', 'ok');
    const r = await soci(sociRoot, m.args);
    defer(() => soci(sociRoot, ['umount', '--state-dir', m.state, m.mnt]).catch(() => undefined));
    assert.match(r.stdout, /layer 0 .*: lazy/);
    assert.match(r.stdout, /layer 1 .*: local/);
    const view = dirView(m.mnt);
    for (const [p, v] of Object.entries({
      'abs/path': 'file abs',
      escape: 'file escape',
      b: 'file b',
      h: 'file abs',
      'abs2/path2': 'file abs2',
      escape2: 'file escape2',
      b2: 'file b2',
      link2: 'symlink /',
    })) {
      assert.equal(view[p], v, p);
    }
    assert.equal(view.link, undefined, 'the upper layer whites out the lower link');
    assert.equal(view['d/gone'], undefined);
    await m.check();
    await soci(sociRoot, ['umount', '--state-dir', m.state, m.mnt]);
    assert.deepEqual(await mountsUnder(m.state), []);
    for (const layer of ok.layers) {
      w.reset();
      const before = w.snapshot();
      await localUnpack('hostile/ok', ok, layer);
      assert.deepEqual(w.snapshot(), before, 'snapshotter unpack: nothing outside the root changed');
    }
    assert.equal(dirView(w.root).escape2, 'file escape2');
  }

  // 2. Each refused name, once in the lazy layer (0) and once in the unpacked one (1).
  const benignLazy = rawTar([filler, file('etc/hostname', 'ok')]);
  const benignLocal = rawTar([file('etc/motd', 'ok')]);
  const refused: Array<{ what: string; entries: Entry[]; re: RegExp }> = [
    { what: 'wh-dot', entries: [file('x', 'x'), file('.wh..')], re: /layer entry "\.wh\.\." is an invalid whiteout name/ },
    { what: 'wh-dotdot', entries: [dir('a/'), file('a/.wh...')], re: /layer entry "a\/\.wh\.\.\." is an invalid whiteout name/ },
    { what: 'symlink-parent', entries: [symlink('link', '/'), file(`link/${ESCAPE}`, 'escaped')], re: /layer path "link" is not a directory/ },
  ];
  for (const c of refused) {
    for (const lazy of [true, false]) {
      const repo = `hostile/${c.what}-${lazy ? 'lazy' : 'local'}`;
      const img = await push(repo, lazy ? [rawTar([filler, ...c.entries]), benignLocal] : [benignLazy, rawTar(c.entries)]);
      const m = await mount(repo, `${c.what}-${lazy ? 'lazy' : 'local'}`);
      defer(() => soci(sociRoot, ['umount', '--state-dir', m.state, m.mnt]).catch(() => undefined));
      const line = oneLineError(await sociFail(sociRoot, m.args));
      assert.match(line, c.re, `${repo}: ${line}`);
      await m.check();
      assert.deepEqual(await mountsUnder(m.state), [], `${repo}: no layer left mounted`);
      assert.deepEqual(await mountsUnder(m.mnt), []);
      // The snapshotter unpacks a layer locally when it is not lazy (or its lazy mount failed).
      w.reset();
      const before = w.snapshot();
      await assert.rejects(localUnpack(repo, img, img.layers[lazy ? 0 : 1]!), (e: unknown) => isSociError(e, 'ERR_BAD_TAR') && c.re.test(e.message));
      assert.deepEqual(w.snapshot(), before, `${repo}: snapshotter unpack changed nothing outside the root`);
      assertNoHostEscape();
    }
  }
});
