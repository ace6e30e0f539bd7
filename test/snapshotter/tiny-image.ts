/**
 * Builds a tiny two-layer OCI image archive for e2e runs (no busybox, no network):
 *   layer 1: /hello (a static binary compiled from C here), /gone, /etc/
 *   layer 2: /msg.txt and a whiteout `.wh.gone` removing /gone
 * `/hello` prints "hello from soci", the contents of /msg.txt, and whether /gone exists, so one
 * `ctr run` checks the binary, the layer order and whiteout handling of the overlay mounts.
 */
import { execFileSync } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { packTar } from '../../harness/images.js';
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
  const layers = [l1, l2].map((raw) => ({ raw, gz: gzipSync(raw) }));
  const arch = process.arch === 'arm64' ? 'arm64' : 'amd64';
  const config = JSON.stringify({
    architecture: arch,
    os: 'linux',
    config: { Cmd: ['/hello'], Env: ['PATH=/'] },
    rootfs: { type: 'layers', diff_ids: layers.map((l) => digestOf(l.raw)) },
  });
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: digestOf(config), size: Buffer.byteLength(config) },
    layers: layers.map((l) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: digestOf(l.gz), size: l.gz.length })),
  });
  const index = JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [
      {
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        digest: digestOf(manifest),
        size: Buffer.byteLength(manifest),
        platform: { architecture: arch, os: 'linux' },
        annotations: { 'io.containerd.image.name': name, 'org.opencontainers.image.ref.name': 'latest' },
      },
    ],
  });
  const blob = (b: Buffer | string) => ({ name: `blobs/sha256/${digestOf(b).slice(7)}`, data: Buffer.from(b) });
  const archive = await packTar([
    { name: 'oci-layout', data: Buffer.from('{"imageLayoutVersion":"1.0.0"}') },
    { name: 'index.json', data: Buffer.from(index) },
    { name: 'blobs/', type: 'directory' },
    { name: 'blobs/sha256/', type: 'directory' },
    blob(config),
    blob(manifest),
    ...layers.map((l) => blob(l.gz)),
  ]);
  const path = join(dir, 'image.tar');
  await writeFile(path, archive);
  return path;
}
