/**
 * A small "echo-like" app image for e2e tests and the demo: busybox's static httpd serving /www,
 * inside a layer that also carries unused bulk (so only a few spans are needed to start), plus a
 * small config layer (below min-layer-size: unpacked locally, never lazy).
 *   buildAppImage(dir, { bulkMb }) → WrittenLayout (harness/layout.ts)
 * The container command is `/bin/busybox httpd -f -p 127.0.0.1:<port> -h /www`.
 */
import { readFileSync } from 'node:fs';
import { buildLayout, pseudoRandom } from './images.js';
import type { WrittenLayout } from './layout.js';

export const APP_INDEX_HTML = '<html><body>hello from a lazily loaded image</body></html>\n';

export function buildAppImage(dir: string, opts: { bulkMb?: number; tag?: string; seed?: number } = {}): WrittenLayout {
  const bulkMb = opts.bulkMb ?? 24;
  const bulk: Record<string, Buffer> = {};
  for (let i = 0; i < Math.ceil(bulkMb / 4); i++) bulk[`usr/share/bulk/part${i}.bin`] = appPartBytes(i, opts.seed);
  return buildLayout(dir, {
    tag: opts.tag ?? 'latest',
    images: [
      {
        layers: [
          { files: { 'bin/busybox': { content: readFileSync('/bin/busybox'), mode: 0o755 }, 'www/index.html': APP_INDEX_HTML, ...bulk } },
          { files: { 'etc/passwd': 'root:x:0:0:root:/root:/bin/sh\n', 'etc/group': 'root:x:0:\n', 'tmp/.keep': '' } },
        ],
      },
    ],
  });
}

/** The bytes of /usr/share/bulk/part<i>.bin in an image built with `seed` (default 100). */
export function appPartBytes(i: number, seed = 100): Buffer {
  return pseudoRandom(4 << 20, seed + i, 0.6);
}

export function appCommand(port: number): string[] {
  return ['/bin/busybox', 'httpd', '-f', '-p', `127.0.0.1:${port}`, '-h', '/www'];
}
