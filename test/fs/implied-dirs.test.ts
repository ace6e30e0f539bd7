/**
 * Directories a layer implies without listing them: the unpack reports them, and
 * inheritImpliedDirs gives them what containerd's unpack gives them, the owner, mode, non-trusted
 * xattrs and times of the same dir in the nearest parent layer (times only when nothing was created
 * in it). A symlink or file in a parent stops the search; nothing outside a parent is read.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chownSync, lstatSync, mkdirSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { needs, tempDir } from '../../harness/env.js';
import { packTar } from '../../harness/images.js';
import { inheritImpliedDirs, unpackLayer } from '../../src/fs/index.js';

const skip = needs({ root: true, tools: ['setfattr', 'getfattr', 'mknod'] });

async function* once(b: Buffer): AsyncIterable<Buffer> {
  yield b;
}

const xattr = (p: string, name: string) =>
  execFileSync('getfattr', ['-h', '--only-values', '-n', name, '--absolute-names', p], { stdio: ['ignore', 'pipe', 'ignore'] }).toString();

test('implied dirs: reported by the unpack, given their nearest parent layer dir attributes', { skip }, async (t) => {
  const top = await tempDir(t, 'soci-implied-');
  const tar = await packTar([
    { name: 'a/b/c.txt', data: Buffer.from('c') },
    { name: 'o/.wh..wh..opq' },
    { name: 'd/x', data: Buffer.from('x') },
    { name: 'd/', type: 'directory', mode: 0o700 },
    { name: 's/etc/passwd', data: Buffer.from('p') },
    { name: 'f/g', data: Buffer.from('g') },
    { name: 'n/m', data: Buffer.from('m') },
  ]);
  const root = join(top, 'layer');
  mkdirSync(root);
  const stats = await unpackLayer(once(tar), 'uncompressed', root);
  assert.equal(stats.rootOpaque, false, 'only o/ is marked opaque');
  assert.deepEqual(stats.impliedDirs, [
    { path: 'a', childCreated: true },
    { path: 'a/b', childCreated: true },
    { path: 'o', childCreated: false },
    { path: 's', childCreated: true },
    { path: 's/etc', childCreated: true },
    { path: 'f', childCreated: true },
    { path: 'n', childCreated: true },
  ]);

  // Parents, nearest first: p1 has a (0700, 5:6, xattrs), o (0750, a fixed time),
  // s as a symlink to /, f as a file; p2 has a/b (0711) and f as a dir (hidden by p1's file).
  const p1 = join(top, 'p1');
  const p2 = join(top, 'p2');
  mkdirSync(join(p1, 'a'), { recursive: true, mode: 0o700 });
  chownSync(join(p1, 'a'), 5, 6);
  execFileSync('setfattr', ['-n', 'user.note', '-v', 'lower', join(p1, 'a')]);
  execFileSync('setfattr', ['-n', 'trusted.overlay.opaque', '-v', 'y', join(p1, 'a')]);
  mkdirSync(join(p1, 'o'), { mode: 0o750 });
  utimesSync(join(p1, 'o'), 1_600_000_000, 1_600_000_000);
  symlinkSync('/', join(p1, 's'));
  writeFileSync(join(p1, 'f'), 'file');
  mkdirSync(join(p2, 'a', 'b'), { recursive: true, mode: 0o711 });
  mkdirSync(join(p2, 'f'), { recursive: true, mode: 0o700 });
  const before = lstatSync(join(root, 'a'));

  await inheritImpliedDirs(root, stats.impliedDirs, [p1, p2]);
  const mode = (p: string) => lstatSync(join(root, p)).mode & 0o7777;
  assert.equal(mode('a'), 0o700);
  assert.deepEqual([lstatSync(join(root, 'a')).uid, lstatSync(join(root, 'a')).gid], [5, 6]);
  assert.equal(xattr(join(root, 'a'), 'user.note'), 'lower');
  assert.throws(() => xattr(join(root, 'a'), 'trusted.overlay.opaque'), 'overlay markers are not copied');
  assert.equal(lstatSync(join(root, 'a')).mtimeMs, before.mtimeMs, 'a child was created in it: its mtime is the unpack time');
  assert.equal(mode('a/b'), 0o711, 'found in the second parent');
  assert.equal(mode('o'), 0o750);
  assert.equal(lstatSync(join(root, 'o')).mtimeMs, 1_600_000_000_000, 'only an opaque marker: the parent dir times');
  assert.equal(xattr(join(root, 'o'), 'trusted.overlay.opaque'), 'y', 'its own opaque marker stays');
  assert.equal(mode('d'), 0o700, 'listed later: its own header');
  assert.equal(mode('s'), 0o755, 'a symlink in the parent: never followed');
  assert.equal(mode('s/etc'), 0o755);
  assert.equal(mode('f'), 0o755, 'replaced by a file in the nearer parent: not looked up further');
  assert.equal(mode('n'), 0o755, 'in no parent: the default');

  // An opaque marker at the top: reported, so a staged layer's snapshot dir gets it too.
  const top2 = join(top, 'layer2');
  mkdirSync(top2);
  const s2 = await unpackLayer(once(await packTar([{ name: '.wh..wh..opq' }, { name: 'x', data: Buffer.from('x') }])), 'uncompressed', top2);
  assert.deepEqual([s2.rootOpaque, s2.opaqueDirs, s2.impliedDirs], [true, 1, []]);
  assert.equal(xattr(top2, 'trusted.overlay.opaque'), 'y');
});
