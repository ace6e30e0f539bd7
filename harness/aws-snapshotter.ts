/**
 * AWS's soci-snapshotter-grpc (v0.16.1, built by scripts/install-test-tools.sh from the module
 * proxy) as a private child process: its own root, socket and config under a temp dir, stopped by
 * PID (SIGINT, then SIGKILL), its FUSE mounts removed with the dir by the caller's removeTree.
 *
 *   const aws = await startAwsSnapshotter(t, { dir, containerdAddress, config: '[prefetch]\nenable = true\n' });
 *   const cd = await startContainerd(t, { version: '2.2', snapshotterSocket: aws.address, address: containerdAddress, ... });
 *
 * It reads SOCI indexes from containerd's content store (`[content_store] containerd_address`), so
 * containerd's socket path is fixed before either starts.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readMountinfo } from '../src/host/index.js';
import { waitFor } from './env.js';

export const AWS_SNAPSHOTTER = `${process.env.SOCI_TEST_TOOLS ?? '/opt/soci-test-tools/bin'}/aws-soci-snapshotter-grpc`;

export interface AwsSnapshotterOptions {
  /** where the socket, config and root go (the caller removes it) */
  dir: string;
  /** containerd's socket: AWS's content store is containerd's */
  containerdAddress: string;
  /** TOML appended to the generated config (its [content_store] section is already written) */
  config?: string;
  logLevel?: string;
}

export interface StartedAwsSnapshotter {
  address: string;
  root: string;
  proc: ChildProcess;
  logs(): string;
  /** FUSE mounts (any `fuse*` type) under its root: its lazily mounted layers */
  fuseMounts(): Promise<string[]>;
  stop(): Promise<void>;
}

export async function startAwsSnapshotter(t: { after: (fn: () => unknown) => void }, o: AwsSnapshotterOptions): Promise<StartedAwsSnapshotter> {
  const address = join(o.dir, 'aws.sock');
  const root = join(o.dir, 'aws-root');
  const configPath = join(o.dir, 'aws.toml');
  await writeFile(configPath, `${o.config ?? ''}\n[content_store]\ncontainerd_address = "${o.containerdAddress}"\n`);
  await mkdir(root, { recursive: true });
  const proc = spawn(AWS_SNAPSHOTTER, ['--address', address, '--root', root, '--config', configPath, '--log-level', o.logLevel ?? 'info'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const add = (b: Buffer) => void (out += b.toString());
  proc.stdout!.on('data', add);
  proc.stderr!.on('data', add);
  const stop = async () => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((r) => proc.once('exit', r));
    proc.kill('SIGINT');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGKILL');
      await exited;
    }
  };
  t.after(stop);
  await waitFor(() => existsSync(address) || proc.exitCode !== null, 30_000, 100);
  if (!existsSync(address)) throw new Error(`AWS's snapshotter did not start (exit ${proc.exitCode}):\n${out.slice(-3000)}`);
  return { address, root, proc, logs: () => out, fuseMounts: () => fuseMountsUnder(root), stop };
}

async function fuseMountsUnder(dir: string): Promise<string[]> {
  return (await readMountinfo()).filter((m) => m.fstype.startsWith('fuse') && m.mountpoint.startsWith(`${dir}/`)).map((m) => m.mountpoint);
}
