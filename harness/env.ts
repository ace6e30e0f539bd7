/**
 * Shared test environment helpers. e2e tests need root (FUSE, mount, containerd) and Debian tools:
 * outside CI they skip with a reason; in CI (CI=true) a missing prerequisite is a failure, never a skip.
 * `scripts/test.sh --unit` (SOCI_TEST_UNIT=1) skips every test that needs root or a host tool.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import type { TestContext } from 'node:test';
import type { Logger } from '../src/logger.js';

export const inCI = process.env.CI === 'true';
export const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

export function hasTool(name: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' }).status === 0;
}

/**
 * Returns a reason string when the test cannot run here (use as `{ skip: needs(...) }`), or false.
 * In CI it throws instead, so e2e tests never silently skip there.
 */
export function needs(opts: { root?: boolean; tools?: string[] }): string | false {
  // `scripts/test.sh --unit`: only what runs without root or host tools, even in CI.
  if (process.env.SOCI_TEST_UNIT === '1' && (opts.root || opts.tools?.length)) return 'unit run (scripts/test.sh --unit): needs root or host tools';
  const missing: string[] = [];
  if (opts.root && !isRoot) missing.push('root');
  for (const t of opts.tools ?? []) if (!hasTool(t)) missing.push(t);
  if (missing.length === 0) return false;
  const reason = `needs ${missing.join(', ')} (run scripts/setup.sh as root)`;
  if (inCI) throw new Error(`CI prerequisite missing: ${reason}`);
  return reason;
}

/** A new private temp dir (under $SOCI_TEST_TMP when set); the caller removes it. */
export function newTempDir(prefix = 'soci-test-'): Promise<string> {
  return mkdtemp(join(process.env.SOCI_TEST_TMP ?? tmpdir(), prefix));
}

/** A private temp dir removed after the test (or suite). */
export async function tempDir(t: TestContext | { after: (fn: () => unknown) => void }, prefix = 'soci-test-'): Promise<string> {
  const dir = await newTempDir(prefix);
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Polls `ok` every `intervalMs` until it holds (true) or `timeoutMs` passed (false, after one last try). */
export async function waitFor(ok: () => Promise<boolean> | boolean, timeoutMs = 5000, intervalMs = 20): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await ok()) return true;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  return ok();
}

/** All chunks of a stream, concatenated. */
export async function collect(it: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of it) parts.push(c);
  return Buffer.concat(parts);
}

export interface LogLine {
  level: 'debug' | 'info' | 'warn' | 'error';
  msg: string;
  fields: Record<string, unknown>;
}

/** A Logger (src/logger.ts) that keeps every line, for tests to assert on. */
export function recordingLogger(): Logger & { lines: LogLine[] } {
  const lines: LogLine[] = [];
  const at = (level: LogLine['level']) => (fields: Record<string, unknown>, msg: string) => void lines.push({ level, msg, fields });
  return { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}
