/**
 * What a service gets from systemd (sd_listen_fds(3), sd_notify(3)):
 * - the descriptors passed at start: LISTEN_FDS of them from fd 3, for this pid (LISTEN_PID),
 *   named by LISTEN_FDNAMES: a socket unit's sockets, and whatever the fd store kept;
 * - the fd store: FDSTORE=1 with FDNAME= hands descriptors to systemd, which keeps them while the
 *   service restarts (a crash with Restart=, or `systemctl restart`) and passes them back at the
 *   next start; FDSTOREREMOVE=1 drops them. The unit needs FileDescriptorStoreMax= > 0, and
 *   NotifyAccess=main (or all) so that NOTIFY_SOCKET is set.
 * Sending descriptors needs SCM_RIGHTS, through the fdpass addon.
 */
import { closeSync } from 'node:fs';
import { fdPassAddon, fdPassUnavailable } from './fdpass.js';

export interface ListenFd {
  fd: number;
  /** from LISTEN_FDNAMES; "unknown" when systemd gave no names */
  name: string;
}

let passed: ListenFd[] | undefined;

/**
 * The descriptors systemd passed to this process, read once; the variables are then removed from
 * the environment, so that child processes do not take them for theirs.
 */
export function listenFds(): ListenFd[] {
  if (passed) return passed;
  passed = [];
  const env = process.env;
  if (env.LISTEN_PID === String(process.pid)) {
    const n = Number(env.LISTEN_FDS ?? 0);
    const names = (env.LISTEN_FDNAMES ?? '').split(':');
    for (let i = 0; Number.isSafeInteger(n) && i < n; i++) passed.push({ fd: 3 + i, name: names[i] || 'unknown' });
  }
  delete env.LISTEN_PID;
  delete env.LISTEN_FDS;
  delete env.LISTEN_FDNAMES;
  return passed;
}

/** systemd's fd store, for descriptors whose names start with `prefix`. */
export class SystemdFdStore {
  private readonly given = new Map<string, number>();

  private constructor(
    private readonly socket: string,
    prefix: string,
  ) {
    for (const f of listenFds()) if (f.name.startsWith(prefix)) this.given.set(f.name, f.fd);
  }

  /** The store when this process runs under systemd with a notify socket and the addon is built. */
  static fromEnv(prefix: string): SystemdFdStore | null {
    const socket = process.env.NOTIFY_SOCKET;
    if (!socket || fdPassUnavailable()) return null;
    return new SystemdFdStore(socket, prefix);
  }

  /** Names of the descriptors systemd passed back at start and nobody has taken yet. */
  names(): string[] {
    return [...this.given.keys()];
  }

  /** The descriptor systemd passed back under `name`; ours from now on. */
  take(name: string): number | undefined {
    const fd = this.given.get(name);
    this.given.delete(name);
    return fd;
  }

  /** Hands a duplicate of `fd` to systemd under `name` (it keeps a descriptor once per name). */
  keep(name: string, fd: number): void {
    this.send(`FDSTORE=1\nFDNAME=${name}`, [fd]);
  }

  /** systemd closes what it keeps under `name`; a descriptor it passed back and nobody took is closed. */
  remove(name: string): void {
    this.send(`FDSTOREREMOVE=1\nFDNAME=${name}`, []);
    const fd = this.take(name);
    if (fd !== undefined) closeSync(fd);
  }

  private send(message: string, fds: number[]): void {
    if (!name(message)) throw new Error('bad fd store message');
    fdPassAddon().notify(this.socket, message, fds);
  }
}

/** FDNAME: at most 255 characters, printable ASCII, no ':' (it separates LISTEN_FDNAMES). */
function name(message: string): boolean {
  const n = /FDNAME=(.*)$/.exec(message)?.[1] ?? '';
  return n.length > 0 && n.length <= 255 && /^[\x21-\x39\x3b-\x7e]+$/.test(n);
}
