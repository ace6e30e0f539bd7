/**
 * Local unpack of a layer that is not lazily loaded: the blob stream is decompressed here (async
 * zlib, or the zstd tool) and applied to a directory, in overlay lower-layer form, by a worker thread
 * (./unpack-worker.ts: Go-compatible tar walk, whiteouts, names that never escape the root). The
 * caller must only use the result after the blob's digest has been verified (fetchBlob does that at
 * the end of the stream and throws otherwise).
 *
 * Every stream here has an error path: a registry failure, a reset connection or corrupt data
 * rejects the unpack with a one-line SociError and never surfaces as an unhandled 'error' event.
 */
import { spawn } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { basename, extname } from 'node:path';
import type { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { createGunzip } from 'node:zlib';
import { SociError } from '../errors.js';
import { WorkerPool } from '../worker-pool.js';

export type UnpackCompression = 'gzip' | 'uncompressed' | 'zstd';

export interface UnpackStats {
  entries: number;
  bytes: number;
  whiteouts: number;
  opaqueDirs: number;
  /** the layer marks its top dir opaque (`.wh..wh..opq` at the root): the root's xattr to carry over */
  rootOpaque: boolean;
  /**
   * Directories the layer implies (a parent of an entry) but does not list, relative to the root,
   * parents first; `childCreated`: whether anything was created in it (else only an opaque marker
   * touched it). containerd gives such a dir the attributes of the same dir in a parent layer:
   * ./implied-dirs.ts does the same once the parents are known.
   */
  impliedDirs: ImpliedDir[];
}

export interface ImpliedDir {
  path: string;
  childCreated: boolean;
}

/** An external decompressor: an absolute path and its arguments; it reads stdin, writes stdout. */
export interface DecompressTool {
  path: string;
  args: string[];
}

/** zstd has no decoder in Node 20's zlib: the zstd tool (Debian's `zstd`) decodes it. */
const ZSTD_TOOL: DecompressTool = { path: 'zstd', args: ['-dcq'] };

export interface UnpackOptions {
  /** a decompressor process (unpigz, igzip, …) instead of node:zlib for gzip or the zstd tool */
  tool?: DecompressTool;
}

/** What the unpack worker is sent per layer (./unpack-worker.ts). */
export interface UnpackJob {
  unpackRoot: string;
  compression?: UnpackCompression;
  tool?: DecompressTool;
}

export interface UnpackResult extends UnpackStats {
  /** sha256 of the uncompressed tar: what the image config's diff_id must be */
  diffId: string;
}

/**
 * Applies a layer blob stream to the empty directory `root`. The compressed bytes go to the
 * worker, which decompresses, hashes and applies them: the calling thread handles a third of the
 * bytes (a layer is typically 3× larger uncompressed) and none of the CPU-bound work. The worker
 * reads `blob` to its end (a gzip trailer, tar padding), so a source that checks its own digest
 * at its end has checked it when this resolves.
 */
export async function unpackLayer(blob: AsyncIterable<Buffer>, compression: UnpackCompression, root: string, opts: UnpackOptions = {}): Promise<UnpackResult> {
  pool ??= new WorkerPool(new URL(`./unpack-worker${extname(fileURLToPath(import.meta.url))}`, import.meta.url).href, {
    threads: Math.min(availableParallelism(), MAX_THREADS),
  });
  const job: UnpackJob = { unpackRoot: root, compression, ...(opts.tool ? { tool: opts.tool } : {}) };
  return pool.run<UnpackResult>(job, blob);
}

/**
 * The threads that apply layers: as many as cores (up to MAX_THREADS), however many layers unpack
 * at once. Each is a V8 heap; the work is CPU- and syscall-bound, so more threads than cores would
 * add memory, not speed. A small young generation (4 MB): the decoder's output is collected often.
 */
let pool: WorkerPool | undefined;
const MAX_THREADS = 4;

/**
 * The uncompressed bytes of a layer blob, through `tool` when one is given (unpigz, igzip, …),
 * else node:zlib for gzip and the zstd tool for zstd; any failure of the source or the decoder is
 * thrown by the iteration.
 */
export function decompress(blob: AsyncIterable<Buffer>, c: UnpackCompression, tool?: DecompressTool): AsyncIterable<Buffer> {
  if (c === 'uncompressed') return blob;
  if (tool) return toolDecompress(blob, tool, c);
  if (c === 'gzip') return gunzip(blob);
  return toolDecompress(blob, ZSTD_TOOL, c);
}

/** gunzip over node:zlib; a failure of the source ends the decoder with that failure. */
async function* gunzip(blob: AsyncIterable<Buffer>): AsyncIterable<Buffer> {
  const gz = createGunzip();
  feed(blob, gz).catch((e: unknown) => gz.destroy(e as Error)); // surfaces through the iteration below
  try {
    yield* gz as AsyncIterable<Buffer>;
  } catch (e) {
    throw asDecodeError(e, 'gzip');
  } finally {
    gz.destroy();
  }
}

/**
 * Writes each chunk of `blob` to `w` and waits until `w` is done with it before reading the next:
 * the source may reuse a buffer once it is asked for the next one (the unpack worker's input does),
 * so nothing is copied and nothing is read ahead.
 */
async function feed(blob: AsyncIterable<Buffer>, w: Writable): Promise<void> {
  for await (const chunk of blob) await new Promise<void>((res, rej) => w.write(chunk, (e) => (e ? rej(e) : res())));
  await new Promise<void>((res, rej) => {
    w.once('error', rej);
    w.end(res);
  });
}

/** A decompressor process, streamed: the layer on its stdin, the tar from its stdout, no shell. */
async function* toolDecompress(blob: AsyncIterable<Buffer>, tool: DecompressTool, what: 'gzip' | 'zstd'): AsyncIterable<Buffer> {
  const name = basename(tool.path);
  const p = spawn(tool.path, tool.args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let spawnError: Error | undefined;
  const exited = new Promise<number>((r) => {
    p.on('error', (e) => {
      spawnError = e;
      r(1);
    });
    p.on('close', (code) => r(code ?? 1));
  });
  let stderr = '';
  p.stderr.on('data', (d: Buffer) => {
    if (stderr.length < 4096) stderr += d.toString();
  });
  p.stderr.on('error', () => undefined);
  p.stdout.on('error', () => undefined);
  // The source → the tool's stdin; a failed source or a tool that exits early ends it (EPIPE is handled).
  p.stdin.on('error', () => undefined); // reported by the write that failed
  const pump = feed(blob, p.stdin);
  pump.catch(() => p.kill());
  try {
    for await (const chunk of p.stdout as AsyncIterable<Buffer>) yield chunk;
    try {
      await pump;
    } catch (e) {
      // The source's own failure says more than the tool's complaint about a truncated stream.
      if (e instanceof SociError || (e as NodeJS.ErrnoException).code !== 'EPIPE') throw asDecodeError(e, what);
    }
    const code = await exited;
    if (spawnError) throw new SociError('ERR_UNSUPPORTED', `cannot decompress a ${what} layer: ${name}: ${spawnError.message}`);
    if (code !== 0) throw new SociError('ERR_IO', `${name} failed on the ${what} layer${stderr.trim() ? `: ${stderr.trim().split('\n').pop()}` : ''}`);
  } finally {
    if (p.exitCode === null && p.signalCode === null) p.kill();
  }
}

/** A SociError passes through (registry, digest); a decoder error becomes a one-line ERR_BAD_GZIP. */
function asDecodeError(e: unknown, what: 'gzip' | 'zstd'): Error {
  if (e instanceof SociError) return e;
  const msg = e instanceof Error ? e.message : String(e);
  const code = (e as NodeJS.ErrnoException)?.code;
  if (what === 'gzip' && typeof code === 'string' && code.startsWith('Z_'))
    return new SociError('ERR_BAD_GZIP', `layer is not valid gzip: ${msg.split('\n')[0]}`, { cause: e });
  return new SociError('ERR_IO', `reading the layer failed: ${msg.split('\n')[0]}`, { cause: e });
}
