/** Host mount helpers: mountinfo parsing, unmounting, disk usage (all async). */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { lstat, opendir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface Mount {
  type: string;
  source: string;
  target: string;
  options: string[];
}

/** mountinfo escapes space, tab, newline and backslash as \ooo. */
const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));

/** Mount points at or below `dir`, deepest first; a path mounted twice (stacked) appears twice. */
export async function mountPointsUnder(dir: string): Promise<string[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  const prefix = dir.endsWith('/') ? dir : dir + '/';
  const points: string[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    if (f.length < 5) continue;
    const mp = unescape(f[4]!);
    if (mp === dir || mp.startsWith(prefix)) points.push(mp);
  }
  return points.sort((a, b) => b.length - a.length);
}

export async function isMountPoint(path: string): Promise<boolean> {
  return (await mountPointsUnder(path)).includes(path);
}

/** One umount(8), or a lazy detach if the mount is busy. */
async function umountOnce(path: string): Promise<void> {
  try {
    await run('umount', [path]);
  } catch {
    await run('umount', ['-l', path]).catch(() => undefined);
  }
}

/**
 * Unmounts everything at or below `dir` (stacked mounts included); throws if something stays
 * mounted. Returns the mount points that were unmounted.
 */
export async function unmountAllUnder(dir: string): Promise<string[]> {
  const done: string[] = [];
  for (let round = 0; round < 8; round++) {
    const points = await mountPointsUnder(dir);
    if (points.length === 0) return done;
    for (const p of points) await umountOnce(p);
    done.push(...points);
  }
  throw new Error(`${dir} is still mounted`);
}

/** containerd's fs.DiskUsage: st_blocks*512 over unique inodes, root included. */
export async function diskUsage(root: string): Promise<{ size: number; inodes: number }> {
  const seen = new Set<string>();
  let size = 0;
  const visit = async (path: string): Promise<void> => {
    let st;
    try {
      st = await lstat(path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return; // raced with a delete
      throw e;
    }
    const id = `${st.dev}:${st.ino}`;
    if (!seen.has(id)) {
      seen.add(id);
      size += st.blocks * 512;
    }
    if (st.isDirectory()) {
      const d = await opendir(path);
      for await (const ent of d) await visit(join(path, ent.name));
    }
  };
  await visit(root);
  return { size, inodes: seen.size };
}

/** Like containerd's overlay snapshotter: "index=off" whenever the kernel has the index feature. */
export function overlayNeedsIndexOff(): boolean {
  return existsSync('/sys/module/overlay/parameters/index');
}
