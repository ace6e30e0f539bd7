/**
 * Mount-table chores around a FUSE connection: mount(8)/umount(8) in child processes, reading
 * /proc/self/mountinfo (never stat on a FUSE mountpoint from the serving thread: it can deadlock),
 * readahead and abort through sysfs, and cleanup of mounts whose daemon died.
 */
import { spawn } from 'node:child_process';
import { readFile, writeFile, access } from 'node:fs/promises';
import { resolve } from 'node:path';
import { SociError } from '../errors.js';

export interface CmdResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/** Runs a command asynchronously (never blocks the event loop). `fd3` is passed as the child's fd 3. */
export function runCmd(cmd: string, args: string[], opts: { timeoutMs?: number; fd3?: number } = {}): Promise<CmdResult> {
  return new Promise((resolvePromise) => {
    const stdio: (string | number)[] = ['ignore', 'pipe', 'pipe'];
    if (opts.fd3 !== undefined) stdio.push(opts.fd3);
    const child = spawn(cmd, args, { stdio: stdio as ('pipe' | 'ignore' | number)[] });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    let done = false;
    const finish = (r: CmdResult): void => {
      if (done) return;
      done = true;
      if (timer) clearTimeout(timer);
      resolvePromise(r);
    };
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = opts.timeoutMs
      ? setTimeout(() => {
          timedOut = true;
          child.kill('SIGKILL');
          // A child stuck in a FUSE request of a hung daemon stays in D state even after SIGKILL:
          // do not wait for its exit.
          setTimeout(() => finish({ code: null, signal: 'SIGKILL', stdout, stderr, timedOut }), 200).unref();
        }, opts.timeoutMs)
      : null;
    child.on('error', (err) => finish({ code: null, signal: null, stdout, stderr: stderr + err.message, timedOut }));
    child.on('close', (code, signal) => finish({ code, signal, stdout, stderr, timedOut }));
  });
}

export const DEFAULT_MOUNT_OPTIONS = 'rootmode=40000,user_id=0,group_id=0,allow_other,default_permissions,ro,nosuid,nodev';

/** Mounts the opened /dev/fuse `fd` on `dir` (root). Resolves once mount(8) has exited. */
export async function mountFd(fd: number, dir: string, subtype: string, fsname: string, extraOptions: string[] = []): Promise<void> {
  const o = ['fd=3', DEFAULT_MOUNT_OPTIONS, ...extraOptions].join(',');
  // -i: do not run /sbin/mount.fuse (it would try to exec the source name as a program).
  const r = await runCmd('mount', ['-i', '-t', `fuse.${subtype}`, '-o', o, fsname, dir], { fd3: fd, timeoutMs: 30_000 });
  if (r.code !== 0) throw new SociError('ERR_FUSE', `mount ${dir} failed: ${(r.stderr || r.stdout).trim() || `rc ${r.code}`}`);
}

/**
 * umount(8). `lazy` adds -l (detach now, the daemon keeps serving open files until they close).
 * Returns true on success; `busy` tells whether it failed because the mount is in use.
 */
export async function umount(dir: string, lazy = false): Promise<{ ok: boolean; busy: boolean; message: string }> {
  const r = await runCmd('umount', lazy ? ['-l', dir] : [dir], { timeoutMs: 30_000 });
  const message = (r.stderr || r.stdout).trim();
  return { ok: r.code === 0, busy: r.code === 32 && /busy/i.test(message), message };
}

export interface MountInfo {
  mountId: number;
  major: number;
  minor: number;
  mountpoint: string;
  fstype: string;
  source: string;
  options: string;
}

/** mountinfo escapes space, tab, newline and backslash as octal. */
function unescapeMountPath(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

export function parseMountinfo(text: string): MountInfo[] {
  const out: MountInfo[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    const f = line.split(' ');
    const sep = f.indexOf('-', 6);
    if (sep < 0 || f.length < sep + 3) continue;
    const [major, minor] = f[2]!.split(':').map(Number);
    out.push({
      mountId: Number(f[0]),
      major: major!,
      minor: minor!,
      mountpoint: unescapeMountPath(f[4]!),
      fstype: f[sep + 1]!,
      source: unescapeMountPath(f[sep + 2]!),
      options: f[5]!,
    });
  }
  return out;
}

export async function readMountinfo(): Promise<MountInfo[]> {
  return parseMountinfo(await readFile('/proc/self/mountinfo', 'utf8'));
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
export async function cleanupStaleMounts(subtype: string, underDir?: string, probeTimeoutMs = 5_000): Promise<StaleMountResult[]> {
  const base = underDir ? resolve(underDir) : undefined;
  const mounts = (await readMountinfo()).filter(
    (m) => m.fstype === `fuse.${subtype}` && (!base || m.mountpoint === base || m.mountpoint.startsWith(base.endsWith('/') ? base : base + '/')),
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
