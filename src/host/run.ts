/**
 * Child processes for host chores (mount, umount, stat): asynchronous, so the event loop that may
 * be serving a FUSE mount is never blocked by a command that touches it, and always bounded by a
 * timeout, because a command stuck in a request to a hung FUSE daemon sits in D state for good.
 */
import { spawn } from 'node:child_process';
import { SociError } from '../errors.js';

export interface CmdResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/** The default bound on one host command. */
export const HOST_CMD_TIMEOUT_MS = 30_000;

/** Runs a command; never rejects. `fd3` is passed as the child's fd 3. */
export function runCmd(cmd: string, args: string[], opts: { timeoutMs?: number; fd3?: number } = {}): Promise<CmdResult> {
  const timeoutMs = opts.timeoutMs ?? HOST_CMD_TIMEOUT_MS;
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
      clearTimeout(timer);
      resolvePromise(r);
    };
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
      // A child stuck in a FUSE request stays in D state even after SIGKILL: do not wait for its exit.
      setTimeout(() => finish({ code: null, signal: 'SIGKILL', stdout, stderr, timedOut }), 200).unref();
    }, timeoutMs);
    child.on('error', (err) => finish({ code: null, signal: null, stdout, stderr: stderr + err.message, timedOut }));
    child.on('close', (code, signal) => finish({ code, signal, stdout, stderr, timedOut }));
  });
}

/** Runs a command; its stdout, or a SociError ERR_IO with its stderr (or the timeout). */
export async function sh(cmd: string, args: string[], timeoutMs = HOST_CMD_TIMEOUT_MS): Promise<string> {
  const r = await runCmd(cmd, args, { timeoutMs });
  if (r.code === 0) return r.stdout;
  const why = r.timedOut ? `timed out after ${timeoutMs} ms` : r.stderr.trim() || `exit ${r.code ?? r.signal}`;
  throw new SociError('ERR_IO', `${cmd} ${args.join(' ')}: ${why}`);
}
