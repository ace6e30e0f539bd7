/**
 * FUSE connections that outlive the process serving them. Each mounted connection's /dev/fuse fd
 * is handed to systemd's fd store when the process runs as a systemd service that has one
 * (../host/systemd.ts), else to a holder process (../host/fd-holder.ts), and recorded in `dir`,
 * one JSON file per mountpoint: the fd's name in the store or the holder, what INIT negotiated,
 * and the mount's device. A process started later (the daemon after a crash, kill or upgrade)
 * takes the fd back and serves the same mount with FuseServer.resume(): the kernel queues
 * requests meanwhile, so readers see a pause, not an error.
 *
 * A record is only used while its holder is the same process (or systemd passed its fd back) and
 * the mount is still in the mount table with the same device; anything else is stale and removed.
 * Releasing a connection (a deliberate unmount) ends its holder, or removes it from the store.
 */
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { holdFd, holderAlive, releaseHolder, takeHeldFd, type Holder } from '../host/fd-holder.js';
import { fdPassUnavailable } from '../host/fdpass.js';
import { SystemdFdStore } from '../host/systemd.js';
import { readMountinfo, writeFileAtomic } from '../host/index.js';
import { SociError } from '../errors.js';
import type { FuseServer } from './server.js';

/** What names our connections in systemd's fd store (LISTEN_FDNAMES tells them from sockets). */
export const STORE_PREFIX = 'soci-fuse-';

export interface KeptConnection {
  mountpoint: string;
  /** the holder process that keeps the fd, or */
  holder?: Holder;
  /** the fd's name in systemd's fd store */
  fdName?: string;
  kernel: FuseServer['kernel'];
  /** the mount's device (st_dev): its minor is the connection's id while it lives */
  device: { major: number; minor: number };
}

/**
 * How long a holder waits for a daemon to serve its connection again before it aborts it (readers
 * then get an error, "Software caused connection abort", instead of waiting); SOCI_FUSE_KEEP_SEC
 * overrides. systemd bounds its fd store itself: it closes the fds once the unit has stopped.
 */
export function keepSeconds(): number {
  return Number(process.env.SOCI_FUSE_KEEP_SEC) || 600;
}

export class ConnectionKeeper {
  /** systemd's fd store, when running as a service that has one */
  private readonly store: SystemdFdStore | null;
  /** renews the lease that tells holders a daemon serves their connections */
  private leaseTimer: NodeJS.Timeout | null = null;

  constructor(private readonly dir: string) {
    this.store = SystemdFdStore.fromEnv(STORE_PREFIX);
  }

  private get leaseFile(): string {
    return join(this.dir, 'lease');
  }

  /**
   * Starts renewing the lease: now, then a third of its time apart, for as long as this process
   * lives. Later calls find it running and do nothing.
   */
  private async renewLease(): Promise<void> {
    if (this.leaseTimer) return;
    const write = () => writeFile(this.leaseFile, `${process.pid}\n`, { mode: 0o600 });
    this.leaseTimer = setInterval(() => void write().catch(() => undefined), Math.max(500, (keepSeconds() * 1000) / 3));
    this.leaseTimer.unref();
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    await write();
  }

  /** null when connections can be kept; else why not, in one line. */
  static unavailable(): string | null {
    return fdPassUnavailable();
  }

  private id(mountpoint: string): string {
    return createHash('sha256').update(mountpoint).digest('hex').slice(0, 32);
  }

  private file(mountpoint: string): string {
    return join(this.dir, `${this.id(mountpoint)}.json`);
  }

  /** Hands `server`'s connection to systemd's fd store or a holder, and records it. */
  async keep(server: FuseServer): Promise<void> {
    const m = server.mountInfo;
    if (!m) throw new Error(`no mount info for ${server.mountpoint}`);
    const rec: KeptConnection = { mountpoint: server.mountpoint, kernel: server.kernel, device: { major: m.major, minor: m.minor } };
    if (this.store) {
      rec.fdName = STORE_PREFIX + this.id(server.mountpoint);
      this.store.keep(rec.fdName, server.connectionFd);
    } else {
      await this.renewLease();
      const lease = { file: this.leaseFile, seconds: keepSeconds(), abortFile: `/sys/fs/fuse/connections/${m.minor}/abort` };
      rec.holder = await holdFd(server.connectionFd, server.mountpoint, lease);
    }
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    try {
      await writeFileAtomic(this.file(server.mountpoint), JSON.stringify(rec), 0o600);
    } catch (e) {
      this.drop(rec);
      throw e;
    }
  }

  /** Ends what keeps `rec`'s fd: its holder, or its entry in the store. */
  private drop(rec: KeptConnection): void {
    if (rec.holder) releaseHolder(rec.holder);
    else if (rec.fdName) this.store?.remove(rec.fdName);
  }

  private kept(rec: KeptConnection): boolean {
    if (rec.holder) return holderAlive(rec.holder);
    return !!rec.fdName && !!this.store?.names().includes(rec.fdName);
  }

  /**
   * The kept connections that can be served again: holder alive, mount present with the same
   * device. Stale records are removed (their holders ended).
   */
  async live(): Promise<KeptConnection[]> {
    let names: string[];
    try {
      names = (await readdir(this.dir)).filter((n) => n.endsWith('.json'));
    } catch {
      return [];
    }
    const mounts = await readMountinfo();
    const out: KeptConnection[] = [];
    for (const n of names) {
      const path = join(this.dir, n);
      let rec: KeptConnection | undefined;
      try {
        rec = JSON.parse(await readFile(path, 'utf8')) as KeptConnection;
      } catch {
        rec = undefined;
      }
      const ok =
        rec !== undefined &&
        this.kept(rec) &&
        mounts.some((m) => m.mountpoint === rec.mountpoint && m.major === rec.device.major && m.minor === rec.device.minor);
      if (ok) out.push(rec!);
      else {
        if (rec) this.drop(rec);
        await rm(path, { force: true });
      }
    }
    // fds systemd passed back that no record names: their mounts are not ours to serve
    for (const n of this.store?.names() ?? []) if (!out.some((r) => r.fdName === n)) this.store!.remove(n);
    return out;
  }

  /** The fd of a kept connection: from its holder, or as systemd passed it back (both keep their own until released). */
  take(rec: KeptConnection): number {
    if (rec.holder) {
      void this.renewLease().catch(() => undefined);
      return takeHeldFd(rec.holder, '/dev/fuse');
    }
    const fd = rec.fdName ? this.store?.take(rec.fdName) : undefined;
    if (fd === undefined) throw new SociError('ERR_NOT_FOUND', `systemd passed no fd named ${rec.fdName} back`);
    return fd;
  }

  /** Whether a connection is recorded for `mountpoint`. */
  async isKept(mountpoint: string): Promise<boolean> {
    return readFile(this.file(mountpoint)).then(
      () => true,
      () => false,
    );
  }

  /** Ends the holder of `mountpoint`'s connection and forgets it. */
  async release(mountpoint: string): Promise<void> {
    const path = this.file(mountpoint);
    try {
      this.drop(JSON.parse(await readFile(path, 'utf8')) as KeptConnection);
    } catch {
      /* nothing kept */
    }
    await rm(path, { force: true });
  }
}
