/**
 * Helpers for the FUSE tests. Every client-side action against a mount runs in a child process
 * (async): the test process hosts the server, and a synchronous call on its own mount would
 * deadlock it.
 */
import { execFile } from 'node:child_process';
import { readFile, rmdir } from 'node:fs/promises';
import { readMountinfo } from '../../src/host/index.js';
import { FuseServer, type FuseServerOptions } from '../../src/fuse/index.js';
import { SyntheticFs, type SyntheticOptions } from '../../harness/synthetic-fs.js';
import { newTempDir, waitFor } from '../../harness/env.js';
export { waitFor };

export interface ShResult {
  code: number;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs a shell command in a child process; never throws on a non-zero exit. */
export function sh(cmd: string, timeoutMs = 60_000): Promise<ShResult> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    execFile('sh', ['-c', cmd], { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr), ms: performance.now() - t0 });
    });
  });
}

export function makeMountDir(prefix = 'soci-fuse-'): Promise<string> {
  return newTempDir(prefix);
}

export async function isMounted(dir: string): Promise<boolean> {
  return (await readMountinfo()).some((m) => m.mountpoint === dir);
}

export interface Mounted {
  server: FuseServer;
  fs: SyntheticFs;
  dir: string;
  cleanup(): Promise<void>;
}

let trueBytes: Buffer | null = null;

/** Mounts a fresh SyntheticFs on a private temp dir. cleanup() unmounts (lazily if needed) and removes the dir. */
export async function mountSynthetic(opts: Partial<FuseServerOptions> = {}, fsOpts: SyntheticOptions = {}): Promise<Mounted> {
  trueBytes ??= await readFile('/bin/true');
  const fs = new SyntheticFs({ trueBytes, ...fsOpts });
  const dir = await makeMountDir();
  let server: FuseServer;
  try {
    server = await FuseServer.mount(fs, { mountpoint: dir, subtype: 'socitest', ...opts });
  } catch (e) {
    await rmdir(dir).catch(() => undefined);
    throw e;
  }
  return {
    server,
    fs,
    dir,
    async cleanup() {
      await server.unmount().catch(() => undefined);
      if (await isMounted(dir)) await sh(`umount -l '${dir}'`);
      await rmdir(dir).catch(() => undefined); // never recursive: it could walk into a mount
    },
  };
}
