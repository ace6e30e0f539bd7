/**
 * One cold sample of the time-to-ready experiment. Every sample starts a fresh containerd
 * (CRI on) and a fresh snapshotter on new roots, so nothing is cached; everything is stopped and
 * wiped afterwards. Time-to-ready is measured like the seed's check_running_time.sh: from the pull
 * command (CRI PullImage) to the first HTTP 200, or to the workload exiting with status 0.
 *
 *   full: CRI pull with overlayfs (download + unpack everything), then `ctr run` of each workload of
 *         the image in turn (each row's TTR = the pull + that workload's first run), then a second
 *         run of each: the `warm` rows (image local, page cache warm).
 *   lazy, replay, aws, aws-replay: a CRI pull with a lazy snapshotter, then one workload's run:
 *         lazy = ours on the `:soci` image; replay = ours with `[prefetch] enable = true` on the
 *         `:replay-<workload>` image (converted with that workload's prefetch record); aws and
 *         aws-replay = AWS's soci-snapshotter-grpc on the same two images, with the same switch.
 *         Fails loudly when a layer that should be lazy was not mounted lazily (a silent fallback).
 *   parallel, aws-parallel: bench/lib/parallel-sample.ts, on the daemons started here.
 * All modes run on containerd 2.2; containerd's socket path is fixed first (AWS's snapshotter reads
 * its content store).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFile, mkdtemp, readdir, rename, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { startAwsSnapshotter } from '../../harness/aws-snapshotter.js';
import { removeTree, startContainerd, startSnapshotter, type StartedContainerd } from '../../harness/containerd.js';
import { waitFor } from '../../harness/env.js';
import { criPull } from '../../harness/cri.js';
import { freePort } from '../../harness/registry.js';
import type { BenchImage, Workload } from '../images/index.js';
import type { ProxyStats, ShapeProxy } from './shape-proxy.js';
import type { LazyMode, Sample } from './types.js';
import { cpuMs, httpGet, parseMetrics, peakRssBytes, waitHttp200 } from './proc.js';

export const READY_TIMEOUT_MS = 900_000;
const SNAPSHOTTER_ENTRY = resolve('bin/soci-snapshotter-grpc.js');

export interface SampleContext {
  proxy: ShapeProxy;
  profile: string;
  iteration: number;
  /** images are pulled as `${proxy.host}/${repo}:v1` (original), `:soci` (converted) and `:replay-<workload>` (converted with its record) */
  repo(image: BenchImage): string;
  /** layers that must be mounted lazily (indexed by soci convert) */
  expectedLazyLayers(image: BenchImage): number;
  log(msg: string): void;
}

export type Cleanup = () => unknown;

export async function withCleanups<T>(fn: (after: (c: Cleanup) => void) => Promise<T>): Promise<T> {
  const cleanups: Cleanup[] = [];
  try {
    return await fn((c) => void cleanups.push(c));
  } finally {
    for (const c of cleanups.reverse())
      await Promise.resolve()
        .then(c)
        .catch(() => undefined);
  }
}

/** Which daemons a sample runs: containerd 2.2 and one snapshotter as the `soci` proxy plugin. */
interface DaemonSpec {
  /** CRI's snapshotter */
  cri: 'overlayfs' | 'soci';
  impl: 'ours' | 'aws';
  /** `[prefetch] enable = true` (both implementations read the same key) */
  prefetch?: boolean;
  /** ours: `[prefetch_record]` on, records under <root>/prefetch-records */
  record?: boolean;
  /** TOML for the parallel pull mode (parallel-sample.ts), given to either implementation as is */
  parallel?: string;
}

export async function daemons(after: (c: Cleanup) => void, spec: DaemonSpec, registryHost: string) {
  const dir = await mkdtemp(join(tmpdir(), 'soci-ttr-'));
  after(() => removeTree(dir));
  const t = { after };
  const containerdAddress = join(dir, 'containerd.sock');
  // Both implementations read the same keys for these two switches.
  const shared = `${spec.prefetch ? '[prefetch]\nenable = true\n' : ''}${spec.parallel ?? ''}\n`;
  let sn: { address: string; root: string; pid: number | undefined; logs(): string; metricsUrl?: string; fuseMounts?: () => Promise<string[]> };
  if (spec.impl === 'aws') {
    const aws = await startAwsSnapshotter(t, { dir, containerdAddress, config: shared });
    sn = { address: aws.address, root: aws.root, pid: aws.proc.pid, logs: aws.logs, fuseMounts: aws.fuseMounts };
  } else {
    const metricsPort = await freePort();
    const record = spec.record ? '[prefetch_record]\nenable = true\nquiet_period_sec = 3\n' : '';
    const ours = await startSnapshotter(t, {
      dir,
      entry: SNAPSHOTTER_ENTRY,
      logLevel: 'info',
      // TTR_SNAPSHOTTER_TOML: extra config for our daemon (to measure a setting; say so with the figures)
      config: `metrics_address = "127.0.0.1:${metricsPort}"\n${shared}${record}${process.env.TTR_SNAPSHOTTER_TOML ?? ''}\n`,
    });
    sn = { address: ours.address, root: ours.root, pid: ours.proc.pid, logs: ours.logs, metricsUrl: `http://127.0.0.1:${metricsPort}/metrics` };
  }
  const cd = await startContainerd(t, {
    version: '2.2',
    address: containerdAddress,
    snapshotterSocket: sn.address,
    cri: true,
    criSnapshotter: spec.cri,
    plainHttpRegistries: [registryHost],
  });
  // TTR_LOG_DIR keeps each sample's daemon logs (to profile a slow sample from its timestamps).
  const logDir = process.env.TTR_LOG_DIR;
  if (logDir) {
    const tag = `${Date.now()}-${spec.cri}-${spec.impl}${spec.prefetch ? '-prefetch' : ''}${spec.parallel ? '-parallel' : ''}`;
    after(() => Promise.all([writeFile(join(logDir, `${tag}-snapshotter.log`), sn.logs()), writeFile(join(logDir, `${tag}-containerd.log`), cd.logs())]));
  }
  return { sn, cd };
}

/** Runs one workload in a new container; resolves with ms from start to ready. */
export async function runWorkload(
  cd: StartedContainerd,
  after: (c: Cleanup) => void,
  image: string,
  snapshotter: string,
  w: Workload,
): Promise<{ startedAt: number; readyAt: number }> {
  const port = await freePort();
  const id = `ttr-${port}-${Math.random().toString(36).slice(2, 7)}`;
  const args = ['--address', cd.address, '-n', 'k8s.io', 'run', '--net-host', '--snapshotter', snapshotter, image, id, ...w.command(port)];
  const startedAt = performance.now();
  const child: ChildProcess = spawn('ctr', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (out += b.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  after(async () => {
    if (child.exitCode === null) {
      await cd.ctr(['-n', 'k8s.io', 'task', 'kill', '-s', 'SIGKILL', id]);
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
    }
    await cd.ctr(['-n', 'k8s.io', 'task', 'rm', '-f', id]);
    await cd.ctr(['-n', 'k8s.io', 'container', 'rm', id]);
  });
  const deadline = startedAt + READY_TIMEOUT_MS;
  let readyAt: number;
  if (w.ready.kind === 'http') {
    readyAt = await waitHttp200(`http://127.0.0.1:${port}${w.ready.path}`, deadline, () => child.exitCode === null).catch((e: Error) => {
      throw new Error(`${w.name}: ${e.message}\n${out.slice(-2000)}`);
    });
  } else {
    const code = await Promise.race([exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), READY_TIMEOUT_MS).unref())]);
    readyAt = performance.now();
    if (code !== 0) throw new Error(`${w.name} exited with ${code}:\n${out.slice(-2000)}`);
  }
  return { startedAt, readyAt };
}

/** A sample's figures of a pull: the registry traffic it made and what the daemon `pid` spent on it. */
export function pullFigures(
  pulled: ProxyStats,
  pid: number | undefined,
  cpu0: number,
): Pick<Sample, 'bytesFetched' | 'requests' | 'rangeRequests' | 'connections' | 'daemonCpuMs' | 'daemonPeakRssBytes'> {
  return {
    bytesFetched: pulled.bytesDown,
    requests: pulled.requests,
    rangeRequests: pulled.rangeRequests,
    connections: pulled.connections,
    daemonCpuMs: cpuMs(pid) - cpu0,
    daemonPeakRssBytes: peakRssBytes(pid),
  };
}

/** Full pull (overlayfs) of `image`, then each workload once (full rows) and again (warm rows). */
export async function fullSample(ctx: SampleContext, image: BenchImage, workloads: Workload[]): Promise<Sample[]> {
  return withCleanups(async (after) => {
    const { cd } = await daemons(after, { cri: 'overlayfs', impl: 'ours' }, ctx.proxy.host);
    const ref = `${ctx.proxy.host}/${ctx.repo(image)}:v1`;
    const cpu0 = cpuMs(cd.proc.pid);
    ctx.proxy.resetStats();
    const t0 = performance.now();
    await criPull(cd.address, ref, { timeoutMs: READY_TIMEOUT_MS });
    const pullMs = performance.now() - t0;
    const pulled = ctx.proxy.stats();
    const out: Sample[] = [];
    const base = { image: image.name, profile: ctx.profile, iteration: ctx.iteration };
    for (const w of workloads) {
      const r = await runWorkload(cd, after, ref, 'overlayfs', w);
      const runMs = r.readyAt - r.startedAt;
      out.push({
        ...base,
        workload: w.name,
        mode: 'full',
        ttrMs: pullMs + runMs,
        pullMs,
        runMs,
        ...pullFigures(pulled, cd.proc.pid, cpu0),
      });
      ctx.log(`  full ${image.name}/${w.name}: pull ${(pullMs / 1000).toFixed(2)} s + run ${(runMs / 1000).toFixed(2)} s`);
    }
    for (const w of workloads) {
      const r = await runWorkload(cd, after, ref, 'overlayfs', w);
      const runMs = r.readyAt - r.startedAt;
      out.push({ ...base, workload: w.name, mode: 'warm', ttrMs: runMs, pullMs: 0, runMs, bytesFetched: 0, requests: 0, rangeRequests: 0, connections: 0 });
      ctx.log(`  warm ${image.name}/${w.name}: ${(runMs / 1000).toFixed(2)} s`);
    }
    return out;
  });
}

/** The image tag each lazy mode pulls. */
export function lazyTag(mode: LazyMode, w: Workload): string {
  return mode === 'replay' || mode === 'aws-replay' ? `replay-${w.name}` : 'soci';
}

/** Lazy pull with one snapshotter (see the modes above), then one workload. */
export async function lazySample(ctx: SampleContext, image: BenchImage, w: Workload, mode: LazyMode = 'lazy'): Promise<Sample> {
  return withCleanups(async (after) => {
    const aws = mode === 'aws' || mode === 'aws-replay';
    const { sn, cd } = await daemons(after, { cri: 'soci', impl: aws ? 'aws' : 'ours', prefetch: mode !== 'lazy' && mode !== 'aws' }, ctx.proxy.host);
    const ref = `${ctx.proxy.host}/${ctx.repo(image)}:${lazyTag(mode, w)}`;
    const cpu0 = cpuMs(sn.pid);
    ctx.proxy.resetStats();
    const wall0 = Date.now();
    const t0 = performance.now();
    await criPull(cd.address, ref, { timeoutMs: READY_TIMEOUT_MS });
    const pullMs = performance.now() - t0;
    const pullBytes = ctx.proxy.stats().bytesDown;
    const r = await runWorkload(cd, after, ref, 'soci', w);
    const ttrMs = r.readyAt - t0;
    const net = ctx.proxy.stats();
    const cpu = cpuMs(sn.pid) - cpu0;
    const rss = peakRssBytes(sn.pid);
    const expected = ctx.expectedLazyLayers(image);
    const fallback = (mounted: number, extra = '') =>
      new Error(
        `${image.name}/${w.name} (${mode}): silent fallback — ${mounted} of ${expected} indexed layers were mounted lazily${extra}; ` +
          'the lazy figures would be a full pull in disguise',
      );
    let ours: Partial<Sample> = {};
    if (sn.metricsUrl) {
      const m = await httpGet(sn.metricsUrl, 5000);
      if (m.status !== 200) throw new Error(`snapshotter metrics unavailable (${m.status})`);
      const fig = parseMetrics(m.body);
      if (fig.layers.length < expected || fig.fuseMountFailures > 0) throw fallback(fig.layers.length, ` (fuse_mount_failure_count ${fig.fuseMountFailures})`);
      const firstReads = fig.layers.map((l) => l.firstReadAt).filter((x) => x > 0);
      const sum = (k: 'bytesRead' | 'neededCompressed') => fig.layers.reduce((a, l) => a + l[k], 0);
      ours = {
        ...(firstReads.length ? { firstByteMs: Math.min(...firstReads) - wall0 } : {}),
        bytesRead: sum('bytesRead'),
        neededCompressed: sum('neededCompressed'),
        lazyLayers: fig.layers.length,
      };
    } else {
      // AWS's daemon: its lazily mounted layers are the FUSE mounts under its root.
      const mounts = (await sn.fuseMounts!()).length;
      if (mounts < expected) throw fallback(mounts);
      ours = { lazyLayers: mounts };
    }
    ctx.log(
      `  ${mode} ${image.name}/${w.name}: pull ${(pullMs / 1000).toFixed(2)} s, ready ${(ttrMs / 1000).toFixed(2)} s, fetched ${(net.bytesDown / 1e6).toFixed(1)} MB`,
    );
    return {
      image: image.name,
      workload: w.name,
      profile: ctx.profile,
      mode,
      iteration: ctx.iteration,
      ttrMs,
      pullMs,
      runMs: r.readyAt - r.startedAt,
      bytesFetched: net.bytesDown,
      requests: net.requests,
      rangeRequests: net.rangeRequests,
      connections: net.connections,
      pullBytes,
      daemonCpuMs: cpu,
      daemonPeakRssBytes: rss,
      expectedLazyLayers: expected,
      ...ours,
    };
  });
}

/**
 * One recorded start (prefetch input): our snapshotter with `[prefetch_record]` on, the `:soci`
 * image pulled straight from the registry (unshaped), one workload run; the record the daemon
 * writes after its quiet period is copied to `out`.
 */
export async function recordStart(registryHost: string, repo: string, w: Workload, out: string): Promise<void> {
  await withCleanups(async (after) => {
    const { sn, cd } = await daemons(after, { cri: 'soci', impl: 'ours', record: true }, registryHost);
    const ref = `${registryHost}/${repo}:soci`;
    await criPull(cd.address, ref, { timeoutMs: READY_TIMEOUT_MS });
    await runWorkload(cd, after, ref, 'soci', w);
    const dir = join(sn.root, 'prefetch-records');
    const records = async () => (await readdir(dir).catch(() => [] as string[])).filter((f) => f.endsWith('.json'));
    if (!(await waitFor(async () => (await records()).length > 0, 120_000, 250)))
      throw new Error(`${repo}/${w.name}: the snapshotter wrote no prefetch record:\n${sn.logs().slice(-2000)}`);
    const [file] = await records();
    await copyFile(join(dir, file!), `${out}.tmp`);
    await rename(`${out}.tmp`, out);
  });
}
