/**
 * Time-to-ready benchmark for the images of bench/images, through a shaping proxy, cold containerd
 * + snapshotter for every sample, order randomised per iteration. Modes (bench/lib/ttr-sample.ts):
 * full (+ warm), lazy (ours), replay (ours + prefetch recorded from a real start), aws and
 * aws-replay (AWS's soci-snapshotter-grpc on the same two images), parallel and aws-parallel (each
 * snapshotter's parallel pull and unpack mode on the original image, no index: bench/lib/parallel-sample.ts). Results go to bench/results/ttr-<profile>.json (kept in git); the
 * BENCHMARKS.md section and bench/results/ttr.svg are regenerated from every results file present.
 *
 *   npm run bench -- --profile p2 [--samples 5] [--images echo,python,node,hostile,fat-sparse]
 *   npm run bench -- --profile p0,p2        several profiles, one after the other
 *   npm run bench -- --profile p2 --modes lazy,replay   only these modes (the others keep their samples)
 *   npm run bench -- --report               only regenerate BENCHMARKS.md and the chart
 *   npm run bench -- --profile p0,p1 --modes full,parallel,aws-parallel   the parallel pull targets (fat-sparse: the RSS one)
 *   TTR_SNAPSHOTTER_TOML='[blob]…' npm run bench …   extra config for our daemon (to measure a setting); TTR_LOG_DIR keeps daemon logs
 *   TTR_PARALLEL_TOML='[pull_modes.parallel_pull_unpack]…'   replaces the parallel modes' config (both daemons)
 * Needs root (containerd, FUSE), docker-registry, skopeo, runc, and containerd 2.2 and AWS's snapshotter
 * from scripts/install-test-tools.sh (scripts/test.sh installs them all).
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { cpus, release } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { startRegistry } from '../harness/registry.js';
import { buildBenchImage, IMAGE_NAMES, type BenchImage, type ImageName } from './images/index.js';
import { renderChart } from './lib/chart.js';
import { renderReport, updateBenchmarksMd } from './lib/report.js';
import { PROFILES, startShapeProxy, type ShapeProfile } from './lib/shape-proxy.js';
import { p50 } from './lib/stats.js';
import { fullSample, lazySample, lazyTag, recordStart, type SampleContext } from './lib/ttr-sample.js';
import { parallelSample } from './lib/parallel-sample.js';
import { LAZY_MODES, PARALLEL_MODES, type LazyMode, type ParallelMode, type ResultsFile, type Sample } from './lib/types.js';
import { AWS_SNAPSHOTTER } from '../harness/aws-snapshotter.js';
import { CONTAINERD2_BIN } from '../harness/containerd.js';
import { benchArgs } from './lib/args.js';

const exec = promisify(execFile);
const work = resolve('.bench-work');
const resultsDir = resolve('bench', 'results');
const MIN_LAYER_SIZE = 10 << 20; // soci convert's default --min-layer-size
/** docker-registry's full-GET throughput on this box: "unshaped" is not infinite */
const UNSHAPED_BYTES_PER_S = 2e9;
/** dependent round trips a lazy start needs at least: manifest, config + SOCI index, zTOCs, data */
const MODEL_ROUND_TRIPS = 4;

const { values: flags } = benchArgs({
  options: {
    profile: { type: 'string' },
    samples: { type: 'string' },
    images: { type: 'string' },
    modes: { type: 'string' },
    report: { type: 'boolean', default: false },
  },
  strict: false,
});
function arg(name: 'profile' | 'samples' | 'images' | 'modes'): string | undefined {
  const v = flags[name];
  return typeof v === 'string' ? v : undefined;
}

interface RunModes {
  /** the full pull (and its warm runs) */
  full: boolean;
  lazy: LazyMode[];
  parallel: ParallelMode[];
}

const ALL_MODES = ['full', ...LAZY_MODES, ...PARALLEL_MODES];

function parseModes(list: string): RunModes {
  const out: RunModes = { full: false, lazy: [], parallel: [] };
  for (const m of list.split(',')) {
    if (m === 'full') out.full = true;
    else if ((LAZY_MODES as readonly string[]).includes(m)) out.lazy.push(m as LazyMode);
    else if ((PARALLEL_MODES as readonly string[]).includes(m)) out.parallel.push(m as ParallelMode);
    else throw new Error(`unknown mode ${m} (known: ${ALL_MODES.join(', ')})`);
  }
  return out;
}

/** Whether a sample of this mode is re-measured by this run. */
function runsMode(modes: RunModes, mode: Sample['mode']): boolean {
  if (mode === 'full' || mode === 'warm') return modes.full;
  return (modes.lazy as readonly string[]).includes(mode) || (modes.parallel as readonly string[]).includes(mode);
}

function shuffle<T>(xs: T[]): T[] {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [xs[i], xs[j]] = [xs[j]!, xs[i]!];
  }
  return xs;
}

function writeAtomic(path: string, text: string): void {
  writeFileSync(`${path}.tmp`, text);
  renameSync(`${path}.tmp`, path);
}

const convert = (regHost: string, img: BenchImage, tag: string, extra: string[] = []) =>
  exec(
    process.execPath,
    ['bin/soci.js', '--root', join(work, 'ttr-soci-root'), 'convert', '--remote', '-q', ...extra, `${regHost}/${img.name}:v1`, `${regHost}/${img.name}:${tag}`],
    { maxBuffer: 1 << 26 },
  );

/**
 * Pushes each image (skopeo) and converts it (`soci convert`, registry to registry), once per image
 * build; with replay modes, also records each workload's start and converts the image again with
 * that record (`:replay-<workload>`).
 */
async function prepare(regHost: string, images: BenchImage[], replay: boolean, log: (m: string) => void): Promise<void> {
  const stampsPath = join(work, 'ttr-registry', 'stamps.json'); // next to the registry's storage: wiped together
  const stamps: Record<string, string> = existsSync(stampsPath) ? JSON.parse(readFileSync(stampsPath, 'utf8')) : {};
  const stamp = (key: string, id: string) => {
    stamps[key] = id;
    writeAtomic(stampsPath, JSON.stringify(stamps, null, 2));
  };
  for (const img of images) {
    const id = img.layers.map((l) => l.digest).join(',');
    if (stamps[img.name] !== id) {
      log(`pushing and converting ${img.name} (${(img.compressedBytes / 1e6).toFixed(0)} MB compressed)`);
      await exec('skopeo', ['copy', '-q', '--dest-tls-verify=false', `oci:${img.layout}:latest`, `docker://${regHost}/${img.name}:v1`], { maxBuffer: 1 << 26 });
      const t0 = performance.now();
      await convert(regHost, img, 'soci');
      log(`  soci convert: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
      stamp(img.name, id);
    }
    if (!replay) continue;
    for (const w of img.workloads) {
      const key = `${img.name}/${w.name}:replay`;
      if (stamps[key] === id) continue;
      const record = join(work, 'ttr-records', `${img.name}-${w.name}.json`);
      mkdirSync(join(work, 'ttr-records'), { recursive: true });
      log(`recording ${img.name}/${w.name}'s start, then converting with the record`);
      await recordStart(regHost, img.name, w, record);
      await convert(regHost, img, lazyTag('replay', w), ['--prefetch-record', record]);
      stamp(key, id);
    }
  }
}

/** The model lower bound: T_app + (metadata + needed bytes) / B + k·RTT. */
function addModel(samples: Sample[], profile: ShapeProfile): void {
  const bytesPerMs = (profile.rateBitsPerSec > 0 ? profile.rateBitsPerSec / 8 : UNSHAPED_BYTES_PER_S) / 1000;
  for (const s of samples) {
    if (s.mode !== 'lazy' || s.neededCompressed === undefined) continue;
    const warm = samples.filter((x) => x.mode === 'warm' && x.image === s.image && x.workload === s.workload).map((x) => x.runMs);
    if (warm.length === 0) continue;
    s.modelMs = p50(warm) + ((s.pullBytes ?? 0) + s.neededCompressed) / bytesPerMs + MODEL_ROUND_TRIPS * profile.rttMs;
  }
}

function loadResults(): ResultsFile[] {
  if (!existsSync(resultsDir)) return [];
  return readdirSync(resultsDir)
    .filter((f) => /^ttr-p\d\.json$/.test(f))
    .sort()
    .map((f) => JSON.parse(readFileSync(join(resultsDir, f), 'utf8')) as ResultsFile);
}

function report(): void {
  const results = loadResults();
  if (results.length === 0) throw new Error('no results in bench/results: run `npm run bench -- --profile p0` first');
  writeAtomic(join(resultsDir, 'ttr.svg'), renderChart(results));
  const intro =
    'Regenerated by `npm run bench -- --profile <id>` (bench/run.ts; raw samples in `bench/results/ttr-<id>.json`;\n' +
    '`npm run bench -- --report` redraws from them). Every sample is cold: fresh containerd, snapshotter and roots,\n' +
    'order randomised per iteration, containerd 2.2 for every mode (samples from before the aws modes ran on 1.6).\n' +
    'The registry is reached through bench/lib/shape-proxy.ts. Modes: full (containerd pull + overlayfs, then warm), lazy (ours),\n' +
    "replay (ours pulling the image converted with the workload's own recorded start, `[prefetch] enable = true`), aws and\n" +
    "aws-replay (AWS's soci-snapshotter-grpc v0.16.1 on the same two images), parallel and aws-parallel (ours and AWS's\n" +
    'with `[pull_modes.parallel_pull_unpack]` on, pulling the original image without an index). Model lower bound =\n' +
    `warm run + (pull metadata + compressed bytes the workload read) ÷ bandwidth + ${MODEL_ROUND_TRIPS} RTTs (unshaped: ${UNSHAPED_BYTES_PER_S / 1e9} GB/s, 0 ms).\n\n`;
  updateBenchmarksMd(resolve('BENCHMARKS.md'), intro + renderReport(results));
}

async function runProfile(profile: ShapeProfile, images: BenchImage[], modes: RunModes, samples: number, regHost: string): Promise<void> {
  const log = (m: string) => console.log(`[${profile.id} ${new Date().toISOString().slice(11, 19)}] ${m}`);
  const proxy = await startShapeProxy({ upstream: regHost, profile });
  const path = join(resultsDir, `ttr-${profile.id}.json`);
  // Images and modes not in this run keep their earlier samples (one image or mode can be re-measured alone).
  const names = new Set(images.map((i) => i.name as string));
  const measured = (x: Sample) => names.has(x.image) && runsMode(modes, x.mode);
  const prev: ResultsFile | undefined = existsSync(path) ? JSON.parse(readFileSync(path, 'utf8')) : undefined;
  const command = `npm run bench -- ${process.argv.slice(2).join(' ')}`;
  const file: ResultsFile = {
    profile: profile.id,
    profileLabel: profile.label,
    startedAt: new Date().toISOString(),
    finishedAt: '',
    command: prev && prev.command !== command ? `${prev.command}; ${command}` : command,
    samplesPerMode: samples,
    machine: `${cpus().length} vCPU ${cpus()[0]?.model ?? ''}, kernel ${release()}, Node ${process.version}`,
    images: [
      ...(prev?.images.filter((i) => !names.has(i.name)) ?? []),
      ...images.map((i) => ({
        name: i.name,
        compressedBytes: i.compressedBytes,
        uncompressedBytes: i.uncompressedBytes,
        layers: i.layers.length,
        workloads: i.workloads.map((w) => ({ name: w.name, description: w.description })),
      })),
    ],
    samples: prev?.samples.filter((x) => !measured(x)) ?? [],
  };
  const save = () => writeAtomic(path, JSON.stringify(file, null, 1));
  const build = await currentBuild();
  try {
    for (let it = 0; it < samples; it++) {
      const ctx: SampleContext = {
        proxy,
        profile: profile.id,
        iteration: it,
        log,
        repo: (img) => img.name,
        expectedLazyLayers: (img) => img.layers.filter((l) => l.size >= MIN_LAYER_SIZE).length,
      };
      const tasks = shuffle(
        images.flatMap((img) => [
          ...(modes.full ? [() => fullSample(ctx, img, img.workloads)] : []),
          ...img.workloads.flatMap((w) => modes.lazy.map((m) => () => lazySample(ctx, img, w, m).then((s) => [s]))),
          ...modes.parallel.map((m) => () => parallelSample(ctx, img, img.workloads, m)),
        ]),
      );
      log(`iteration ${it + 1}/${samples}: ${tasks.length} cold samples`);
      for (const task of tasks) {
        file.samples.push(...(await task()).map((s) => ({ ...s, build })));
        addModel(file.samples, profile);
        save();
      }
    }
  } finally {
    file.finishedAt = new Date().toISOString();
    save();
    await proxy.close();
  }
}

async function main(): Promise<void> {
  if (flags.report) return report();
  if (process.getuid?.() !== 0) throw new Error('the time-to-ready benchmark needs root (containerd, runc, FUSE)');
  const profiles = (arg('profile') ?? 'p0').split(',').map((id) => {
    const p = PROFILES[id as ShapeProfile['id']];
    if (!p) throw new Error(`unknown profile ${id} (known: ${Object.keys(PROFILES).join(', ')})`);
    return p;
  });
  const samples = Number(arg('samples') ?? '5');
  const modes = parseModes(arg('modes') ?? ALL_MODES.join(','));
  if ([...modes.lazy, ...modes.parallel].some((m) => m.startsWith('aws')) && !existsSync(AWS_SNAPSHOTTER))
    throw new Error(`the aws modes need AWS's snapshotter at ${AWS_SNAPSHOTTER} (bash scripts/install-test-tools.sh builds it)`);
  if (!existsSync(join(CONTAINERD2_BIN, 'containerd')))
    throw new Error(`containerd 2.2 missing in ${CONTAINERD2_BIN} (bash scripts/install-test-tools.sh builds it)`);
  const names = (arg('images')?.split(',') ?? IMAGE_NAMES) as ImageName[];
  for (const n of names) if (!IMAGE_NAMES.includes(n)) throw new Error(`unknown image ${n} (known: ${IMAGE_NAMES.join(', ')})`);
  mkdirSync(resultsDir, { recursive: true });
  console.log('building the product (tsc) and the images …');
  await exec('npx', ['tsc', '-p', 'tsconfig.build.json']);
  const images: BenchImage[] = [];
  for (const n of names) images.push(await buildBenchImage(n, work));
  const cleanups: Array<() => unknown> = [];
  const storageDir = join(work, 'ttr-registry');
  mkdirSync(storageDir, { recursive: true });
  const reg = await startRegistry({ after: (fn) => void cleanups.push(fn) }, { storageDir });
  try {
    await prepare(
      reg.host,
      images,
      modes.lazy.some((m) => m.endsWith('replay')),
      (m) => console.log(m),
    );
    for (const p of profiles) await runProfile(p, images, modes, samples, reg.host);
  } finally {
    for (const f of cleanups.reverse())
      await Promise.resolve()
        .then(f)
        .catch(() => undefined);
  }
  report();
}

main().then(
  () => process.exit(0),
  (e: Error) => {
    console.error(`bench: ${e.message}`);
    process.exit(1);
  },
);

/** The code being measured, so a results file mixing runs says which code each sample measured. */
async function currentBuild(): Promise<string> {
  try {
    // The last commit that changed the product code: later bench- or doc-only commits measure the same thing.
    const head = (await exec('git', ['log', '-1', '--format=%h', '--', 'src'])).stdout.trim();
    const dirty = (await exec('git', ['status', '--porcelain', '--', 'src'])).stdout.trim() !== '';
    return dirty ? `${head}-dirty` : head;
  } catch {
    return 'unknown';
  }
}
