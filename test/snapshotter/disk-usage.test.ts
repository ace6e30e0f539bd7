/**
 * The commit's disk usage: containerd's fs.DiskUsage (st_blocks × 512 over distinct inodes, root
 * included), computed on a worker; checked against du and find on a tree with a hardlink, a
 * symlink, a nested dir and a name that is not UTF-8.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { linkSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../../harness/env.js';
import { diskUsage } from '../../src/snapshotter/disk-usage.js';

test('disk usage: du -s -B1 and the distinct inodes, hardlinks once, any name bytes', async (t) => {
  const root = join(await tempDir(t, 'soci-du-'), 'fs');
  mkdirSync(join(root, 'a', 'b'), { recursive: true });
  writeFileSync(join(root, 'a', 'big'), Buffer.alloc(300_000, 1));
  linkSync(join(root, 'a', 'big'), join(root, 'a', 'b', 'big-link'));
  symlinkSync('a/big', join(root, 'sym'));
  writeFileSync(Buffer.concat([Buffer.from(`${root}/caf`), Buffer.from([0xe9, 0xff])]), Buffer.alloc(50_000, 2));
  const du = Number(execFileSync('du', ['-s', '-B1', root]).toString().split('\t')[0]);
  const inodes = new Set(execFileSync('find', [root, '-printf', '%i\\n']).toString().trim().split('\n')).size;
  assert.deepEqual(await diskUsage(root), { size: du, inodes });
  assert.equal(inodes, 6, 'root, a, a/b, big (twice), sym, the latin-1 name');
  assert.deepEqual(await diskUsage(join(root, 'missing')), { size: 0, inodes: 0 }, 'a dir removed meanwhile counts nothing');
});
