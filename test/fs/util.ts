/**
 * Test plumbing for test/fs: a scratch dir whose cleanups run in REVERSE order (unmount before
 * removing the dir; node:test runs `after` hooks first-registered-first).
 */
import { rm } from 'node:fs/promises';
import { newTempDir } from '../../harness/env.js';

export interface Scratch {
  dir: string;
  /** registers a cleanup; the last registered runs first, the dir removal runs last */
  defer(fn: () => unknown): void;
}

export async function scratch(t: { after: (fn: () => unknown) => void }, prefix = 'soci-fs-'): Promise<Scratch> {
  const dir = await newTempDir(prefix);
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

type Dump = Record<string, Record<string, unknown>>;

/** Compares a mount dump with the tar's expected view; returns the list of differences. */
export function compareDumps(got: Dump, want: Dump, opts: { skipNames?: (p: string) => boolean } = {}): string[] {
  const diffs: string[] = [];
  const name = (p: string) => JSON.stringify(Buffer.from(p, 'base64').toString('latin1'));
  for (const [p, w] of Object.entries(want)) {
    if (opts.skipNames?.(p)) continue;
    const g = got[p];
    if (!g) {
      diffs.push(`missing ${name(p)}`);
      continue;
    }
    for (const k of ['mode', 'uid', 'gid', 'size', 'sha256', 'target', 'rdev', 'nlink'] as const) {
      if (w[k] !== undefined && JSON.stringify(g[k]) !== JSON.stringify(w[k]))
        diffs.push(`${name(p)} ${k}: got ${JSON.stringify(g[k])} want ${JSON.stringify(w[k])}`);
    }
    // FUSE attrs carry unsigned seconds: pre-1970 times show as 0 (fuse protocol limitation).
    if (!w.whiteout && w.mtime_ns !== undefined) {
      const wm = Math.max(0, w.mtime_ns as number);
      if (g.mtime_ns !== wm && !((w.mtime_ns as number) < 0)) diffs.push(`${name(p)} mtime_ns: got ${String(g.mtime_ns)} want ${wm}`);
    }
    if (JSON.stringify(sortKeys(g.xattrs)) !== JSON.stringify(sortKeys(w.xattrs)))
      diffs.push(`${name(p)} xattrs: got ${JSON.stringify(g.xattrs)} want ${JSON.stringify(w.xattrs)}`);
  }
  for (const p of Object.keys(got)) if (!want[p] && !opts.skipNames?.(p)) diffs.push(`unexpected ${name(p)}`);
  // Hardlinks: same inode for every name of a group.
  const groups = new Map<unknown, string[]>();
  for (const [p, w] of Object.entries(want))
    if (w.link_group !== undefined && !opts.skipNames?.(p)) groups.set(w.link_group, [...(groups.get(w.link_group) ?? []), p]);
  for (const ps of groups.values()) {
    const inos = new Set(ps.map((p) => got[p]?.ino));
    if (inos.size !== 1) diffs.push(`hardlink group ${ps.map(name).join(',')} has inodes ${[...inos].join(',')}`);
  }
  return diffs;
}

function sortKeys(o: unknown): unknown {
  if (!o || typeof o !== 'object') return o;
  return Object.fromEntries(Object.entries(o as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : 1)));
}
