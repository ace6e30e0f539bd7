/** umount(8) in a child process with a timeout, falling back to a lazy detach (-l) when busy. */
import { SociError } from '../errors.js';
import { mountPointsUnder } from './mountinfo.js';
import { runCmd } from './run.js';

/** One umount(8); `lazy` adds -l (detach now; open files keep working until closed). */
export async function umount(dir: string, lazy = false): Promise<{ ok: boolean; busy: boolean; notMounted: boolean; message: string }> {
  const r = await runCmd('umount', lazy ? ['-l', dir] : [dir]);
  const message = r.timedOut ? 'umount timed out' : (r.stderr || r.stdout).trim();
  return { ok: r.code === 0, busy: r.code === 32 && /busy/i.test(message), notMounted: /not mounted|no mount point|not found/i.test(message), message };
}

/** Unmounts `path`, lazily when a plain umount fails; a path that is not mounted is fine. */
export async function umountPath(path: string): Promise<void> {
  const r = await umount(path);
  if (r.ok || r.notMounted) return;
  const l = await umount(path, true);
  if (!l.ok && !l.notMounted) throw new SociError('ERR_IO', `umount ${path}: ${l.message}`);
}

/**
 * Unmounts everything at or below `dir` (stacked mounts included), deepest first; throws if
 * something stays mounted. Returns the mount points that were unmounted.
 */
export async function unmountAllUnder(dir: string, keep: readonly string[] = []): Promise<string[]> {
  const done: string[] = [];
  for (let round = 0; round < 8; round++) {
    const points = (await mountPointsUnder(dir)).filter((p) => !keep.includes(p));
    if (points.length === 0) return done;
    for (const p of points) await umountPath(p).catch(() => undefined);
    done.push(...points);
  }
  throw new SociError('ERR_IO', `${dir} is still mounted`);
}
