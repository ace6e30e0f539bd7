/**
 * The SOCI LayerMounter: for a Prepare carrying the CRI labels, the image's SOCI index and
 * artifacts come from the ImageResolver (once per manifest digest), and the layer's zTOC is mounted
 * lazily over FUSE. Layers without a zTOC → ERR_NO_ZTOC (local path);
 * images without a usable index → ERR_NO_INDEX (deferred to containerd).
 */
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { SociError, escapeControls } from '../errors.js';
import type { Logger } from '../logger.js';
import {
  BackgroundFetcher,
  FAILURE_MESSAGES,
  type LayerTree,
  FailureLog,
  SpanCache,
  failureFields,
  mountLayer,
  type FailureKind,
  type LayerMount,
  type LayerMountOptions,
} from '../fs/index.js';
import type { SpanRange } from '../ztoc/index.js';
import { ConnectionKeeper, cleanupStaleMounts, type KeptConnection } from '../fuse/index.js';
import { umount } from '../host/index.js';
import { withRequestHeaders, type RegistryClient } from '../registry/index.js';
import type { BlobSource } from '../oci/blob-source.js';
import { layerZtocMap } from '../image/discovery.js';
import { Semaphore, withDeadline } from '../concurrency.js';
import type { LayerMounter, MountContext } from './layer-mounter.js';
import { customHeadersFromLabels } from './custom-headers.js';
import { ImageResolver, type Context, type ImageResolverOptions } from './image-resolver.js';
import { LABELS } from './labels.js';
import { emitQueueSize } from './image-metrics.js';
import { countFuseFailure, countLayerFailure, operationDurationMs, operationDurationUs, setLayerStatsProvider } from './metrics.js';

/** FUSE op → AWS's operation_type names where it has one. */
function fuseOpType(op: string): string {
  if (op === 'read') return 'synchronous_read';
  if (op === 'readdir' || op === 'readdirplus') return 'node_readdir';
  return `fuse_${op}`;
}

/** Bytes that cannot be trusted are errors; a slow or failing registry is a warning. */
const FAILURE_LEVEL: Record<FailureKind, 'warn' | 'error'> = {
  span_verification: 'error',
  toc_mismatch: 'error',
  registry: 'warn',
  read_deadline: 'warn',
  read: 'warn',
};

/** The layer's reads, each sent with the layer's custom headers (reads come from FUSE, outside the Prepare). */
function withHeaders(blob: BlobSource, headers: Record<string, string>): BlobSource {
  return Object.keys(headers).length
    ? { size: blob.size, read: (start, end, signal) => withRequestHeaders(headers, () => blob.read(start, end, signal)) }
    : blob;
}

/** A [fuse] timeout in seconds for the kernel; a negative one, as with AWS's, means "cache for good". */
function kernelTtl(sec: number): number {
  return sec < 0 ? 365 * 24 * 3600 : sec;
}

export interface SociMounterOptions extends ImageResolverOptions {
  /** bytes of uncompressed spans kept on disk for all layers together */
  cacheMaxBytes?: number;
  /** taking over from a daemon that still serves: recovery of lost requests waits for recoverLost() */
  handover?: boolean;
}

export class SociLayerMounter implements LayerMounter {
  /** each image's SOCI index and artifacts, and the registry clients */
  private readonly images: ImageResolver;
  /** per mountpoint: the layer, its blob (probed by check), and when a probe (or the mount) last succeeded */
  private readonly mounts = new Map<string, { layer: LayerMount; blob: BlobSource; lastOk: number }>();
  private readonly sizes = new Map<string, number>();
  readonly cache: SpanCache;
  readonly fetcher: BackgroundFetcher | undefined;

  private readonly failures: FailureLog;
  private readonly logger: Logger;
  private readonly stopQueueMetric: () => void;
  /** AWS's [prefetch] max_concurrency: layers prefetching at once (0 = no bound) */
  private readonly prefetchGate: Semaphore;
  /** keeps each FUSE connection open in a holder process, so a restart serves it again (null: unavailable) */
  private readonly keeper: ConnectionKeeper | null;
  /** connections a previous daemon kept, by mountpoint, until mount() takes them over */
  private readonly kept = new Map<string, KeptConnection>();
  /** mounts taken over in a handover, whose lost requests recoverLost() recovers */
  private readonly unrecovered = new Set<string>();

  constructor(private readonly o: SociMounterOptions) {
    this.prefetchGate = new Semaphore(o.config.prefetch.max_concurrency);
    const why = ConnectionKeeper.unavailable();
    this.keeper = why ? null : new ConnectionKeeper(join(o.root, 'soci', 'fuse-connections'));
    if (why) o.logger.warn({ reason: why }, 'FUSE mounts will not survive a restart of this daemon');
    this.images = new ImageResolver(o);
    this.cache = new SpanCache({ dir: join(o.root, 'soci', 'spancache'), ...(o.cacheMaxBytes ? { maxBytes: o.cacheMaxBytes } : {}) });
    setLayerStatsProvider(
      () => this.stats(),
      () => new Map([...this.sizes]),
    );
    this.logger = o.logger;
    this.failures = new FailureLog({
      write: (f, suppressed) => this.logger[FAILURE_LEVEL[f.kind]](failureFields(f, suppressed), FAILURE_MESSAGES[f.kind]),
      count: countLayerFailure,
    });
    const bg = o.config.background_fetch;
    this.fetcher = bg.disable
      ? undefined
      : new BackgroundFetcher({
          silencePeriodMs: bg.silence_period_msec,
          fetchPeriodMs: bg.fetch_period_msec,
          maxQueueSize: bg.max_queue_size,
          dropPolicy: bg.drop_policy === 'oldest' ? 'oldest' : 'newest',
          logger: o.logger,
        });
    const fetcher = this.fetcher;
    this.stopQueueMetric = fetcher ? emitQueueSize(() => fetcher.pending, bg.emit_metric_period_sec * 1000) : () => undefined;
  }

  /** How a layer of the image is served (all but the FUSE connection's own options). */
  private layerOptions(c: Context, layer: string, prefetch: SpanRange[] | undefined): LayerMountOptions {
    return {
      readTimeoutMs: this.o.config.blob.read_deadline_sec * 1000,
      fetchTimeoutMs: this.o.config.blob.fetching_timeout_sec * 1000,
      // AWS's: bytes that fail a span digest are fetched again this many times (0 by default)
      verifyRetries: Math.max(0, this.o.config.blob.max_span_verification_retries),
      // 1 MiB kernel readahead: +65 % sequential throughput, −35 % CPU/GB
      readaheadKb: 1024,
      readaheadMaxSpans: Math.max(0, this.o.config.blob.readahead_max_spans),
      ...(this.fetcher ? { backgroundFetcher: this.fetcher } : {}),
      ...(prefetch ? { prefetch, prefetchGate: this.prefetchGate } : {}),
      logger: this.logger,
      onFailure: (f) => this.failures.report(f),
      ...(c.recorder ? { onRead: c.recorder.layer(layer) } : {}),
    };
  }

  /** The registry client for a host (shared with the local unpacker). */
  clientFor(host: string): RegistryClient {
    return this.images.client(host);
  }

  resolve(labels: Record<string, string>): void {
    if (!labels[LABELS.imageRef] || !labels[LABELS.manifestDigest]) return;
    const { headers } = customHeadersFromLabels(labels, this.o.config.resolver.custom_headers);
    withRequestHeaders(headers, () => this.images.context(labels)).catch(() => undefined);
  }

  async mount(mountpoint: string, labels: Record<string, string>, ctx: MountContext): Promise<void> {
    for (const k of [LABELS.imageRef, LABELS.layerDigest, LABELS.manifestDigest]) {
      if (!labels[k]) throw new SociError('ERR_NO_INDEX', `label ${k} missing: cannot look up a SOCI index`);
    }
    const layerDigest = labels[LABELS.layerDigest]!;
    const timeoutMs = this.o.config.mount_timeout_sec * 1000;
    const t0 = performance.now();
    const { headers, dropped } = customHeadersFromLabels(labels, this.o.config.resolver.custom_headers);
    for (const d of dropped) this.logger.warn({ header: d.header, layer: layerDigest }, d.reason);
    const work = (async () => {
      const c = await withRequestHeaders(headers, () => this.images.context(labels));
      if (!layerZtocMap(c.index.manifest).has(layerDigest))
        throw new SociError('ERR_NO_ZTOC', `layer ${layerDigest} has no zTOC in index ${c.index.desc.digest}`);
      const { artifacts, client } = await c.artifacts;
      const z = artifacts.ztocs.get(layerDigest)!;
      const unusable = this.o.config.prefetch.enable ? artifacts.prefetchErrors.get(layerDigest) : undefined;
      if (unusable) this.logger.warn({ layer: layerDigest, error: unusable }, 'prefetch skipped, reads fetch on demand');
      const size = Number(labels[LABELS.size]) || z.ztoc.compressedArchiveSize;
      const trace = this.o.config.fuse.log_fuse_operations || this.o.config.debug;
      let layerTree: LayerTree | undefined;
      const blob = withHeaders(client.blobSource(c.repo, layerDigest, size), headers);
      const kept = this.kept.get(mountpoint);
      this.kept.delete(mountpoint);
      const resume = kept && this.keeper ? { fd: this.keeper.take(kept), kernel: kept.kernel, deferRecovery: !!this.o.handover } : undefined;
      const m = await mountLayer({
        ...(resume ? { resume } : {}),
        // Stable across restarts: a daemon that mounts this snapshot again finds its spans.
        cacheKey: `${layerDigest}-${createHash('sha256').update(mountpoint).digest('hex').slice(0, 16)}`,
        ztoc: z.ztoc,
        ztocDesc: z.desc,
        layer: { mediaType: '', digest: layerDigest, size },
        blob,
        mountpoint,
        cache: this.cache,
        options: {
          ...this.layerOptions(c, layerDigest, this.o.config.prefetch.enable ? artifacts.prefetch.get(layerDigest) : undefined),
          fuse: {
            // AWS's [fuse] timeouts (1 s by default): how long the kernel may cache names and attributes.
            entryTimeout: kernelTtl(this.o.config.fuse.entry_timeout),
            attrTimeout: kernelTtl(this.o.config.fuse.attr_timeout),
            negativeTimeout: kernelTtl(this.o.config.fuse.negative_timeout),
            onOp: (op, micros, errno, nodeid) => {
              operationDurationUs.observe({ operation_type: fuseOpType(op), layer: layerDigest }, micros);
              c.ops.count(op);
              if (errno) countFuseFailure(op, errno, layerDigest);
              // AWS's log_fuse_operations (and debug): one debug line per operation; it names paths of the image
              if (trace)
                this.logger.debug(
                  {
                    operation: op,
                    path: escapeControls(layerTree?.pathOf(nodeid) ?? `#${nodeid}`),
                    layer: layerDigest,
                    latency_us: Math.round(micros),
                    ...(errno ? { errno } : {}),
                  },
                  'FUSE operation',
                );
            },
          },
        },
      });
      this.sizes.set(layerDigest, size);
      operationDurationMs.observe({ operation_type: 'mount', layer: layerDigest }, performance.now() - t0);
      this.fetcher?.quiet(); // a new mount restarts the background fetcher's quiet period
      layerTree = m.fs.tree;
      this.mounts.set(mountpoint, { layer: m, blob, lastOk: Date.now() });
      // A connection that ends (unmounted by hand, aborted) needs no holder any more.
      void m.server.closed.then(() => this.keeper?.release(mountpoint));
      if (resume) {
        if (resume.deferRecovery) this.unrecovered.add(mountpoint);
        this.logger.info(
          {
            layer: layerDigest,
            mountpoint,
            ...(this.o.handover ? { recovery: 'after the previous daemon exits' } : { resent: m.server.resent, lostAnswered: m.server.lostAnswered }),
            cachedSpans: m.adoptedSpans,
          },
          'layer mount taken over from the previous daemon',
        );
      } else {
        if (this.keeper)
          await this.keeper
            .keep(m.server)
            .catch((e: unknown) => this.logger.warn({ mountpoint, error: String(e) }, 'FUSE connection not kept: it will not survive a restart'));
        this.logger.info({ layer: layerDigest, mountpoint, namespace: ctx.namespace, key: ctx.key }, 'layer mounted');
      }
    })();
    try {
      await withDeadline(work, timeoutMs, () => `mounting layer ${layerDigest} took more than ${this.o.config.mount_timeout_sec}s`);
    } catch (e) {
      // A kept connection nobody can serve would leave its readers waiting: end it.
      if (await this.keeper?.isKept(mountpoint)) {
        this.kept.delete(mountpoint);
        await this.keeper?.release(mountpoint);
        await umount(mountpoint, true).catch(() => undefined);
      }
      throw e;
    }
  }

  /**
   * AWS's availability check, asked for by the snapshotter before it hands out mounts: a layer that
   * is not wholly fetched yet must still be reachable. Its blob is probed with a 2-byte Range request
   * (AWS's bytes=0-1) when the last good probe is older than [blob] valid_interval, or always with
   * check_always; a failed probe is asked again next time.
   */
  async check(mountpoint: string): Promise<void> {
    const m = this.mounts.get(mountpoint);
    if (!m) throw new SociError('ERR_NOT_FOUND', `no layer is mounted at ${mountpoint}`);
    const st = m.layer.stats();
    if (st.fetchedSpans >= st.totalSpans) return;
    const interval = this.o.config.blob.check_always ? 0 : this.o.config.blob.valid_interval * 1000;
    const now = Date.now();
    if (now - m.lastOk < interval) return;
    try {
      await m.blob.read(0, Math.min(2, m.blob.size));
    } catch (e) {
      throw new SociError('ERR_NETWORK', `layer ${st.digest} cannot be fetched: ${(e as Error).message}`, { cause: e });
    }
    m.lastOk = now;
  }

  async unmount(mountpoint: string): Promise<void> {
    const m = this.mounts.get(mountpoint);
    this.mounts.delete(mountpoint);
    if (m) await m.layer.unmount();
    else await umount(mountpoint, true).catch(() => undefined);
    this.kept.delete(mountpoint);
    await this.keeper?.release(mountpoint);
  }

  /**
   * At start, before stale mounts are cleaned: the mountpoints whose FUSE connections a previous
   * daemon kept alive. They are left mounted; mount() serves each again, and releaseUnclaimed()
   * ends those no snapshot asked for.
   */
  async keptMounts(): Promise<string[]> {
    if (!this.keeper) return [];
    for (const k of await this.keeper.live()) this.kept.set(k.mountpoint, k);
    return [...this.kept.keys()];
  }

  /**
   * After the restore: kept connections no snapshot took over are released and unmounted, and
   * cached spans of layers nothing mounts any more are removed.
   */
  async releaseUnclaimed(): Promise<void> {
    for (const mp of [...this.kept.keys()]) {
      this.logger.info({ mountpoint: mp }, 'releasing a kept FUSE connection no snapshot uses');
      await this.unmount(mp);
    }
    await this.cache.prune();
  }

  async recoverLost(): Promise<void> {
    let resent = 0;
    let answered = 0;
    const taken = [...this.unrecovered];
    this.unrecovered.clear();
    for (const mountpoint of taken) {
      const m = this.mounts.get(mountpoint);
      if (!m) continue;
      try {
        await m.layer.server.recoverLost();
      } catch (e) {
        this.logger.warn({ mountpoint, error: String(e) }, 'cannot recover the requests the previous daemon left unanswered');
      }
      if (m.layer.server.resent) resent++;
      answered += m.layer.server.lostAnswered;
    }
    this.logger.info({ mounts: taken.length, resent, lostAnswered: answered }, 'requests the previous daemon left unanswered recovered');
  }

  /** Per-layer fetch statistics of what is mounted now (metrics, tests, `--explain`-style answers). */
  stats() {
    return [...this.mounts.values()].map((m) => m.layer.stats());
  }

  async close(): Promise<void> {
    for (const mp of [...this.mounts.keys()]) await this.unmount(mp);
    this.fetcher?.stop();
    this.stopQueueMetric();
    await this.images.close();
  }
}

/** At start: lazily unmount FUSE mounts of ours left behind by a previous (killed) daemon, except `keep`. */
export async function cleanupStaleSociMounts(snapshotsDir: string, keep: readonly string[] = []): Promise<void> {
  await cleanupStaleMounts('soci', snapshotsDir, undefined, keep);
}
