/**
 * Keeping a file descriptor open outside this process, and taking it back later, possibly from a
 * new process: the way a FUSE connection (/dev/fuse) outlives a daemon restart or crash.
 *
 * The holder is about the smallest process that can own an fd: a shell loop that ends when its
 * mount is gone, started in a session of its own (so a signal to the daemon's process group spares
 * it) with the fd as its fd 3 and `soci-fuse-holder` as its argv[0]. Taking the fd back is
 * pidfd_getfd(2) (Linux >= 5.6), which Node has no API for: the `fdpass` addon (./fdpass.ts).
 *
 * A holder is identified by pid and start time (/proc/<pid>/stat field 22), so a recycled pid is
 * never mistaken for it, and its fd 3 must still be what was handed over (`expect`, e.g. /dev/fuse).
 */
import { spawn } from 'node:child_process';
import { readFileSync, readlinkSync } from 'node:fs';
import { SociError } from '../errors.js';
import { fdPassAddon } from './fdpass.js';

export const HOLDER_NAME = 'soci-fuse-holder';

export interface Holder {
  pid: number;
  /** the holder's start time in clock ticks since boot: with the pid, names this very process */
  startTime: number;
}

/** The start time of `pid` (clock ticks since boot), or null when there is no such process. */
function startTimeOf(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // comm may contain spaces and parentheses: the fields start after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[19]);
  } catch {
    return null;
  }
}

/** Whether `h` is still the holder it was (same pid, same start, our argv[0]). */
export function holderAlive(h: Holder): boolean {
  if (!Number.isSafeInteger(h.pid) || h.pid <= 1 || startTimeOf(h.pid) !== h.startTime) return false;
  try {
    return readFileSync(`/proc/${h.pid}/cmdline`, 'latin1').split('\0')[0] === HOLDER_NAME;
  } catch {
    return false;
  }
}

/** A mount point as /proc/self/mountinfo writes it (space, tab, newline and backslash as octal escapes). */
function mountinfoEscape(path: string): string {
  return path.replace(/[ \t\n\\]/g, (c) => `\\${c.charCodeAt(0).toString(8).padStart(3, '0')}`);
}

/** While nobody renews the lease file for `seconds`, the holder writes 1 to `abortFile` and ends. */
export interface HolderLease {
  file: string;
  seconds: number;
  abortFile: string;
}

/**
 * Starts a holder owning a duplicate of `fd`, for the mount at `mountpoint`. It lives until
 * released, whatever happens to us, or until nothing is mounted there any more (checked every
 * 10 s): a mount removed while no daemon runs leaves no holder behind. With a lease, it also ends
 * once the lease has not been renewed for its time, after aborting the connection (`abortFile`,
 * e.g. fusectl's): readers then get an error instead of waiting for a daemon that never returns.
 */
export async function holdFd(fd: number, mountpoint: string, lease?: HolderLease): Promise<Holder> {
  const loop = [
    'while grep -qF -- "$1" /proc/self/mountinfo; do',
    '  sleep "$2"',
    '  if [ -n "$3" ] && [ -z "$(find "$3" -newermt "$4 seconds ago" 2>/dev/null)" ]; then echo 1 > "$5"; exit 0; fi',
    'done',
  ].join('\n');
  const poll = lease ? Math.max(1, Math.min(10, Math.floor(lease.seconds / 2))) : 10;
  const args = [` ${mountinfoEscape(mountpoint)} `, String(poll), lease?.file ?? '', String(lease?.seconds ?? 0), lease?.abortFile ?? '/dev/null'];
  const child = spawn('sh', ['-c', loop, HOLDER_NAME, ...args], {
    argv0: HOLDER_NAME,
    stdio: ['ignore', 'ignore', 'ignore', fd],
    detached: true,
  });
  const pid = await new Promise<number>((res, rej) => {
    child.once('spawn', () => res(child.pid!));
    child.once('error', (e) => rej(new SociError('ERR_IO', `cannot start the fd holder: ${e.message}`)));
  });
  child.unref();
  const startTime = startTimeOf(pid);
  if (startTime === null) throw new SociError('ERR_IO', `the fd holder (pid ${pid}) exited at once`);
  return { pid, startTime };
}

/**
 * A duplicate of the holder's fd in this process, after checking the holder is the one recorded
 * and its fd still points at `expect` (a path such as /dev/fuse).
 */
export function takeHeldFd(h: Holder, expect: string): number {
  if (!holderAlive(h)) throw new SociError('ERR_NOT_FOUND', `fd holder ${h.pid} is gone`);
  let target: string;
  try {
    target = readlinkSync(`/proc/${h.pid}/fd/3`);
  } catch (e) {
    throw new SociError('ERR_NOT_FOUND', `fd holder ${h.pid} holds no fd: ${(e as Error).message}`);
  }
  if (target !== expect) throw new SociError('ERR_NOT_FOUND', `fd holder ${h.pid} holds ${target}, not ${expect}`);
  try {
    return fdPassAddon().take(h.pid, 3);
  } catch (e) {
    if (e instanceof SociError) throw e;
    throw new SociError('ERR_IO', `taking the fd of holder ${h.pid}: ${(e as Error).message}`);
  }
}

/** Ends a holder (its fd closes with it); a holder that is not ours any more is left alone. */
export function releaseHolder(h: Holder): void {
  if (!holderAlive(h)) return;
  try {
    // Its process group: a holder's `sleep` child inherits the fd too.
    process.kill(-h.pid, 'SIGKILL');
  } catch {
    try {
      process.kill(h.pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
}
