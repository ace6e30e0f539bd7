/**
 * One cold sample of the parallel pull and unpack modes: a fresh containerd 2.2 (CRI on, snapshotter
 * soci) and a fresh snapshotter with `[pull_modes.parallel_pull_unpack]` on, the ORIGINAL image (`:v1`,
 * no SOCI index) pulled with CRI, then each workload of the image in turn, as the full mode does
 * (each row's TTR = the pull + that workload's first run), so the two compare row by row.
 *
 *   parallel:     our snapshotter;
 *   aws-parallel: AWS's soci-snapshotter-grpc v0.16.1, same config text.
 *
 * In this mode the snapshotter downloads and unpacks every layer in its Prepare and answers "already
 * exists", so containerd never fetches a layer blob. A snapshotter that silently did not (mode off,
 * a fallback) leaves containerd to pull the layers itself: the figures would be a sequential
 * containerd pull in disguise. So after the pull, before any workload, the sample fails loudly unless
 *   - containerd's content store holds none of the image's layer blobs (both implementations; checked
 *     when the config discards unpacked layers, else AWS's daemon puts the blobs there itself), and
 *   - ours: the daemon's status service says it prepared every layer itself (decision `local`);
 *     AWS's: its log says it prepared every layer with parallel pull/unpack.
 */
import type { BenchImage, Workload } from '../images/index.js';
import { statusClient } from '../../src/snapshotter/status-service.js';
import { cpuMs, peakRssBytes } from './proc.js';
import { daemons, pullFigures, READY_TIMEOUT_MS, runWorkload, withCleanups, type SampleContext } from './ttr-sample.js';
import { criPull } from '../../harness/cri.js';
import type { ParallelMode, Sample } from './types.js';

/**
 * The mode's config, for both daemons. AWS's defaults, except where its docs/parallel-mode.md advises
 * otherwise: 16 MiB chunks with 10 concurrent downloads per image (its advice for large layers), as
 * many unpacks per image as the images have layers (≤ 10 here), and the blobs discarded once unpacked
 * (its examples do; nothing is written twice). TTR_PARALLEL_TOML replaces it (say so with the figures).
 */
export const PARALLEL_TOML =
  process.env.TTR_PARALLEL_TOML ??
  `[pull_modes.parallel_pull_unpack]
enable = true
max_concurrent_downloads_per_image = 10
concurrent_download_chunk_size = "16mb"
max_concurrent_unpacks_per_image = 10
discard_unpacked_layers = true
`;

/** AWS's Prepare logs this (at info, with the layer's digest) when it takes the parallel pull path. */
const AWS_PARALLEL_LINE = 'preparing snapshot with parallel pull/unpack';

/**
 * Parallel pull of `image` with one snapshotter, then each workload once. `config` is the daemon's
 * parallel-mode TOML (a test passes one without the mode to see the check fail).
 */
export async function parallelSample(
  ctx: SampleContext,
  image: BenchImage,
  workloads: Workload[],
  mode: ParallelMode,
  config = PARALLEL_TOML,
): Promise<Sample[]> {
  return withCleanups(async (after) => {
    const aws = mode === 'aws-parallel';
    const { sn, cd } = await daemons(after, { cri: 'soci', impl: aws ? 'aws' : 'ours', parallel: config }, ctx.proxy.host);
    const ref = `${ctx.proxy.host}/${ctx.repo(image)}:v1`;
    const cpu0 = cpuMs(sn.pid);
    ctx.proxy.resetStats();
    const t0 = performance.now();
    await criPull(cd.address, ref, { timeoutMs: READY_TIMEOUT_MS });
    const pullMs = performance.now() - t0;
    const pulled = ctx.proxy.stats();

    const layers = [...new Set(image.layers.map((l) => l.digest))];
    const content = await cd.ctr(['-n', 'k8s.io', 'content', 'ls', '-q']);
    if (content.code !== 0) throw new Error(`ctr content ls failed: ${content.stderr}`);
    const stored = new Set(content.stdout.split('\n').map((l) => l.trim()));
    const discards = /^\s*discard_unpacked_layers\s*=\s*true\b/m.test(config);
    const byContainerd = discards ? layers.filter((d) => stored.has(d)) : [];
    let bySnapshotter: string[];
    let seen: string;
    if (aws) {
      const prepared = sn
        .logs()
        .split('\n')
        .filter((l) => l.includes(AWS_PARALLEL_LINE));
      bySnapshotter = layers.filter((d) => prepared.some((l) => l.includes(d)));
      seen = `its log has "${AWS_PARALLEL_LINE}" for ${bySnapshotter.length} of them`;
    } else {
      const status = statusClient(sn.address);
      const decisions = await status.layers().finally(() => status.close());
      bySnapshotter = layers.filter((d) => decisions.some((x) => x.layer === d && x.mode === 'local'));
      const counts = new Map<string, number>();
      for (const x of decisions) {
        if (!layers.includes(x.layer)) continue;
        const k = x.cause ? `${x.mode} (${x.cause})` : x.mode;
        counts.set(k, (counts.get(k) ?? 0) + 1);
      }
      seen = `its decisions: ${[...counts].map(([k, n]) => `${k} ×${n}`).join(', ') || 'none'}`;
    }
    if (byContainerd.length > 0 || bySnapshotter.length < layers.length)
      throw new Error(
        `${image.name} (${mode}): silent fallback — the snapshotter pulled ${bySnapshotter.length} of ${layers.length} layers itself (${seen}), ` +
          `${discards ? `containerd's content store holds ${byContainerd.length} of them` : "containerd's content store not checked (blobs kept)"}; ` +
          "the parallel figures would be containerd's own pull in disguise",
      );

    const out: Sample[] = [];
    for (const w of workloads) {
      const r = await runWorkload(cd, after, ref, 'soci', w);
      const runMs = r.readyAt - r.startedAt;
      out.push({
        image: image.name,
        workload: w.name,
        profile: ctx.profile,
        mode,
        iteration: ctx.iteration,
        ttrMs: pullMs + runMs,
        pullMs,
        runMs,
        ...pullFigures(pulled, sn.pid, cpu0),
        pullBytes: pulled.bytesDown,
        parallelLayers: bySnapshotter.length,
      });
      ctx.log(
        `  ${mode} ${image.name}/${w.name}: pull ${(pullMs / 1000).toFixed(2)} s + run ${(runMs / 1000).toFixed(2)} s, ` +
          `${(pulled.bytesDown / 1e6).toFixed(1)} MB in ${pulled.rangeRequests} range requests, peak RSS ${(peakRssBytes(sn.pid) / 1e6).toFixed(0)} MB`,
      );
    }
    return out;
  });
}
