/**
 * Images for the hostile-layer and nosuid tests:
 *   ociLayout(dir, layers, tag)   → an OCI layout of gzip'd tar layers (any tar writer), diff_ids set
 *   twoLayerImage(dir, name)      → a 1.5 MB incompressible layer (lazy with --min-layer-size 1048576)
 *                                   and a tiny one (~150 B gzip'd: never indexed, unpacked locally)
 *   buildEuidProbe(dir)           → a static binary printing "<ruid> <euid>"; named `drop`, it execs
 *                                   its arguments as uid/gid 65534 (a setpriv for images without one)
 *   blobPath(reg, digest)         → where docker-registry keeps a blob's bytes (to delete them)
 * Busybox cannot serve as the setuid probe: built with FEATURE_SUID it drops privileges for `id`.
 */
import { execFileSync } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { buildLayout, pseudoRandom } from './images.js';
import type { WrittenLayout } from './layout.js';
import type { TestRegistry } from './registry.js';

export const BIG_FILE = 'big/blob.bin';
export const BIG_SIZE = 1_572_864;

/** The big file's bytes of image `seed` (incompressible, so its gzip'd layer stays above 1 MiB). */
export function bigFile(seed: number): Buffer {
  return pseudoRandom(BIG_SIZE, seed, 0);
}

/** [1.5 MB layer with big/blob.bin (+ extra files), tiny layer with etc/<name>.txt]; tag latest. */
export function twoLayerImage(
  dir: string,
  name: string,
  seed: number,
  extra: Record<string, Buffer | { content: Buffer; mode: number }> = {},
): WrittenLayout & { tiny: string; big: string } {
  const built = buildLayout(dir, {
    images: [{ layers: [{ files: { [BIG_FILE]: bigFile(seed), ...extra } }, { files: { [`etc/${name}.txt`]: `${name}\n` } }] }],
  });
  return { ...built, big: built.layers[0]![0]!, tiny: built.layers[0]![1]! };
}

const PROBE_C = String.raw`
#include <grp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv) {
  const char *name = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
  if (strcmp(name, "drop") == 0) {
    if (argc < 2) { fprintf(stderr, "usage: drop PROGRAM [ARG...]\n"); return 2; }
    if (setgroups(0, NULL) != 0 || setgid(65534) != 0 || setuid(65534) != 0) { perror("drop"); return 111; }
    execv(argv[1], argv + 1);
    perror("execv");
    return 112;
  }
  printf("%d %d\n", (int)getuid(), (int)geteuid());
  return 0;
}
`;

/** Compiles the probe (gcc -static) into dir; returns its bytes. */
export async function buildEuidProbe(dir: string): Promise<Buffer> {
  const src = join(dir, 'probe.c');
  const out = join(dir, 'probe');
  await writeFile(src, PROBE_C);
  execFileSync('gcc', ['-static', '-O2', '-o', out, src], { stdio: ['ignore', 'ignore', 'pipe'] });
  return readFile(out);
}

/** docker-registry's filesystem driver: the blob's data file. */
export function blobPath(reg: TestRegistry, digest: string): string {
  const hex = digest.slice('sha256:'.length);
  return join(reg.root, 'docker', 'registry', 'v2', 'blobs', 'sha256', hex.slice(0, 2), hex, 'data');
}
