/**
 * The SOCI LayerMounter: for a Prepare carrying the CRI labels,
 * find the image's SOCI index once per manifest digest (cached for the process, like AWS's
 * sociContext), and mount the layer's zTOC lazily over FUSE. Layers without a zTOC → ERR_NO_ZTOC
 * (local path); images without a usable index → ERR_NO_INDEX (deferred to containerd).
 */
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
} from '../fs/index.js';
import { cleanupStaleMounts } from '../fuse/index.js';
import { umount, writeFileAtomic } from '../host/index.js';
import { PrefetchRecorder, encodeRecord } from '../image/prefetch-record.js';
import { mkdir } from 'node:fs/promises';
import { isLocalhost, parseReference } from '../oci/reference.js';
import { chainCredentials, defaultCredentials, RegistryHosts, withRequestHeaders, type RegistryClient } from '../registry/index.js';
import type { BlobSource } from '../oci/blob-source.js';
import type { CredentialProvider } from '../registry/types.js';
import {
  fetchIndexArtifacts,
  findSociIndex,
  layerZtocMap,
  type ArtifactReader,
  type FindSociIndexOptions,
  type FoundSociIndex,
  type SociArtifacts,
} from '../image/discovery.js';
import { Semaphore, withDeadline } from '../concurrency.js';
import { VERSION } from '../version.js';
import type { Config } from './config.js';
import type { LayerMounter, MountContext } from './layer-mounter.js';
import { customHeadersFromLabels } from './custom-headers.js';
import { LABELS } from './labels.js';
import { emitQueueSize, ImageOperationCounter } from './image-metrics.js';
import { daemonRegistryOptions } from './registry-config.js';
import { countFuseFailure, countLayerFailure, operationDurationMs, operationDurationUs, rangeIgnoredCount, setLayerStatsProvider } from './metrics.js';

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

export interface SociMounterOptions {
  config: Config;
  root: string;
  logger: Logger;
  /** bytes of uncompressed spans kept on disk for all layers together */
  cacheMaxBytes?: number;
  /** consulted after Docker config (AWS's order): the CRI keychain */
  extraCredentials?: CredentialProvider;
}

interface Context {
  index: FoundSociIndex;
  /** the zTOCs and prefetch artifacts, still arriving while non-indexed layers unpack */
  artifacts: Promise<Artifacts>;
  repo: string;
  /** FUSE operations of the image, emitted fuse_metrics_emit_wait_duration_sec after it was resolved */
  ops: ImageOperationCounter;
  /** which files the image's start reads, when recording is on for it */
  recorder?: PrefetchRecorder;
}

interface Artifacts {
  artifacts: SociArtifacts;
  /** the host that served them, which then serves the layers' spans */
  client: RegistryClient;
}

export class SociLayerMounter implements LayerMounter {
  private readonly hosts: RegistryHosts;
  private readonly contexts = new Map<string, Promise<Context>>();
  /** per mountpoint: the layer, its blob (probed by check), and when a probe (or the mount) last succeeded */
  private readonly mounts = new Map<string, { layer: LayerMount; blob: BlobSource; lastOk: number }>();
  private readonly sizes = new Map<string, number>();
  readonly cache: SpanCache;
  readonly fetcher: BackgroundFetcher | undefined;

  private readonly credentials: CredentialProvider;
  private readonly failures: FailureLog;
  private readonly logger: Logger;
  private readonly counters = new Set<ImageOperationCounter>();
  private readonly stopQueueMetric: () => void;
  /** AWS's max_concurrency: layers whose zTOCs download at once, across images (0 = no bound) */
  private readonly resolveGate: Semaphore;
  /** AWS's [prefetch] max_concurrency: layers prefetching at once (0 = no bound) */
  private readonly prefetchGate: Semaphore;

  constructor(private readonly o: SociMounterOptions) {
    this.credentials = o.extraCredentials ? chainCredentials(defaultCredentials(), o.extraCredentials) : defaultCredentials();
    this.resolveGate = new Semaphore(o.config.max_concurrency);
    this.prefetchGate = new Semaphore(o.config.prefetch.max_concurrency);
    const net = { ...daemonRegistryOptions(o.config), onRangeIgnored: (i: { registry: string; repo: string; digest: string }) => this.rangeIgnored(i) };
    this.localHosts = new RegistryHosts({ plainHttp: true, credentials: this.credentials, userAgent: `soci-snapshotter/${VERSION}`, ...net });
    const insecure = Object.values(o.config.resolver.host).flatMap((h) => h.mirrors.filter((m) => m.insecure).map((m) => m.host));
    this.hosts = new RegistryHosts({
      // Like AWS's resolver: http for localhost and for mirrors marked insecure.
      plainHttp: [...insecure],
      credentials: this.credentials,
      userAgent: `soci-snapshotter/${VERSION}`,
      ...net,
    });
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

  private readonly rangeIgnoredBy = new Set<string>();

  /** A registry answered a Range read with the whole blob: counted always, logged once per registry. */
  private rangeIgnored(i: { registry: string; repo: string; digest: string }): void {
    rangeIgnoredCount.inc({ registry: i.registry });
    if (this.rangeIgnoredBy.has(i.registry)) return;
    this.rangeIgnoredBy.add(i.registry);
    this.logger.warn(
      { registry: i.registry, repo: i.repo, digest: i.digest },
      'registry ignores Range requests: every span read downloads the blob up to the span, lazy loading saves nothing there',
    );
  }

  /** A prefetch record of an image's start, written to <root>/prefetch-records/<manifest hex>.json when its window closes. */
  private recorder(image: string, manifest: string): PrefetchRecorder {
    const pr = this.o.config.prefetch_record;
    const dir = join(this.o.root, 'prefetch-records');
    const file = join(dir, `${manifest.replace(/^sha256:/, '')}.json`);
    return new PrefetchRecorder({
      image,
      manifest,
      quietMs: pr.quiet_period_sec * 1000,
      maxMs: pr.max_duration_sec * 1000,
      onDone: (r) => {
        mkdir(dir, { recursive: true, mode: 0o700 })
          .then(() => writeFileAtomic(file, encodeRecord(r), 0o600))
          .then(
            () => this.logger.info({ image, manifest, file, files: r.files.length }, 'prefetch record written'),
            (e: Error) => this.logger.warn({ image, file, error: e.message }, 'cannot write the prefetch record'),
          );
      },
    });
  }

  /** The registry client for a host (shared with the local unpacker). */
  clientFor(host: string): RegistryClient {
    return this.client(host);
  }

  /** localhost registries are spoken to over http, like AWS's resolver */
  private readonly localHosts: RegistryHosts;

  private client(host: string): RegistryClient {
    return isLocalhost(host) ? this.localHosts.get(host) : this.hosts.get(host);
  }

  /**
   * The index of an image, found once per manifest digest (mirrors first, then the registry). Its
   * zTOCs are fetched from then on, concurrently and in the background: containerd prepares the
   * layers one by one, bottom first, and the bottom layers are often too small to be indexed, so
   * their download and unpack overlap the zTOC downloads instead of waiting for them.
   */
  private context(labels: Record<string, string>): Promise<Context> {
    const manifestDigest = labels[LABELS.manifestDigest]!;
    let p = this.contexts.get(manifestDigest);
    if (p) {
      // most recently used last: the bound below drops the image used longest ago
      this.contexts.delete(manifestDigest);
      this.contexts.set(manifestDigest, p);
    } else {
      p = (async () => {
        const ref = parseReference(labels[LABELS.imageRef]!);
        const mirrors = this.o.config.resolver.host[ref.registry]?.mirrors.map((m) => m.host) ?? [];
        const explicit = labels[LABELS.indexDigest];
        const pm = this.o.config.pull_modes;
        const store = await this.containerdArtifacts();
        const opts: FindSociIndexOptions = {
          ...(explicit ? { explicitDigest: explicit } : {}),
          ...(store ? { store } : {}),
          v1: pm.soci_v1.enable,
          v2: pm.soci_v2.enable,
          gate: this.resolveGate,
        };
        const hosts = [...mirrors, ref.registry];
        let last: unknown;
        for (const [i, host] of hosts.entries()) {
          const client = this.client(host);
          try {
            const index = await findSociIndex(client, ref.repository, manifestDigest, opts);
            this.logger.info({ digest: index.desc.digest, host, version: index.version }, 'fetching SOCI artifacts using index descriptor');
            const artifacts = this.artifacts(hosts.slice(i), ref.repository, index, opts);
            artifacts.catch(() => undefined); // observed by mount(); a layer that never asks must not crash the daemon
            const ops: ImageOperationCounter = new ImageOperationCounter(
              manifestDigest,
              this.o.config.fuse_metrics_emit_wait_duration_sec * 1000,
              this.logger,
              () => this.counters.delete(ops),
            );
            this.counters.add(ops);
            const record = this.o.config.prefetch_record.enable || labels[LABELS.prefetchRecord] === 'true';
            return { index, artifacts, repo: ref.repository, ops, ...(record ? { recorder: this.recorder(labels[LABELS.imageRef]!, manifestDigest) } : {}) };
          } catch (e) {
            last = e;
            if (e instanceof SociError && e.code === 'ERR_NO_INDEX') break; // a definite answer, not a host problem
          }
        }
        throw last instanceof SociError && last.code === 'ERR_NO_INDEX'
          ? last
          : new SociError('ERR_NO_INDEX', `no valid SOCI index found for ${manifestDigest}: ${(last as Error)?.message ?? 'unknown error'}`);
      })();
      this.contexts.set(manifestDigest, p);
      // AWS's resolve_result_entry (30 when 0): resolved images kept for later layers of the same image
      const limit = this.o.config.resolve_result_entry > 0 ? this.o.config.resolve_result_entry : 30;
      while (this.contexts.size > limit) this.contexts.delete(this.contexts.keys().next().value!);
    }
    return p;
  }

  private containerd: Promise<{ reader: ArtifactReader; close: () => void } | undefined> | undefined;

  /**
   * With AWS's [content_store] type = "containerd": containerd's content store, read for SOCI indexes
   * and zTOCs before the registry (those `soci convert` or `soci create` put there on this node).
   * Read only: blobs written outside a lease would be containerd's garbage. When containerd cannot be
   * reached, the registry serves (one warning), and the next image tries again.
   */
  private containerdArtifacts(): Promise<ArtifactReader | undefined> {
    const cs = this.o.config.content_store;
    if (cs.type !== 'containerd') return Promise.resolve(undefined);
    this.containerd ??= (async () => {
      const { Containerd, containerdBlobs } = await import('../containerd/index.js');
      try {
        const c = await Containerd.connect({ address: cs.containerd_address, namespace: cs.namespace });
        const blobs = containerdBlobs(c.content);
        return { reader: { has: blobs.has, get: blobs.get }, close: () => c.close() };
      } catch (e) {
        this.logger.warn(
          { address: cs.containerd_address, error: (e as Error).message },
          "cannot read SOCI artifacts from containerd's content store; fetching them from the registry",
        );
        this.containerd = undefined;
        return undefined;
      }
    })();
    return this.containerd.then((c) => c?.reader);
  }

  /** The index's zTOCs and prefetch artifacts from the first host that serves them all. */
  private async artifacts(hosts: string[], repo: string, index: FoundSociIndex, opts: FindSociIndexOptions): Promise<Artifacts> {
    let first: unknown;
    for (const host of hosts) {
      const client = this.client(host);
      try {
        return { artifacts: await fetchIndexArtifacts(client, repo, index, opts), client };
      } catch (e) {
        first ??= e;
      }
    }
    throw first;
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
      const c = await withRequestHeaders(headers, () => this.context(labels));
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
      const m = await mountLayer({
        ztoc: z.ztoc,
        ztocDesc: z.desc,
        layer: { mediaType: '', digest: layerDigest, size },
        blob,
        mountpoint,
        cache: this.cache,
        options: {
          readTimeoutMs: this.o.config.blob.read_deadline_sec * 1000,
          fetchTimeoutMs: this.o.config.blob.fetching_timeout_sec * 1000,
          // AWS's: bytes that fail a span digest are fetched again this many times (0 by default)
          verifyRetries: Math.max(0, this.o.config.blob.max_span_verification_retries),
          // 1 MiB kernel readahead: +65 % sequential throughput, −35 % CPU/GB
          readaheadKb: 1024,
          readaheadMaxSpans: Math.max(0, this.o.config.blob.readahead_max_spans),
          ...(this.fetcher ? { backgroundFetcher: this.fetcher } : {}),
          ...(this.o.config.prefetch.enable && artifacts.prefetch.get(layerDigest)
            ? { prefetch: artifacts.prefetch.get(layerDigest)!, prefetchGate: this.prefetchGate }
            : {}),
          logger: this.logger,
          onFailure: (f) => this.failures.report(f),
          ...(c.recorder ? { onFirstRead: c.recorder.layer(layerDigest) } : {}),
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
      this.logger.info({ layer: layerDigest, mountpoint, namespace: ctx.namespace, key: ctx.key }, 'layer mounted');
    })();
    await withDeadline(work, timeoutMs, () => `mounting layer ${layerDigest} took more than ${this.o.config.mount_timeout_sec}s`);
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
  }

  /** Per-layer fetch statistics of what is mounted now (metrics, tests, `--explain`-style answers). */
  stats() {
    return [...this.mounts.values()].map((m) => m.layer.stats());
  }

  async close(): Promise<void> {
    for (const mp of [...this.mounts.keys()]) await this.unmount(mp);
    this.fetcher?.stop();
    this.stopQueueMetric();
    for (const c of this.counters) c.stop();
    (await this.containerd)?.close();
    await this.hosts.close();
    await this.localHosts.close();
  }
}

/** At start: lazily unmount FUSE mounts of ours left behind by a previous (killed) daemon. */
export async function cleanupStaleSociMounts(snapshotsDir: string): Promise<void> {
  await cleanupStaleMounts('soci', snapshotsDir);
}
