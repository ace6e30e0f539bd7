/**
 * FUSE connections that outlive the process serving them. Each mounted connection's /dev/fuse fd
 * is handed to a holder process (../host/fd-holder.ts) and recorded in `dir`, one JSON file per
 * mountpoint: the holder, what INIT negotiated, and the mount's device. A process started later
 * (the daemon after a crash, kill or upgrade) takes the fd back and serves the same mount with
 * FuseServer.resume(): the kernel queues requests meanwhile, so readers see a pause, not an error.
 *
 * A record is only used while its holder is the same process and the mount is still in the mount
 * table with the same device; anything else is stale and removed. Releasing a connection (a
 * deliberate unmount) ends its holder.
 */
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fdPassUnavailable, holdFd, holderAlive, releaseHolder, takeHeldFd, type Holder } from '../host/fd-holder.js';
import { readMountinfo, writeFileAtomic } from '../host/index.js';
import type { FuseServer } from './server.js';

export interface KeptConnection {
  mountpoint: string;
  holder: Holder;
  kernel: FuseServer['kernel'];
  /** the mount's device (st_dev): its minor is the connection's id while it lives */
  device: { major: number; minor: number };
}

export class ConnectionKeeper {
  constructor(private readonly dir: string) {}

  /** null when connections can be kept; else why not, in one line. */
  static unavailable(): string | null {
    return fdPassUnavailable();
  }

  private file(mountpoint: string): string {
    return join(this.dir, `${createHash('sha256').update(mountpoint).digest('hex').slice(0, 32)}.json`);
  }

  /** Hands `server`'s connection to a holder and records it. */
  async keep(server: FuseServer): Promise<void> {
    const m = server.mountInfo;
    if (!m) throw new Error(`no mount info for ${server.mountpoint}`);
    const holder = await holdFd(server.connectionFd, server.mountpoint);
    const rec: KeptConnection = { mountpoint: server.mountpoint, holder, kernel: server.kernel, device: { major: m.major, minor: m.minor } };
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    try {
      await writeFileAtomic(this.file(server.mountpoint), JSON.stringify(rec), 0o600);
    } catch (e) {
      releaseHolder(holder);
      throw e;
    }
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
        holderAlive(rec.holder) &&
        mounts.some((m) => m.mountpoint === rec.mountpoint && m.major === rec.device.major && m.minor === rec.device.minor);
      if (ok) out.push(rec!);
      else {
        if (rec) releaseHolder(rec.holder);
        await rm(path, { force: true });
      }
    }
    return out;
  }

  /** The fd of a kept connection, taken from its holder (which keeps its own until released). */
  take(rec: KeptConnection): number {
    return takeHeldFd(rec.holder, '/dev/fuse');
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
      const rec = JSON.parse(await readFile(path, 'utf8')) as KeptConnection;
      releaseHolder(rec.holder);
    } catch {
      /* nothing kept */
    }
    await rm(path, { force: true });
  }
}
