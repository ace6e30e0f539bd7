/**
 * The benchmark image builder's building blocks (bench/images): layers are packed deterministically
 * (same bytes whatever the files' times, digest and diff_id as recorded), and the Debian path
 * (apt closure → apt-get download → dpkg-deb -x) yields a usable rootfs that packs to the same
 * bytes twice.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { access, constants, mkdir, readFile, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { needs, tempDir } from '../../harness/env.js';
import { extractDebs, fetchDebs, resolveClosure } from '../../bench/images/apt.js';
import { packDir } from '../../bench/images/layer.js';
import { digestOf } from '../../src/oci/digest.js';

test('packDir: same bytes whatever the file times; digest, size and diff_id as recorded', async (t) => {
  const dir = await tempDir(t, 'bench-pack-');
  const outDir = await tempDir(t, 'bench-pack-out-');
  await mkdir(join(dir, 'usr', 'bin'), { recursive: true });
  await writeFile(join(dir, 'usr', 'bin', 'tool'), 'x'.repeat(10_000));
  await writeFile(join(dir, 'b.txt'), 'bee\n');
  await writeFile(join(dir, 'a.txt'), 'ay\n');
  const first = await packDir(dir, join(outDir, '1.tar.gz'));
  await utimes(join(dir, 'a.txt'), new Date(1e12), new Date(1e12));
  await utimes(join(dir, 'usr', 'bin', 'tool'), new Date(), new Date());
  const out = join(outDir, '2.tar.gz');
  const second = await packDir(dir, out);
  assert.deepEqual(second, first, 'changed mtimes do not change the layer');
  const gz = await readFile(out);
  assert.equal(digestOf(gz), second.digest);
  assert.equal(gz.length, second.size);
  const tar = gunzipSync(gz);
  assert.equal(digestOf(tar), second.diffId);
  assert.equal(tar.length, second.uncompressedSize);
});

test('Debian packages: closure, download, extract, deterministic pack', { skip: needs({ tools: ['apt-get', 'dpkg-deb'] }), timeout: 300_000 }, async (t) => {
  const work = await tempDir(t, 'bench-apt-');
  const pkgs = await resolveClosure(['busybox-static'], work);
  assert.ok(
    pkgs.some((p) => p.name === 'busybox-static'),
    JSON.stringify(pkgs),
  );
  const debs = await fetchDebs(pkgs, join(work, 'debs'));
  assert.equal(debs.length, pkgs.length);
  const root = join(work, 'root');
  await extractDebs(debs, root);
  await access(join(root, 'bin', 'busybox'), constants.X_OK);
  const a = await packDir(root, join(work, 'a.tar.gz'));
  const b = await packDir(root, join(work, 'b.tar.gz'));
  assert.equal(a.digest, b.digest);
  assert.ok(a.uncompressedSize > 1_000_000, `busybox rootfs is ${a.uncompressedSize} bytes`);
});
