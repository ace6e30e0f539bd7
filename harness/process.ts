/**
 * Daemons a test starts itself: their output kept for failure messages, readiness polled with a
 * fail-fast on early exit, and a stop by PID (the signal, then SIGKILL after a grace period).
 */
import type { ChildProcess } from 'node:child_process';
import { waitFor } from './env.js';

/** What registers cleanups: a node:test context or suite. */
export type AfterHost = { after: (fn: () => unknown) => void };

/** Waits for a daemon to be ready; fails at once when its process exits first. */
export async function waitReady(what: string, ok: () => Promise<boolean> | boolean, timeoutMs: number, proc: ChildProcess, logs: () => string): Promise<void> {
  const exited = () => proc.exitCode !== null;
  await waitFor(async () => exited() || (await ok()), timeoutMs, 100);
  if (await ok()) return;
  throw new Error(`${what}: ${exited() ? `process exited with ${proc.exitCode}` : `timed out after ${timeoutMs} ms`}\n${logs()}`);
}

/** Everything the process writes (stdout and stderr, interleaved as it comes). */
export function captureOutput(proc: ChildProcess): () => string {
  let out = '';
  const add = (b: Buffer) => {
    out += b.toString();
  };
  proc.stderr!.on('data', add);
  proc.stdout!.on('data', add);
  return () => out;
}

/** Sends `signal`, then SIGKILL after `timeoutMs`; resolves with the exit code. */
export async function stopProcess(proc: ChildProcess, signal: NodeJS.Signals, timeoutMs = 15_000): Promise<number | null> {
  if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode;
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  proc.kill(signal);
  const t = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
  const code = await exited;
  clearTimeout(t);
  return code;
}
