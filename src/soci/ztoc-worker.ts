/**
 * zTOC building on a worker thread: the inflate + tar walk of a layer is CPU-bound, so on the main
 * thread it would compete with the download (registry convert) and leave the second core idle. The
 * main thread streams the layer's chunks here (copied, then transferred) with flow control, and
 * gets back the marshalled zTOC plus the little the index needs (xattr flag, prefetch hits); the
 * TOC model never crosses back. `SOCI_INDEX_WORKERS=0` builds in-process instead.
 */
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import type { Compression } from '../compression/types.js';
import { SociError, type ErrorCode } from '../errors.js';
import { buildZtoc, marshalZtoc } from '../ztoc/index.js';
import type { Ztoc } from '../ztoc/types.js';
import { prefetchHits, type SpanRange } from './prefetch.js';

export interface ZtocBuild {
  bytes: Buffer;
  compressedArchiveSize: number;
  needsXattrs: boolean;
  hits: Map<string, SpanRange>;
}

interface Job {
  compression: Compression;
  spanSize: number;
  prefetchFiles: string[];
}

/** xattrs can be disabled only when no entry has SCHILY.xattr.* records and no dir is opaque. */
export function needsXattrs(z: Ztoc): boolean {
  for (const e of z.toc) {
    if (e.name.toString('latin1').endsWith('.wh..wh..opq')) return true;
    for (const p of e.pax) if (p.key.toString('latin1').startsWith('SCHILY.xattr.')) return true;
  }
  return false;
}

export function summarize(z: Ztoc, prefetchFiles: string[]): Omit<ZtocBuild, 'bytes'> {
  return { compressedArchiveSize: z.compressedArchiveSize, needsXattrs: needsXattrs(z), hits: prefetchHits(z, prefetchFiles) };
}

/**
 * Chunks travel in a fixed pool of buffers that ping-pong between the threads (packed by the main
 * thread, handed back by the worker once consumed): memory stays at POOL × BUF_SIZE per layer and no
 * garbage is made per chunk (transferring fresh buffers let external memory pile up to 500+ MB).
 */
const BUF_SIZE = 1 << 20;
const POOL = 8;

/**
 * Runs this module on a worker. From source (tests, `node --import tsx`) the worker does not inherit
 * the TypeScript loader, so it starts from a small bootstrap that registers tsx first.
 */
function startWorker(job: Job): Worker {
  // A small young generation: the TOC is long-lived data, and each MB here is paid per layer in flight.
  const opts = { workerData: job, resourceLimits: { maxYoungGenerationSizeMb: 4 } };
  if (!import.meta.url.endsWith('.ts')) return new Worker(new URL(import.meta.url), opts);
  const api = import.meta.resolve('tsx/esm/api');
  const boot = `import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(import.meta.url)}); });`;
  return new Worker(boot, { ...opts, eval: true });
}

/** `SOCI_INDEX_WORKERS=0` never uses worker threads, `=1` always does (tests compare both). */
export function workersEnabled(): boolean {
  return process.env.SOCI_INDEX_WORKERS !== '0';
}

type FromWorker = {
  recycle?: ArrayBuffer;
  done?: { bytes: Uint8Array; compressedArchiveSize: number; needsXattrs: boolean; hits: Array<[string, SpanRange]> };
  error?: { code: ErrorCode; message: string };
};

/** Builds a zTOC from `source`: on a worker thread when asked to (and not disabled), else in-process. */
export async function buildZtocBytes(source: AsyncIterable<Buffer>, job: Job, onWorker = true): Promise<ZtocBuild> {
  if ((!onWorker && process.env.SOCI_INDEX_WORKERS !== '1') || !workersEnabled()) {
    const z = await buildZtoc(source, { compression: job.compression, spanSize: job.spanSize });
    return { bytes: marshalZtoc(z), ...summarize(z, job.prefetchFiles) };
  }
  const w = startWorker(job);
  const free: ArrayBuffer[] = Array.from({ length: POOL }, () => new ArrayBuffer(BUF_SIZE));
  let wake: (() => void) | null = null;
  let failure: unknown;
  const result = new Promise<ZtocBuild>((resolve, reject) => {
    w.on('message', (m: FromWorker) => {
      if (m.recycle) {
        free.push(m.recycle);
        wake?.();
      } else if (m.done) {
        const d = m.done;
        resolve({ bytes: Buffer.from(d.bytes.buffer, d.bytes.byteOffset, d.bytes.byteLength), compressedArchiveSize: d.compressedArchiveSize, needsXattrs: d.needsXattrs, hits: new Map(d.hits) });
      } else if (m.error) {
        reject(new SociError(m.error.code, m.error.message));
      }
    });
    w.on('error', reject);
    w.on('exit', (code) => reject(new SociError('ERR_INTERNAL', `zTOC worker exited with code ${code}`)));
  });
  result.catch((e) => {
    failure = e;
    wake?.();
  });
  let cur: ArrayBuffer | null = null;
  let view: Uint8Array | null = null;
  let fill = 0;
  const flush = () => {
    if (!cur || fill === 0) return;
    w.postMessage({ buf: cur, len: fill }, [cur]);
    cur = null;
    view = null;
    fill = 0;
  };
  try {
    for await (const chunk of source) {
      let off = 0;
      while (off < chunk.length && failure === undefined) {
        if (!cur) {
          while (free.length === 0 && failure === undefined) await new Promise<void>((r) => (wake = r));
          if (failure !== undefined) break;
          cur = free.pop()!;
          view = new Uint8Array(cur);
        }
        const n = Math.min(chunk.length - off, BUF_SIZE - fill);
        view!.set(chunk.subarray(off, off + n), fill);
        fill += n;
        off += n;
        if (fill === BUF_SIZE) flush();
      }
      if (failure !== undefined) break;
    }
    if (failure === undefined) {
      flush();
      w.postMessage({ end: true });
    }
    return await result;
  } finally {
    void w.terminate();
  }
}

// ---- the worker side ----
if (!isMainThread && parentPort && (workerData as Job | undefined)?.spanSize !== undefined) {
  const job = workerData as Job;
  const port = parentPort;
  const chunks: Array<{ buf: ArrayBuffer; len: number }> = [];
  let notify: (() => void) | null = null;
  let ended = false;
  port.on('message', (m: { buf?: ArrayBuffer; len?: number; end?: boolean }) => {
    if (m.buf) chunks.push({ buf: m.buf, len: m.len! });
    if (m.end) ended = true;
    notify?.();
  });
  async function* input(): AsyncIterable<Buffer> {
    for (;;) {
      const c = chunks.shift();
      if (c) {
        yield Buffer.from(c.buf, 0, c.len);
        // Resumed: the indexer has consumed the chunk (write() is synchronous), so hand it back.
        port.postMessage({ recycle: c.buf }, [c.buf]);
        continue;
      }
      if (ended) return;
      await new Promise<void>((r) => (notify = r));
      notify = null;
    }
  }
  buildZtoc(input(), { compression: job.compression, spanSize: job.spanSize }).then(
    (z) => {
      const bytes = marshalZtoc(z);
      const s = summarize(z, job.prefetchFiles);
      const out = new Uint8Array(bytes);
      port.postMessage({ done: { bytes: out, compressedArchiveSize: s.compressedArchiveSize, needsXattrs: s.needsXattrs, hits: [...s.hits] } }, [out.buffer]);
    },
    (e: unknown) => {
      const code: ErrorCode = e instanceof SociError ? e.code : 'ERR_INTERNAL';
      port.postMessage({ error: { code, message: e instanceof Error ? e.message : String(e) } });
    },
  );
}
