/**
 * Result schema of the time-to-ready benchmark: bench/run.ts writes one ResultsFile per network
 * profile (bench/results/<profile>.json); bench/lib/report.ts and bench/lib/chart.ts read them.
 *
 * Image naming convention the report relies on (substring of ImageInfo.name / Sample.image, lower case):
 * 'echo', 'python', 'node', 'hostile', 'fat-sparse' (whose workloads are named '1pct', '5pct', …).
 */
/**
 * full/warm: containerd's pull + overlayfs; lazy: ours; replay: ours with prefetch records replayed;
 * aws / aws-replay: AWS's soci-snapshotter-grpc on the same images, without and with the prefetch artifacts.
 */
export type LazyMode = 'lazy' | 'replay' | 'aws' | 'aws-replay';
export const LAZY_MODES: readonly LazyMode[] = ['lazy', 'replay', 'aws', 'aws-replay'];
/**
 * parallel / aws-parallel: ours / AWS's snapshotter with `[pull_modes.parallel_pull_unpack]` on, pulling
 * the original image (no SOCI index): the snapshotter downloads and unpacks every layer itself.
 */
export type ParallelMode = 'parallel' | 'aws-parallel';
export const PARALLEL_MODES: readonly ParallelMode[] = ['parallel', 'aws-parallel'];
export type Mode = 'full' | 'warm' | LazyMode | ParallelMode;

export interface Sample {
  image: string;
  workload: string;
  profile: string /* 'p0'..'p4' */;
  mode: Mode;
  iteration: number;
  /** ms from the pull command to ready (first HTTP 200 or exit 0); for warm: from `ctr run` to ready (image already local) */
  ttrMs: number;
  pullMs: number; // pull command duration (0 for warm)
  runMs: number; // from `ctr run` start to ready
  firstByteMs?: number; // ours: ms from pull start to the first byte served by a lazy (FUSE) read
  bytesFetched: number; // bytes received from the registry (through the proxy) from pull start to ready
  requests: number;
  rangeRequests: number;
  connections: number;
  bytesRead?: number; // lazy: distinct uncompressed bytes read through FUSE, all layers
  neededCompressed?: number; // lazy: compressed estimate of bytesRead (what the workload really needs)
  daemonCpuMs?: number;
  daemonPeakRssBytes?: number; // lazy and parallel modes: the snapshotter; full: containerd
  modelMs?: number; // model lower bound (computed by run.ts)
  lazyLayers?: number;
  expectedLazyLayers?: number;
  /** parallel modes: the image's layers the snapshotter pulled and unpacked itself (checked: all of them) */
  parallelLayers?: number;
  /** optional: bytes received during the pull command alone (lazy: manifests, index, zTOCs) */
  pullBytes?: number;
  /** optional: the commit of the code measured (`-dirty` when src/ had uncommitted changes) */
  build?: string;
  /** optional: set when the sample failed (not ready); such samples are left out of the statistics */
  error?: string;
}

export interface ImageInfo {
  name: string;
  compressedBytes: number;
  uncompressedBytes: number;
  layers: number;
  workloads: Array<{ name: string; description: string }>;
}

export interface ResultsFile {
  profile: string;
  profileLabel: string;
  startedAt: string;
  finishedAt: string;
  command: string;
  samplesPerMode: number;
  machine: string;
  images: ImageInfo[];
  samples: Sample[];
}
