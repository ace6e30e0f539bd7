/**
 * mountLayer: one lazily loaded layer mounted over FUSE: zTOC → tree + span manager → LayerFs →
 * FuseServer on the mountpoint; registers with the background fetcher and starts fetching the
 * prefetch spans once mounted, without waiting for them: containerd prepares the next layer
 * meanwhile, and a reader of a span being prefetched waits for that fetch instead of asking again. Used by `soci mount` and by the snapshotter. The FUSE mount is always
 * nosuid,nodev (src/fuse/mounts.ts); what the layer's users see is up to the mount stacked on it.
 */
import { replayPrefetch } from './prefetch-replay.js';
import { ANN } from '../oci/media-types.js';
import type { Descriptor } from '../oci/types.js';
import type { BlobSource } from '../oci/blob-source.js';
import { FuseServer, type FuseServerOptions } from '../fuse/index.js';
import { spanTable, type SpanRange, type Ztoc } from '../ztoc/index.js';
import { SociError } from '../errors.js';
import type { Semaphore } from '../concurrency.js';
import type { BackgroundFetcher } from './background-fetcher.js';
import { LayerFs } from './layer-fs.js';
import type { LayerFailure } from './failure-log.js';
import type { SpanCache } from './span-cache.js';
import { DEFAULT_READ_DEADLINE_MS, SpanManager, type SpanManagerStats } from './span-manager.js';
import { LayerTree } from './tree.js';
import type { Logger } from '../logger.js';

export interface LayerMountOptions {
  fetchTimeoutMs?: number;
  retries?: number;
  verifyRetries?: number;
  readTimeoutMs?: number;
  /** FUSE request timeout (default: readTimeoutMs + 5 s, so the span manager answers first) */
  requestTimeoutMs?: number;
  readaheadKb?: number;
  /** largest span readahead window for sequential readers (SpanManager default 8; 0 = off) */
  readaheadMaxSpans?: number;
  /** registered after mount; unregistered on unmount */
  backgroundFetcher?: BackgroundFetcher;
  /** spans fetched right after the mount (prefetch artifact); failures are logged and ignored */
  prefetch?: SpanRange[];
  /** the prefetch of each layer takes a turn here (a bound across layers) */
  prefetchGate?: Semaphore;
  opaqueXattr?: 'trusted.overlay.opaque' | 'user.overlay.opaque';
  fuse?: Partial<FuseServerOptions>;
  logger?: Logger;
  /** every span verification failure, registry error, missed deadline, zTOC lie and failed read */
  onFailure?: (f: LayerFailure) => void;
  /** every read of a file's data: path and byte range (prefetch recording) */
  onRead?: (path: string, offset: number, length: number) => void;
}

export interface MountLayerParams {
  ztoc: Ztoc;
  /** the zTOC descriptor from the index (its disable-xattrs annotation is honoured) */
  ztocDesc?: Descriptor;
  layer: Descriptor;
  blob: BlobSource;
  mountpoint: string;
  cache: SpanCache;
  options?: LayerMountOptions;
  /**
   * Serve a connection a previous process mounted here instead of mounting (FuseServer.resume):
   * its /dev/fuse fd and what INIT negotiated. The tree is built from the same zTOC, so node ids
   * are the ones the kernel already knows. `deferRecovery`: the previous process still serves, and
   * the caller recovers its lost requests (server.recoverLost) once it has exited.
   */
  resume?: { fd: number; kernel: FuseServer['kernel']; deferRecovery?: boolean };
  /**
   * The layer's name in the span cache, stable across restarts (e.g. digest + mountpoint): spans an
   * earlier process cached under it are used, not fetched again. Default: a name of this mount only.
   */
  cacheKey?: string;
}

export interface LayerMountStats extends SpanManagerStats {
  digest: string;
  mountpoint: string;
  fuseRequests: number;
  fuseErrors: number;
}

export interface LayerMount {
  readonly fs: LayerFs;
  readonly server: FuseServer;
  readonly mountpoint: string;
  /** settles when the prefetch spans are in the cache (or failed: logged); at once without a prefetch */
  readonly prefetched: Promise<void>;
  /** spans an earlier process had cached under the same cacheKey, used instead of fetched again */
  readonly adoptedSpans: number;
  stats(): LayerMountStats;
  /** Unmounts (lazily when busy) and drops the layer's cached spans. Idempotent. */
  unmount(): Promise<void>;
}

let mountSeq = 0;

/** Builds the LayerFs of a layer without mounting it (tests, benchmarks, other front ends). */
export function createLayerFs(p: Omit<MountLayerParams, 'mountpoint'>): LayerFs {
  const o = p.options ?? {};
  if (p.blob.size < p.ztoc.compressedArchiveSize) {
    throw new SociError('ERR_INVALID_ZTOC', `zTOC of ${p.layer.digest} covers ${p.ztoc.compressedArchiveSize} bytes but the layer has ${p.blob.size}`);
  }
  const onFailure = o.onFailure;
  const report = onFailure ? { onFailure: (r: Omit<LayerFailure, 'layer'>) => onFailure({ ...r, layer: p.layer.digest }) } : {};
  const spans = new SpanManager({
    ...report,
    // Unique per mount: two mounts of one layer must not drop each other's cached spans.
    layerKey: p.cacheKey ?? `${p.layer.digest}-${++mountSeq}`,
    table: spanTable(p.ztoc),
    digests: p.ztoc.compression.spanDigests,
    blob: p.blob,
    cache: p.cache,
    ...(o.fetchTimeoutMs !== undefined ? { fetchTimeoutMs: o.fetchTimeoutMs } : {}),
    ...(o.retries !== undefined ? { retries: o.retries } : {}),
    ...(o.verifyRetries !== undefined ? { verifyRetries: o.verifyRetries } : {}),
    ...(o.readTimeoutMs !== undefined ? { readTimeoutMs: o.readTimeoutMs } : {}),
    ...(o.readaheadMaxSpans !== undefined ? { readaheadMaxSpans: o.readaheadMaxSpans } : {}),
  });
  const disableXattrs = /^(1|t|T|true|TRUE|True)$/.test(p.ztocDesc?.annotations?.[ANN.disableXattrs] ?? '');
  return new LayerFs(LayerTree.fromZtoc(p.ztoc), spans, {
    digest: p.layer.digest,
    disableXattrs,
    toc: { entries: p.ztoc.toc, uncompressedArchiveSize: p.ztoc.uncompressedArchiveSize },
    ...(o.opaqueXattr ? { opaqueXattr: o.opaqueXattr } : {}),
    ...(o.onRead ? { onRead: o.onRead } : {}),
    ...report,
  });
}

export async function mountLayer(p: MountLayerParams): Promise<LayerMount> {
  const o = p.options ?? {};
  const fs = createLayerFs(p);
  const adoptedSpans = p.cacheKey ? await p.cache.adopt(p.cacheKey) : 0;
  const readTimeout = o.readTimeoutMs ?? DEFAULT_READ_DEADLINE_MS;
  const fuseOpts = {
    mountpoint: p.mountpoint,
    subtype: 'soci',
    fsname: 'soci',
    // tar names are raw bytes; the layer fs keys them as latin1 strings
    names: 'latin1' as const,
    requestTimeoutMs: o.requestTimeoutMs ?? readTimeout + 5000,
    ...(o.readaheadKb ? { readaheadKb: o.readaheadKb } : {}),
    ...(o.logger ? { logger: o.logger } : {}),
    ...o.fuse,
  };
  const server = p.resume
    ? await FuseServer.resume(p.resume.fd, fs, fuseOpts, p.resume.kernel, { deferRecovery: !!p.resume.deferRecovery })
    : await FuseServer.mount(fs, fuseOpts);
  o.backgroundFetcher?.register(fs.spans);
  const prefetched = startPrefetch(fs, p.layer.digest, o);
  let done: Promise<void> | null = null;
  const cleanup = async () => {
    o.backgroundFetcher?.unregister(fs.spans);
    fs.spans.close();
    await fs.spans.settled(); // a cache write landing after the drop would leak its span file
    await p.cache.dropLayer(fs.spans.layerKey);
  };
  // The connection can also end from outside (umount by hand, abort): release the layer then too.
  void server.closed.then(() => {
    done ??= cleanup();
  });
  return {
    fs,
    server,
    mountpoint: p.mountpoint,
    prefetched,
    adoptedSpans,
    stats: () => ({
      ...fs.spans.stats(),
      digest: p.layer.digest,
      mountpoint: p.mountpoint,
      fuseRequests: server.stats.requests,
      fuseErrors: server.stats.errors,
    }),
    unmount: async () => {
      await server.unmount({ lazy: 'fallback' }).catch((e: Error) => o.logger?.warn({ mountpoint: p.mountpoint, error: e.message }, 'unmount failed'));
      done ??= cleanup();
      await done;
    },
  };
}

/** The prefetch spans, replayed in record order (prefetch-replay.ts), within the gate's bound across layers. */
function startPrefetch(fs: LayerFs, layer: string, o: LayerMountOptions): Promise<void> {
  const prefetch = o.prefetch;
  if (!prefetch?.length) return Promise.resolve();
  const replay = () =>
    replayPrefetch(fs.spans, prefetch, { onError: (e) => o.logger?.warn({ layer, error: e.message }, 'prefetch failed, reads fetch on demand') });
  return (o.prefetchGate ? o.prefetchGate.run(replay) : replay()).catch(() => undefined);
}
