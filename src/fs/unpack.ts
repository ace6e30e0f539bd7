/**
 * Local unpack of a layer that is not lazily loaded: the blob stream is decompressed here (async
 * zlib, or the zstd tool) and applied to a directory, in overlay lower-layer form, by a worker thread
 * (./unpack-worker.ts: Go-compatible tar walk, whiteouts, names that never escape the root). The
 * caller must only use the result after the blob's digest has been verified (fetchBlob does that at
 * the end of the stream and throws otherwise).
 */
import { spawn } from 'node:child_process';
import { extname } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { createGunzip } from 'node:zlib';
import { SociError } from '../errors.js';
import { pipeToWorker, startModuleWorker } from '../worker-pipe.js';

export type UnpackCompression = 'gzip' | 'uncompressed' | 'zstd';

export interface UnpackStats {
  entries: number;
  bytes: number;
  whiteouts: number;
  opaqueDirs: number;
}

/** Applies a layer blob stream to the empty directory `root`. */
export async function unpackLayer(blob: AsyncIterable<Buffer>, compression: UnpackCompression, root: string): Promise<UnpackStats> {
  const w = startModuleWorker(new URL(`./unpack-worker${extname(fileURLToPath(import.meta.url))}`, import.meta.url).href, { unpackRoot: root });
  return pipeToWorker<UnpackStats>(w, decompress(blob, compression));
}

async function* decompress(blob: AsyncIterable<Buffer>, c: UnpackCompression): AsyncIterable<Buffer> {
  if (c === 'uncompressed') {
    yield* blob;
    return;
  }
  if (c === 'gzip') {
    yield* Readable.from(blob).pipe(createGunzip()) as AsyncIterable<Buffer>;
    return;
  }
  // zstd: the Debian zstd tool, streamed (no npm dependency).
  const p = spawn('zstd', ['-dc'], { stdio: ['pipe', 'pipe', 'pipe'] });
  const exited = new Promise<number>((r) => p.on('close', (code) => r(code ?? 1)));
  p.on('error', () => undefined);
  const pump = (async () => {
    for await (const c2 of blob) if (!p.stdin.write(c2)) await new Promise((r) => p.stdin.once('drain', r));
    p.stdin.end();
  })();
  pump.catch(() => p.kill());
  yield* p.stdout as AsyncIterable<Buffer>;
  await pump;
  if ((await exited) !== 0) throw new SociError('ERR_IO', 'zstd -d failed on the layer');
}

