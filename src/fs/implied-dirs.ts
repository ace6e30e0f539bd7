/**
 * Directories a layer implies without listing them (`a/b` with no `a/` entry) get, in containerd's
 * unpack (pkg/archive `mkparent`), the attributes of the same directory in the nearest parent layer
 * that has one: owner, mode, non-`trusted.` xattrs, and times (the mtime then moves to the unpack's
 * if anything is created inside; the atime of such a dir is left as is here). A layer unpacked before its parents are known (parallel pull)
 * is given them here, once they are: the same result as containerd's, dir for dir.
 *
 * A parent layer's path is walked one component at a time without following symlinks: a link in a
 * lower layer never leads outside it, and a non-directory on the way means "not found" there, as
 * a replaced directory stops containerd's search.
 */
import { chmod, lchown, lstat, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { runCmd, sh } from '../host/index.js';
import type { ImpliedDir } from './unpack.js';

/** Gives the implied dirs of a layer unpacked at `root` their attributes from `parents` (nearest first). */
export async function inheritImpliedDirs(root: string, dirs: readonly ImpliedDir[], parents: readonly string[]): Promise<void> {
  if (!parents.length) return;
  for (const d of dirs) {
    const from = await findDir(parents, d.path);
    if (!from) continue;
    const to = join(root, d.path);
    const st = await lstat(from.path, { bigint: true });
    await lchown(to, Number(st.uid), Number(st.gid));
    await chmod(to, Number(st.mode & 0o7777n));
    await copyXattrs(from.path, to);
    // Something created inside moved containerd's copy of the times to the unpack's: keep ours then.
    if (!d.childCreated) await utimes(to, Number(st.atimeNs) / 1e9, Number(st.mtimeNs) / 1e9);
  }
}

/** The dir `rel` in the nearest parent that has something there; undefined if it is no dir there. */
async function findDir(parents: readonly string[], rel: string): Promise<{ path: string } | undefined> {
  for (const p of parents) {
    let cur = p;
    let found: 'dir' | 'other' | 'none' = 'dir';
    for (const part of rel.split('/')) {
      cur = join(cur, part);
      const st = await lstat(cur).catch(() => undefined);
      if (!st) {
        found = 'none';
        break;
      }
      if (!st.isDirectory()) {
        found = 'other';
        break;
      }
    }
    if (found === 'dir') return { path: cur };
    // Replaced in this parent: the dirs beneath it do not show through, so nothing to copy.
    if (found === 'other') return undefined;
  }
  return undefined;
}

/** Copies every xattr but `trusted.*` (overlay's own markers) from `from` to `to`. */
async function copyXattrs(from: string, to: string): Promise<void> {
  const r = await runCmd('getfattr', ['-h', '-d', '-m', '-', '-e', 'hex', '--absolute-names', from]);
  if (r.code !== 0) return; // no xattrs, or a filesystem without them
  for (const line of r.stdout.split('\n')) {
    const m = /^([^=#][^=]*)=0x([0-9a-f]*)$/.exec(line.trim());
    if (!m || m[1]!.startsWith('trusted.')) continue;
    await sh('setfattr', ['-h', '-n', m[1]!, '-v', `0x${m[2]}`, to]);
  }
}
