/**
 * zTOC building on a worker thread: the inflate + tar walk of a layer is CPU-bound, so on the main
 * thread it would compete with the download (registry convert) and leave the second core idle. The
 * main thread streams the layer's chunks here (copied, then transferred) with flow control, and
 * gets back the marshalled zTOC plus the little the index needs (xattr flag, prefetch hits); the
 * TOC model never crosses back. `SOCI_INDEX_WORKERS=0` builds in-process instead.
 */
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import type { Compression } from '../compression/types.js';
import { pipeToWorker, postError, startModuleWorker, workerInput } from '../worker-pipe.js';
import { buildZtoc, marshalZtoc } from '../ztoc/index.js';
import type { Ztoc } from '../ztoc/types.js';
import { prefetchHits, type PrefetchTarget } from './prefetch.js';
import type { SpanRange } from '../ztoc/index.js';

export interface ZtocBuild {
  bytes: Buffer;
  compressedArchiveSize: number;
  needsXattrs: boolean;
  hits: Map<string, SpanRange[]>;
}

interface Job {
  compression: Compression;
  spanSize: number;
  prefetchFiles: PrefetchTarget[];
}

/** xattrs can be disabled only when no entry has SCHILY.xattr.* records and no dir is opaque. */
export function needsXattrs(z: Ztoc): boolean {
  for (const e of z.toc) {
    if (e.name.toString('latin1').endsWith('.wh..wh..opq')) return true;
    for (const p of e.pax) if (p.key.toString('latin1').startsWith('SCHILY.xattr.')) return true;
  }
  return false;
}

export function summarize(z: Ztoc, prefetchFiles: readonly PrefetchTarget[]): Omit<ZtocBuild, 'bytes'> {
  return { compressedArchiveSize: z.compressedArchiveSize, needsXattrs: needsXattrs(z), hits: prefetchHits(z, prefetchFiles) };
}

/** `SOCI_INDEX_WORKERS=0` never uses worker threads, `=1` always does (tests compare both). */
export function workersEnabled(): boolean {
  return process.env.SOCI_INDEX_WORKERS !== '0';
}

interface WorkerDone {
  bytes: Uint8Array;
  compressedArchiveSize: number;
  needsXattrs: boolean;
  hits: Array<[string, SpanRange[]]>;
}

/** Builds a zTOC from `source`: on a worker thread when asked to (and not disabled), else in-process. */
export async function buildZtocBytes(source: AsyncIterable<Buffer>, job: Job, onWorker = true): Promise<ZtocBuild> {
  if ((!onWorker && process.env.SOCI_INDEX_WORKERS !== '1') || !workersEnabled()) {
    const z = await buildZtoc(source, { compression: job.compression, spanSize: job.spanSize });
    return { bytes: marshalZtoc(z), ...summarize(z, job.prefetchFiles) };
  }
  // A small young generation: the TOC is long-lived data, and each MB here is paid per layer in flight.
  const w = startModuleWorker(import.meta.url, job, 4);
  const d = await pipeToWorker<WorkerDone>(w, source);
  return {
    bytes: Buffer.from(d.bytes.buffer, d.bytes.byteOffset, d.bytes.byteLength),
    compressedArchiveSize: d.compressedArchiveSize,
    needsXattrs: d.needsXattrs,
    hits: new Map(d.hits),
  };
}

// ---- the worker side ----
if (!isMainThread && parentPort && (workerData as Job | undefined)?.spanSize !== undefined) {
  const job = workerData as Job;
  const port = parentPort;
  buildZtoc(workerInput(port), { compression: job.compression, spanSize: job.spanSize }).then(
    (z) => {
      const bytes = marshalZtoc(z);
      const s = summarize(z, job.prefetchFiles);
      const out = new Uint8Array(bytes);
      port.postMessage({ done: { bytes: out, compressedArchiveSize: s.compressedArchiveSize, needsXattrs: s.needsXattrs, hits: [...s.hits] } }, [out.buffer]);
    },
    (e: unknown) => postError(port, e),
  );
}
