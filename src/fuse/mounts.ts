/**
 * Mount chores around a FUSE connection: mount(8) of a /dev/fuse fd, finding the connection in the
 * mount table, readahead and abort through sysfs, and cleanup of mounts whose daemon died. The
 * generic host operations (child processes, mountinfo, umount) live in ../host.
 */
import { readFile, writeFile, access } from 'node:fs/promises';
import { resolve } from 'node:path';
import { SociError } from '../errors.js';
import { readMountinfo, runCmd, umount, type MountInfo } from '../host/index.js';

export const DEFAULT_MOUNT_OPTIONS = 'rootmode=40000,user_id=0,group_id=0,allow_other,default_permissions,ro,nosuid,nodev';

/** Mounts the opened /dev/fuse `fd` on `dir` (root). Resolves once mount(8) has exited. */
export async function mountFd(fd: number, dir: string, subtype: string, fsname: string, extraOptions: string[] = []): Promise<void> {
  const o = ['fd=3', DEFAULT_MOUNT_OPTIONS, ...extraOptions].join(',');
  // -i: do not run /sbin/mount.fuse (it would try to exec the source name as a program).
  const r = await runCmd('mount', ['-i', '-t', `fuse.${subtype}`, '-o', o, fsname, dir], { fd3: fd, timeoutMs: 30_000 });
  if (r.code !== 0) throw new SociError('ERR_FUSE', `mount ${dir} failed: ${(r.stderr || r.stdout).trim() || `rc ${r.code}`}`);
}

/** The newest mount of `fuse.<subtype>` at `dir` (absolute), or undefined. */
export async function findFuseMount(dir: string, subtype: string): Promise<MountInfo | undefined> {
  const abs = resolve(dir);
  const all = await readMountinfo();
  return all.filter((m) => m.mountpoint === abs && m.fstype === `fuse.${subtype}`).pop();
}

/** /sys/class/bdi/<major>:<minor>/read_ahead_kb: lets page-cache readahead send bigger READs. */
export async function setReadaheadKb(major: number, minor: number, kb: number): Promise<void> {
  await writeFile(`/sys/class/bdi/${major}:${minor}/read_ahead_kb`, `${Math.floor(kb)}\n`);
}

const FUSECTL = '/sys/fs/fuse/connections';

/** Mounts fusectl if needed (root). */
export async function ensureFusectl(): Promise<void> {
  const all = await readMountinfo();
  if (all.some((m) => m.fstype === 'fusectl' && m.mountpoint === FUSECTL)) return;
  const r = await runCmd('mount', ['-t', 'fusectl', 'none', FUSECTL], { timeoutMs: 10_000 });
  if (r.code !== 0) throw new SociError('ERR_FUSE', `cannot mount fusectl: ${r.stderr.trim()}`);
}

/** Aborts a FUSE connection through fusectl: users get ENOTCONN, the daemon ECONNABORTED/ENODEV. */
export async function abortConnection(minor: number): Promise<void> {
  await ensureFusectl();
  await writeFile(`${FUSECTL}/${minor}/abort`, '1\n');
}

/** Number of requests the kernel is waiting on for this connection (hung-daemon diagnosis). */
export async function connectionWaiting(minor: number): Promise<number | undefined> {
  try {
    await access(`${FUSECTL}/${minor}/waiting`);
    return Number((await readFile(`${FUSECTL}/${minor}/waiting`, 'utf8')).trim());
  } catch {
    return undefined;
  }
}

export interface StaleMountResult {
  mountpoint: string;
  /** unmounted: was dead (ENOTCONN) and is now detached; alive: answered; hung: probe timed out. */
  state: 'unmounted' | 'alive' | 'hung' | 'failed';
  message?: string;
}

/**
 * Finds `fuse.<subtype>` mounts (under `underDir` if given) and lazily unmounts those whose daemon
 * is gone. Liveness is probed with `stat` in a child process (a dead mount answers ENOTCONN at once;
 * a live one answers; a hung one is left alone). Used at daemon start, before remounting.
 */
export async function cleanupStaleMounts(
  subtype: string,
  underDir?: string,
  probeTimeoutMs = 5_000,
  keep: readonly string[] = [],
): Promise<StaleMountResult[]> {
  const base = underDir ? resolve(underDir) : undefined;
  // `keep`: connections kept alive for this process to serve again; a probe would wait on them.
  const mounts = (await readMountinfo()).filter(
    (m) =>
      m.fstype === `fuse.${subtype}` &&
      !keep.includes(m.mountpoint) &&
      (!base || m.mountpoint === base || m.mountpoint.startsWith(base.endsWith('/') ? base : base + '/')),
  );
  // Deepest first so nested mounts go before their parents; each mountpoint once.
  const points = [...new Set(mounts.map((m) => m.mountpoint))].sort((a, b) => b.length - a.length);
  const results: StaleMountResult[] = [];
  for (const mp of points) {
    const probe = await runCmd('stat', ['-c', '%i', '--', mp], { timeoutMs: probeTimeoutMs });
    if (probe.timedOut) {
      results.push({ mountpoint: mp, state: 'hung' });
    } else if (probe.code === 0) {
      results.push({ mountpoint: mp, state: 'alive' });
    } else if (/not connected/i.test(probe.stderr)) {
      const u = await umount(mp, true);
      results.push(u.ok ? { mountpoint: mp, state: 'unmounted' } : { mountpoint: mp, state: 'failed', message: u.message });
    } else {
      results.push({ mountpoint: mp, state: 'failed', message: probe.stderr.trim() });
    }
  }
  return results;
}
