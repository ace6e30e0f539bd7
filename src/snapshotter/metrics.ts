/**
 * Prometheus metrics. One registry for the whole daemon: other modules import
 * `registry` (or the metric objects below) and register their own families on it.
 */
import { createServer, type Server } from 'node:http';
import { rm } from 'node:fs/promises';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { FailureKind, LayerFailure } from '../fs/index.js';
import { Errno } from '../fuse/types.js';

export const registry = new Registry();

/** soci_fs_operation_count{operation_type, layer}: counts (e.g. fuse_mount_failure_count). */
export const operationCount = new Counter({
  name: 'soci_fs_operation_count',
  help: 'The count of file system operations',
  labelNames: ['operation_type', 'layer'] as const,
  registers: [registry],
});

export const operationDurationMs = new Histogram({
  name: 'soci_fs_operation_duration_milliseconds',
  help: 'Latency of file system operations in milliseconds',
  labelNames: ['operation_type', 'layer'] as const,
  buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384],
  registers: [registry],
});

export const operationDurationUs = new Histogram({
  name: 'soci_fs_operation_duration_microseconds',
  help: 'Latency of file system operations in microseconds',
  labelNames: ['operation_type', 'layer'] as const,
  buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024],
  registers: [registry],
});

/** AWS's soci_fs_bytes_served{operation_type="synchronous_bytes_served", layer}: bytes served by reads of the mounted layers. */
new Gauge({
  name: 'soci_fs_bytes_served',
  help: 'The number of bytes served',
  labelNames: ['operation_type', 'layer'] as const,
  registers: [registry],
  collect() {
    this.reset();
    const byLayer = new Map<string, number>();
    for (const s of layerStats()) byLayer.set(s.digest, (byLayer.get(s.digest) ?? 0) + s.bytesServed);
    for (const [layer, n] of byLayer) this.set({ operation_type: 'synchronous_bytes_served', layer }, n);
  },
});

export const imageOperationCount = new Gauge({
  name: 'soci_fs_image_operation_count_key',
  help: 'The count of FUSE operations per image',
  labelNames: ['operation_type', 'image'] as const,
  registers: [registry],
});

/** Ours: Range reads a registry answered with the whole blob (200), which makes lazy loading moot there. */
export const rangeIgnoredCount = new Counter({
  name: 'soci_registry_range_ignored_total',
  help: 'Range reads answered with the whole blob (200 instead of 206), by registry',
  labelNames: ['registry'] as const,
  registers: [registry],
});

export const FUSE_MOUNT_FAILURE_COUNT = 'fuse_mount_failure_count';
export const LOCAL_MOUNT_FAILURE_COUNT = 'local_mount_failure_count';

/** Makes the fallback counters visible at 0 before the first failure (tests read them). */
export function initFallbackCounters(): void {
  operationCount.inc({ operation_type: FUSE_MOUNT_FAILURE_COUNT, layer: '' }, 0);
  operationCount.inc({ operation_type: LOCAL_MOUNT_FAILURE_COUNT, layer: '' }, 0);
}

/** The operation_type counting each kind of layer failure (failed reads are counted by FUSE op). */
export const FAILURE_COUNTERS: Partial<Record<FailureKind, string>> = {
  span_verification: 'span_verification_failure_count',
  registry: 'remote_registry_fetch_failure_count',
  read_deadline: 'read_deadline_exceeded_count',
  toc_mismatch: 'ztoc_entry_mismatch_count',
};

export function countLayerFailure(f: LayerFailure): void {
  const name = FAILURE_COUNTERS[f.kind];
  if (name) operationCount.inc({ operation_type: name, layer: f.layer });
}

/** FUSE op → AWS's name for its failure counter (others: fuse_<op>_failure_count). */
const FUSE_FAILURE_COUNTERS: Record<string, string> = {
  read: 'fuse_file_read_failure_count',
  getattr: 'fuse_node_getattr_failure_count',
  lookup: 'fuse_node_lookup_failure_count',
  open: 'fuse_node_open_failure_count',
  readdir: 'fuse_node_readdir_failure_count',
  readdirplus: 'fuse_node_readdir_failure_count',
  listxattr: 'fuse_node_listxattr_failure_count',
};

/** Answers that are part of normal operation, not failures: no such name or xattr, a size probe. */
const EXPECTED_ERRNOS = new Set<number>([Errno.ENOENT, Errno.ENODATA, Errno.ERANGE]);

/** AWS's fuse_failure_state: incremented at most once per this long per layer. */
const FUSE_FAILURE_STATE_PERIOD_MS = 5 * 60_000;
const failureStateAt = new Map<string, number>();

/** A FUSE request of `layer` answered with `errno`: counted unless the errno is an ordinary answer. */
export function countFuseFailure(op: string, errno: number, layer: string): void {
  if (EXPECTED_ERRNOS.has(errno)) return;
  operationCount.inc({ operation_type: FUSE_FAILURE_COUNTERS[op] ?? `fuse_${op}_failure_count`, layer });
  const now = performance.now();
  const last = failureStateAt.get(layer);
  if (last === undefined || now - last >= FUSE_FAILURE_STATE_PERIOD_MS) {
    failureStateAt.set(layer, now);
    operationCount.inc({ operation_type: 'fuse_failure_state', layer });
  }
}

/** Serves GET /metrics on a tcp "host:port" or a unix socket path. */
export async function serveMetrics(address: string, network: string): Promise<Server> {
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404).end('not found\n');
      return;
    }
    registry.metrics().then(
      (body) => res.writeHead(200, { 'content-type': registry.contentType }).end(body),
      (e: unknown) => res.writeHead(500).end(String(e) + '\n'),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    if (network === 'unix') {
      rm(address, { force: true }).then(() => server.listen(address, resolve), reject);
    } else {
      const i = address.lastIndexOf(':');
      const host = i > 0 ? address.slice(0, i).replace(/^\[|\]$/g, '') : '127.0.0.1';
      server.listen(Number(address.slice(i + 1)), host, resolve);
    }
  });
  return server;
}

/** Per mounted layer figures, read from the layer mounts at scrape time (no bookkeeping on the read path). */
export interface LayerStatsLike {
  digest: string;
  mountpoint: string;
  bytesFetched: number;
  fetchedSize: number;
  rangeRequests: number;
  cacheHits: number;
  cacheMisses: number;
  fetchFailures: number;
  verifyFailures: number;
  bytesRead: number;
  bytesServed: number;
  neededCompressed: number;
  spansTouched: number;
  firstReadAt: number;
}
let layerStats: () => LayerStatsLike[] = () => [];
let layerSizes: () => Map<string, number> = () => new Map();

/** The mounter registers where the per-layer figures come from. */
export function setLayerStatsProvider(stats: () => LayerStatsLike[], sizes: () => Map<string, number>): void {
  layerStats = stats;
  layerSizes = sizes;
}

function layerGauge(name: string, help: string, pick: (s: LayerStatsLike) => number): void {
  new Gauge({
    name,
    help,
    labelNames: ['digest', 'mountpoint'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const s of layerStats()) this.set({ digest: s.digest, mountpoint: s.mountpoint }, pick(s));
    },
  });
}

layerGauge('soci_fs_layer_fetched_size_bytes', 'Compressed bytes of the layer fetched and verified so far', (s) => s.fetchedSize);
layerGauge('soci_fs_layer_bytes_downloaded', 'Compressed bytes received from the registry for the layer (all attempts)', (s) => s.bytesFetched);
layerGauge('soci_fs_layer_range_requests', 'Range requests made for the layer', (s) => s.rangeRequests);
layerGauge('soci_fs_layer_span_cache_hits', 'Reads of the layer served from the span cache', (s) => s.cacheHits);
layerGauge('soci_fs_layer_span_cache_misses', 'Reads of the layer that had to fetch a span', (s) => s.cacheMisses);
layerGauge('soci_fs_layer_fetch_failures', 'Failed span fetches (network or digest) of the layer', (s) => s.fetchFailures + s.verifyFailures);
layerGauge('soci_fs_layer_bytes_read', 'Distinct uncompressed bytes of the layer read through the mount (4 KiB pages)', (s) => s.bytesRead);
layerGauge(
  'soci_fs_layer_needed_compressed_bytes',
  'Compressed estimate of the bytes read (per-span compression ratio): what the workload needed',
  (s) => s.neededCompressed,
);
layerGauge('soci_fs_layer_spans_touched', 'Spans holding at least one byte read through the mount', (s) => s.spansTouched);
layerGauge('soci_fs_layer_first_read_timestamp_ms', 'Unix time (ms) of the first read served from the layer, 0 if none', (s) => s.firstReadAt);
new Gauge({
  name: 'soci_fs_layer_size_bytes',
  help: 'Compressed size of the mounted layer',
  labelNames: ['digest', 'mountpoint'] as const,
  registers: [registry],
  collect() {
    this.reset();
    const sizes = layerSizes();
    for (const s of layerStats()) this.set({ digest: s.digest, mountpoint: s.mountpoint }, sizes.get(s.digest) ?? 0);
  },
});
