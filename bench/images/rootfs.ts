/**
 * Root filesystem helpers: the few files every image needs, unpacking layers into a merged tree,
 * and running a command chrooted into such a tree (build-time compile steps and verification).
 */
import { chmodSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { removeTree, run } from './sh.js';

export const PATH_ENV = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** /etc/passwd, /etc/group (root + nobody) and a 1777 /tmp: in the base and in every app layer. */
export function writeEtc(dir: string): void {
  mkdirSync(join(dir, 'etc'), { recursive: true, mode: 0o755 });
  writeFileSync(join(dir, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n', { mode: 0o644 });
  writeFileSync(join(dir, 'etc/group'), 'root:x:0:\nnogroup:x:65534:\n', { mode: 0o644 });
  mkdirSync(join(dir, 'tmp'), { recursive: true });
  chmodSync(join(dir, 'tmp'), 0o1777);
}

/** Unpacks .tar.gz layers in order into dir (our layers carry no whiteouts). */
export async function materialize(blobs: string[], dir: string): Promise<void> {
  mkdirSync(dir, { recursive: true });
  for (const b of blobs) await run(['tar', '-xzf', b, '-C', dir, '--numeric-owner', '-p']);
}

/**
 * Runs fn with /proc mounted and /dev/{null,zero,random,urandom} present in root (both are only
 * ever created in throwaway trees, never in a layer dir). Unmounts afterwards, even on failure.
 */
export async function withChrootMounts<T>(root: string, fn: () => Promise<T>): Promise<T> {
  mkdirSync(join(root, 'dev'), { recursive: true });
  mkdirSync(join(root, 'proc'), { recursive: true });
  const nodes: Array<[string, number]> = [
    ['null', 3],
    ['zero', 5],
    ['random', 8],
    ['urandom', 9],
  ];
  for (const [n, minor] of nodes) if (!existsSync(join(root, 'dev', n))) await run(['mknod', '-m', '666', join(root, 'dev', n), 'c', '1', String(minor)]);
  await run(['mount', '-t', 'proc', 'proc', join(root, 'proc')]);
  try {
    return await fn();
  } finally {
    await run(['umount', join(root, 'proc')]).catch(() => run(['umount', '-l', join(root, 'proc')]));
  }
}

/** A throwaway merged tree of the given layer blobs, removed after fn (mounts included). */
export async function withStage<T>(blobs: string[], dir: string, fn: (root: string) => Promise<T>): Promise<T> {
  await removeTree(dir);
  try {
    await materialize(blobs, dir);
    return await withChrootMounts(dir, () => fn(dir));
  } finally {
    await removeTree(dir);
  }
}
