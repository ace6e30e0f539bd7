/**
 * Our `soci` CLI as tests run it, in a child process: from source (harness/soci-main.ts, so a
 * stale dist/ never answers) or as installed (bin/soci.js). `sociRun` never throws; `soci` expects
 * exit 0, `sociFail` a failure; `oneLineError` checks AWS's error shape: one `soci: …` line, no stack.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { exec, repoRoot, type ExecResult } from './containerd.js';

export const SOCI_MAIN = join(repoRoot, 'harness', 'soci-main.ts');
export const SOCI_BIN = join(repoRoot, 'bin', 'soci.js');

export interface SociOptions {
  /** run bin/soci.js (the installed entry) instead of the source */
  bin?: boolean;
  /** global flags before `--root` (e.g. `--content-store soci`) */
  flags?: string[];
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  input?: string;
}

export function sociRun(root: string, args: string[], o: SociOptions = {}): Promise<ExecResult> {
  const entry = o.bin ? [SOCI_BIN] : ['--import', 'tsx', SOCI_MAIN];
  return exec(process.execPath, [...entry, ...(o.flags ?? []), '--root', root, ...args], {
    timeoutMs: o.timeoutMs ?? 300_000,
    ...(o.env ? { env: o.env } : {}),
    ...(o.input !== undefined ? { input: o.input } : {}),
  });
}

/** Exit 0 expected (else an assertion naming the command and its stderr). */
export async function soci(root: string, args: string[], o: SociOptions = {}): Promise<ExecResult> {
  const r = await sociRun(root, args, o);
  assert.equal(r.code, 0, `soci ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
  return r;
}

/** A failure expected (else an assertion naming the command and its stdout). */
export async function sociFail(root: string, args: string[], o: SociOptions = {}): Promise<ExecResult> {
  const r = await sociRun(root, args, o);
  assert.notEqual(r.code, 0, `soci ${args.join(' ')} should have failed, got: ${r.stdout.slice(0, 200)}`);
  return r;
}

/** The failure's one line: exactly one `soci: …` line on stderr, no stack trace; matched against `re` when given. */
export function oneLineError(r: { code: number; stderr: string }, re?: RegExp): string {
  assert.notEqual(r.code, 0, 'non-zero exit');
  const lines = r.stderr.replace(/\n$/, '').split('\n');
  assert.equal(lines.length, 1, `a one-line error, got:\n${r.stderr}`);
  assert.match(lines[0]!, /^soci: \S/);
  if (re) assert.match(lines[0]!, re);
  assert.doesNotMatch(r.stderr, /\n\s+at |^\s+at /, 'no stack trace');
  return lines[0]!;
}
