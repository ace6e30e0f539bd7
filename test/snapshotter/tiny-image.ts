/**
 * Builds a tiny two-layer OCI image archive for e2e runs (no busybox, no network):
 *   layer 1: /hello (a static binary compiled from C here), /gone, /etc/
 *   layer 2: /msg.txt and a whiteout `.wh.gone` removing /gone
 * `/hello` prints "hello from soci", the contents of /msg.txt, and whether /gone exists, so one
 * `ctr run` checks the binary, the layer order and whiteout handling of the overlay mounts.
 */
import { execFileSync } from 'node:child_process';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { packTar } from '../../harness/images.js';
import { writeLayout } from '../../harness/layout.js';
import { digestOf } from '../../src/oci/digest.js';

const C_SOURCE = `#include <stdio.h>
#include <unistd.h>
int main(void) {
  char buf[256]; size_t n = 0; FILE *f = fopen("/msg.txt", "r");
  if (f) { n = fread(buf, 1, sizeof buf - 1, f); fclose(f); }
  buf[n] = 0;
  printf("hello from soci\\nmsg=%sgone=%s\\n", buf, access("/gone", F_OK) == 0 ? "present" : "absent");
  return 0;
}
`;

/** Writes `<dir>/image.tar` (OCI archive) named `name`; returns its path. */
export async function buildTinyImage(dir: string, name: string): Promise<string> {
  await writeFile(join(dir, 'hello.c'), C_SOURCE);
  execFileSync('gcc', ['-static', '-Os', '-o', join(dir, 'hello'), join(dir, 'hello.c')]);
  const hello = await readFile(join(dir, 'hello'));
  const l1 = await packTar([
    { name: 'etc/', type: 'directory' },
    { name: 'hello', data: hello, mode: 0o755 },
    { name: 'gone', data: Buffer.from('to be whited out\n') },
  ]);
  const l2 = await packTar([{ name: 'msg.txt', data: Buffer.from('layer two\n') }, { name: '.wh.gone' }]);
  const arch = process.arch === 'arm64' ? 'arm64' : 'amd64';
  const layers = [l1, l2].map((raw) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', diffId: digestOf(raw), bytes: gzipSync(raw) }));
  const layout = join(dir, 'layout');
  writeLayout(layout, [{ platform: { os: 'linux', architecture: arch }, layers, config: { config: { Cmd: ['/hello'], Env: ['PATH=/'] } } }], {
    annotations: { 'io.containerd.image.name': name },
    platformInIndex: true,
  });
  const blobs = await readdir(join(layout, 'blobs', 'sha256'));
  const file = async (name: string) => ({ name, data: await readFile(join(layout, name)) });
  const archive = await packTar([
    await file('oci-layout'),
    await file('index.json'),
    { name: 'blobs/', type: 'directory' },
    { name: 'blobs/sha256/', type: 'directory' },
    ...(await Promise.all(blobs.sort().map((b) => file(`blobs/sha256/${b}`)))),
  ]);
  const path = join(dir, 'image.tar');
  await writeFile(path, archive);
  return path;
}
