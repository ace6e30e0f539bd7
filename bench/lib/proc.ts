/**
 * Small probes for the time-to-ready harness: a process's CPU time and peak RSS from /proc, the
 * snapshotter's Prometheus text parsed into per-layer figures, and an HTTP readiness poll.
 */
import { readFileSync } from 'node:fs';
import { get } from 'node:http';

const TICK_MS = 10; // CLK_TCK is 100 on Linux/x86-64

/** utime + stime of a process, in ms (0 if it is gone). */
export function cpuMs(pid: number | undefined): number {
  if (!pid) return 0;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) * TICK_MS;
  } catch {
    return 0;
  }
}

/** Peak resident set (VmHWM) of a process, in bytes (0 if it is gone). */
export function peakRssBytes(pid: number | undefined): number {
  if (!pid) return 0;
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

export interface LayerFigures {
  digest: string;
  bytesDownloaded: number;
  rangeRequests: number;
  bytesRead: number;
  neededCompressed: number;
  firstReadAt: number;
}

export interface SnapshotterFigures {
  layers: LayerFigures[];
  fuseMountFailures: number;
}

/** Parses `soci_fs_layer_*{digest=…}` gauges and the fallback counter from Prometheus text. */
export function parseMetrics(text: string): SnapshotterFigures {
  const byDigest = new Map<string, LayerFigures>();
  let fuseMountFailures = 0;
  const field: Record<string, keyof LayerFigures> = {
    soci_fs_layer_bytes_downloaded: 'bytesDownloaded',
    soci_fs_layer_range_requests: 'rangeRequests',
    soci_fs_layer_bytes_read: 'bytesRead',
    soci_fs_layer_needed_compressed_bytes: 'neededCompressed',
    soci_fs_layer_first_read_timestamp_ms: 'firstReadAt',
  };
  for (const line of text.split('\n')) {
    const m = /^(\w+)\{([^}]*)\}\s+(\S+)/.exec(line);
    if (!m) continue;
    const [, name, labels, value] = m;
    if (name === 'soci_fs_operation_count' && labels!.includes('operation_type="fuse_mount_failure_count"')) {
      fuseMountFailures += Number(value);
      continue;
    }
    const key = field[name!];
    const digest = /digest="([^"]+)"/.exec(labels!)?.[1];
    if (!key || !digest) continue;
    let l = byDigest.get(digest);
    if (!l) {
      l = { digest, bytesDownloaded: 0, rangeRequests: 0, bytesRead: 0, neededCompressed: 0, firstReadAt: 0 };
      byDigest.set(digest, l);
    }
    (l[key] as number) = Number(value);
  }
  return { layers: [...byDigest.values()], fuseMountFailures };
}

export function httpGet(url: string, timeoutMs: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const req = get(url, { timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', () => resolve({ status: 0, body }));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve({ status: 0, body: '' }));
  });
}

/** Polls until GET url answers 200; resolves with the time (performance.now()) it did. */
export async function waitHttp200(url: string, deadline: number, alive: () => boolean): Promise<number> {
  for (;;) {
    const r = await httpGet(url, 1000);
    if (r.status === 200) return performance.now();
    if (!alive()) throw new Error(`the container exited before ${url} answered 200`);
    if (performance.now() > deadline) throw new Error(`${url} did not answer 200 in time`);
    await new Promise((res) => setTimeout(res, 10));
  }
}
