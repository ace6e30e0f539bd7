/**
 * Test plumbing for test/fs: a scratch dir whose cleanups run in REVERSE order (unmount before
 * removing the dir; node:test runs `after` hooks first-registered-first).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Scratch {
  dir: string;
  /** registers a cleanup; the last registered runs first, the dir removal runs last */
  defer(fn: () => unknown): void;
}

export async function scratch(t: { after: (fn: () => unknown) => void }, prefix = 'soci-fs-'): Promise<Scratch> {
  const dir = await mkdtemp(join(process.env.SOCI_TEST_TMP ?? tmpdir(), prefix));
  const fns: Array<() => unknown> = [];
  t.after(async () => {
    for (const fn of fns.reverse()) {
      try {
        await fn();
      } catch (e) {
        process.stderr.write(`cleanup failed: ${(e as Error).message}\n`);
      }
    }
    await rm(dir, { recursive: true, force: true });
  });
  return { dir, defer: (fn) => fns.push(fn) };
}

/** Names (base64 of raw bytes) that are pure ASCII: the only ones a UTF-8 FUSE name codec keeps intact. */
export function isAscii(b64: string): boolean {
  return Buffer.from(b64, 'base64').every((c) => c < 0x80);
}
