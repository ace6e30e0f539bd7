/**
 * Prometheus metrics (§5.12). One registry for the whole daemon: other modules import
 * `registry` (or the metric objects below) and register their own families on it.
 */
import { createServer, type Server } from 'node:http';
import { rm } from 'node:fs/promises';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

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

export const bytesServed = new Gauge({
  name: 'soci_fs_bytes_served',
  help: 'The number of bytes served',
  labelNames: ['operation_type', 'layer'] as const,
  registers: [registry],
});

export const imageOperationCount = new Gauge({
  name: 'soci_fs_image_operation_count_key',
  help: 'The count of FUSE operations per image',
  labelNames: ['operation_type', 'image'] as const,
  registers: [registry],
});

export const FUSE_MOUNT_FAILURE_COUNT = 'fuse_mount_failure_count';
export const LOCAL_MOUNT_FAILURE_COUNT = 'local_mount_failure_count';

/** Makes the fallback counters visible at 0 before the first failure (tests read them). */
export function initFallbackCounters(): void {
  operationCount.inc({ operation_type: FUSE_MOUNT_FAILURE_COUNT, layer: '' }, 0);
  operationCount.inc({ operation_type: LOCAL_MOUNT_FAILURE_COUNT, layer: '' }, 0);
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
