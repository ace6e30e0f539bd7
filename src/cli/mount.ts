/**
 * `soci mount IMAGE_REF DIR` / `soci umount DIR`: an image from a registry as a read-only tree,
 * its SOCI-indexed layers lazily loaded over FUSE, the rest unpacked, joined by overlayfs.
 * Foreground by default (SIGINT/SIGTERM unmount everything); `--detach` re-runs itself as a
 * daemon and returns once the mount is ready; the state dir records the PID for `soci umount`.
 * Each lazy layer's FUSE connection is kept outside the process (fuse/keeper.ts): a `soci mount`
 * that is killed leaves its tree mounted and its readers waiting, and the same command run again
 * takes the tree over instead of mounting it anew.
 * The tree is nosuid,nodev unless `--allow-suid` / `--allow-dev`. A failure (registry, bad layer,
 * even an unexpected throw while serving) ends in one `soci: …` line, with everything unmounted and
 * the unpacked layers removed.
 */
import { Command } from 'commander';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, open, readFile, rm, rmdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { SociError, escapeControls } from '../errors.js';
import { isIndexType, isManifestType } from '../oci/media-types.js';
import { parsePlatform } from '../oci/platform.js';
import { manifestsFor, wantedPlatforms } from '../oci/select.js';
import { parseReference } from '../oci/reference.js';
import { decodeIndex, decodeManifest } from '../oci/types.js';
import { resolveRoot } from '../store/index.js';
import { BackgroundFetcher, FailureLog, SpanCache, DEFAULT_CACHE_MAX_BYTES, failureLine } from '../fs/index.js';
import { mountImage, planImage, releaseLayers, removeLayerDirs, type ImageMount, type ImagePlan } from '../image/mount.js';
import { isMountPoint, umountPath, writeFileAtomic } from '../host/index.js';
import { ConnectionKeeper, type KeptConnection } from '../fuse/index.js';
import { silentLogger } from '../logger.js';
import { PrefetchRecorder, encodeRecord } from '../image/prefetch-record.js';
import { parseSize } from './common.js';
import { globals } from './session.js';
import { addRegistryFlags, closeClients, registryClient, type RegistryFlags } from './registry-opts.js';

type MountFlags = RegistryFlags & {
  platform?: string;
  sociIndexDigest?: string;
  sociV1: boolean;
  stateDir?: string;
  cacheMaxBytes: number;
  backgroundFetch: boolean;
  backgroundFetchSilenceMs: number;
  fetchTimeoutMs: number;
  detach: boolean;
  explain: boolean;
  prefetch: boolean;
  allowSuid: boolean;
  allowDev: boolean;
  record?: string;
  recordQuietMs: number;
  recordMaxMs: number;
};

export interface MountState {
  pid: number;
  ready: boolean;
  target: string;
  image: string;
  manifest: string;
  layers: Array<{ digest: string; lazy: boolean; reason: string; dir: string }>;
}

const CHILD_ENV = 'SOCI_MOUNT_DAEMON';

function defaultStateDir(root: string, target: string): string {
  return join(root, 'mounts', createHash('sha256').update(resolve(target)).digest('hex').slice(0, 16));
}

export function mountCommand(): Command {
  return addRegistryFlags(new Command('mount'))
    .description('mount an image read-only, lazily loading its SOCI-indexed layers over FUSE (needs root)')
    .argument('<image_ref>', 'image reference in a registry')
    .argument('<dir>', 'existing directory to mount on')
    .option('--platform <platform>', 'platform of a multi-platform image (default: this host)')
    .option('--soci-index-digest <digest>', 'use this SOCI index instead of discovering one')
    .option('--soci-v1', 'also discover SOCI v1 indexes through the referrers API', false)
    .option('--state-dir <dir>', 'where layer mounts, unpacked layers and the span cache live (default <root>/mounts/<id>)')
    .option('--cache-max-bytes <n>', 'span cache cap in bytes', parseSize('cache-max-bytes'), DEFAULT_CACHE_MAX_BYTES)
    .option('--no-background-fetch', 'do not fetch the remaining spans in the background')
    .option('--background-fetch-silence-ms <n>', 'quiet period before background fetching starts', parseSize('background-fetch-silence-ms'), 30_000)
    .option('--fetch-timeout-ms <n>', 'timeout of one span fetch', parseSize('fetch-timeout-ms'), 30_000)
    .option('--prefetch', 'resolve the index prefetch artifacts while mounting', false)
    .option('--detach', 'run in the background; stop with `soci umount DIR`', false)
    .option('--explain', 'print, per layer, whether it is lazily loaded and why not', false)
    .option('--allow-suid', 'honour setuid/setgid bits of the image (default: the mount is nosuid)', false)
    .option('--allow-dev', "allow opening the image's device nodes (default: the mount is nodev)", false)
    .option('--record <file>', 'write a prefetch record of the files read from lazy layers (for soci convert --prefetch-record)')
    .option('--record-quiet-ms <n>', 'the record ends this long after the last new file read', parseSize('record-quiet-ms'), 5000)
    .option('--record-max-ms <n>', 'and at the latest this long after the mount', parseSize('record-max-ms'), 60_000)
    .action(async (image: string, dir: string, o: MountFlags, cmd: Command) => {
      const root = resolveRoot(globals(cmd).root);
      const target = resolve(dir);
      const stateDir = resolve(o.stateDir ?? defaultStateDir(root, target));
      if (o.detach && process.env[CHILD_ENV] !== '1') return detach(stateDir);
      try {
        await runMount(image, target, stateDir, o, Boolean(globals(cmd).debug));
      } finally {
        await closeClients();
      }
    });
}

export function umountCommand(): Command {
  return new Command('umount')
    .description('unmount a tree mounted by `soci mount` and stop its daemon')
    .argument('<dir>', 'the mounted directory')
    .option('--state-dir <dir>', 'state dir given to `soci mount`')
    .action(async (dir: string, o: { stateDir?: string }, cmd: Command) => {
      const target = resolve(dir);
      const stateDir = resolve(o.stateDir ?? defaultStateDir(resolveRoot(globals(cmd).root), target));
      const state = await readState(stateDir);
      if (state && state.pid > 0 && alive(state.pid)) {
        process.kill(state.pid, 'SIGTERM');
        for (let i = 0; i < 150 && (await aliveAsync(state.pid)); i++) await sleep(100);
        if (await aliveAsync(state.pid)) process.kill(state.pid, 'SIGKILL');
      }
      // Whatever the daemon left behind (crash, SIGKILL): lazily unmount the tree and the layers,
      // then end what kept their FUSE connections (records of mounts that are gone are released).
      await umountPath(target);
      for (const l of state?.layers ?? []) if (l.lazy) await umountPath(l.dir).catch(() => undefined);
      if (!ConnectionKeeper.unavailable()) await new ConnectionKeeper(join(stateDir, 'fuse-connections')).live();
      if (state) {
        await removeLayerDirs(stateDir);
        await rm(join(stateDir, 'spancache'), { recursive: true, force: true });
        await rm(join(stateDir, 'state.json'), { force: true });
      }
    });
}

async function runMount(image: string, target: string, stateDir: string, o: MountFlags, debug: boolean): Promise<void> {
  const ref = parseReference(image);
  const client = registryClient(ref.registry, o, debug);
  const top = await client.getManifest(ref.repository, ref.reference());
  let manifestDigest = top.digest;
  let manifestBytes = top.bytes;
  if (isIndexType(top.mediaType)) {
    const images = decodeIndex(top.bytes).manifests.filter((d) => isManifestType(d.mediaType) && !d.artifactType);
    const { desc } = manifestsFor(images, wantedPlatforms(o.platform ? [parsePlatform(o.platform)] : []), `image ${image}`)[0]!;
    const m = await client.getManifest(ref.repository, desc.digest);
    manifestDigest = m.digest;
    manifestBytes = m.bytes;
  }
  const manifest = decodeManifest(manifestBytes, `manifest ${manifestDigest}`);
  const plan = await planImage(client, ref.repository, manifestDigest, manifest.layers, {
    v1: o.sociV1,
    ...(o.sociIndexDigest ? { explicitDigest: o.sociIndexDigest } : {}),
  });
  if (o.explain) printPlan(plan);

  const createdStateDir = (await mkdir(stateDir, { recursive: true, mode: 0o700 })) !== undefined;
  const keeper = ConnectionKeeper.unavailable() ? undefined : new ConnectionKeeper(join(stateDir, 'fuse-connections'));
  const previous = await readState(stateDir);
  const takeOver = keeper && previous ? await keptTree(previous, target, manifestDigest, keeper) : undefined;
  const cacheDir = join(stateDir, 'spancache');
  if (!takeOver) await rm(cacheDir, { recursive: true, force: true });
  const cache = new SpanCache({ dir: cacheDir, maxBytes: o.cacheMaxBytes });
  const bg = o.backgroundFetch ? new BackgroundFetcher({ silencePeriodMs: o.backgroundFetchSilenceMs }) : undefined;
  const recordFile = o.record ? resolve(o.record) : undefined;
  let recordWritten: Promise<void> = Promise.resolve();
  const recorder = recordFile
    ? new PrefetchRecorder({
        image,
        manifest: manifestDigest,
        quietMs: o.recordQuietMs,
        maxMs: o.recordMaxMs,
        onDone: (r) => {
          recordWritten = writeFileAtomic(recordFile, encodeRecord(r)).then(
            () => void process.stderr.write(`soci: prefetch record of ${r.files.length} files written to ${recordFile}\n`),
            (e: Error) => void process.stderr.write(`soci: cannot write the prefetch record ${recordFile}: ${e.message}\n`),
          );
        },
      })
    : undefined;
  let mounted: ImageMount | undefined;
  let dying = false;
  const cleanup = async () => {
    recorder?.finish();
    await recordWritten;
    bg?.stop();
    if (mounted) await mounted.unmount();
    else if (dying) await releaseLayers(stateDir); // cut short inside mountImage
    await rm(cacheDir, { recursive: true, force: true });
    await rm(join(stateDir, 'state.json'), { force: true });
    if (createdStateDir) await rmdir(stateDir).catch(() => undefined); // only if nothing else is in it
  };
  // While the tree is served, a throw nobody catches must still unmount it and end in one line.
  const fatal = (e: unknown) => {
    if (dying) return;
    dying = true;
    process.stderr.write(`soci: ${(e instanceof Error ? e.message : String(e)).split('\n')[0]}\n`);
    setTimeout(() => process.exit(1), 10_000).unref();
    cleanup().then(
      () => process.exit(1),
      () => process.exit(1),
    );
  };
  process.on('uncaughtException', fatal);
  process.on('unhandledRejection', fatal);
  // Each failed verification, registry error, deadline and zTOC lie: one line on stderr (the log
  // file with --detach), at most once a minute per layer and span or file.
  const failures = new FailureLog({ write: (f, n) => process.stderr.write(`soci: ${escapeControls(failureLine(f, n))}\n`) });
  let ok = false;
  try {
    mounted = await mountImage({
      client,
      repo: ref.repository,
      plan,
      target,
      workDir: stateDir,
      cache,
      prefetch: o.prefetch,
      allowSuid: o.allowSuid,
      allowDev: o.allowDev,
      logger: { ...silentLogger, warn: (f, m) => void process.stderr.write(`soci: ${m}: ${escapeControls(String(f.error ?? ''))}\n`) },
      ...(keeper ? { keeper } : {}),
      ...(takeOver ? { takeOver } : {}),
      ...(recorder ? { onRead: (layer: string, path: string, offset: number, length: number) => recorder.note(layer, path, offset, length) } : {}),
      layerOptions: { fetchTimeoutMs: o.fetchTimeoutMs, onFailure: (f) => failures.report(f), ...(bg ? { backgroundFetcher: bg } : {}) },
    });
    const state: MountState = {
      pid: process.pid,
      ready: true,
      target,
      image,
      manifest: manifestDigest,
      layers: mounted.layers.map((l) => ({ digest: l.plan.digest, lazy: l.plan.lazy, reason: l.plan.reason, dir: l.dir })),
    };
    const lazy = state.layers.filter((l) => l.lazy).length;
    // Said before the state is written: `--detach` returns what was said once the state is ready.
    if (takeOver) process.stdout.write(`took over ${image} on ${target} from pid ${previous!.pid} (${lazy} of ${state.layers.length} layers lazy)\n`);
    else process.stdout.write(`mounted ${image} on ${target} (${lazy} of ${state.layers.length} layers lazy)\n`);
    await writeState(stateDir, state);

    const keepAlive = setInterval(() => undefined, 1 << 30);
    await new Promise<void>((done) => {
      const stop = () => done();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
    clearInterval(keepAlive);
    ok = true;
  } finally {
    // A cleanup failure is reported only when it is the first thing that went wrong.
    await cleanup().catch((e: unknown) => {
      if (ok) throw e;
    });
    process.off('uncaughtException', fatal);
    process.off('unhandledRejection', fatal);
  }
}

/**
 * The tree a previous `soci mount` of the same image left on `target` when it died (SIGKILL, a
 * crash): still mounted, every lazy layer's connection kept. Its connections by layer dir, or
 * undefined when there is nothing to take over.
 */
async function keptTree(previous: MountState, target: string, manifest: string, keeper: ConnectionKeeper): Promise<Map<string, KeptConnection> | undefined> {
  if (previous.pid !== process.pid && (await aliveAsync(previous.pid))) {
    throw new SociError('ERR_USAGE', `${target} is already served by soci mount (pid ${previous.pid}); soci umount it first`);
  }
  if (previous.target !== target || previous.manifest !== manifest || !(await isMountPoint(target))) return undefined;
  const live = new Map((await keeper.live()).map((k) => [k.mountpoint, k]));
  const lazy = previous.layers.filter((l) => l.lazy);
  return lazy.length > 0 && lazy.every((l) => live.has(l.dir)) ? live : undefined;
}

function printPlan(plan: ImagePlan): void {
  if (plan.indexError) process.stdout.write(`index: none (${plan.indexError})\n`);
  else if (plan.artifacts) process.stdout.write(`index: ${plan.artifacts.index.desc.digest} (${plan.artifacts.index.version})\n`);
  for (const l of plan.layers) process.stdout.write(`layer ${l.index} ${l.digest} ${l.size} B: ${l.lazy ? 'lazy' : 'local'} - ${l.reason}\n`);
}

/** Re-runs this command as a daemon and returns when its mount is ready (or it failed). */
async function detach(stateDir: string): Promise<void> {
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  const logPath = join(stateDir, 'mount.log');
  const log = await open(logPath, 'w');
  const args = [...process.execArgv, ...process.argv.slice(1).filter((a) => a !== '--detach')];
  const child = spawn(process.execPath, args, { detached: true, stdio: ['ignore', log.fd, log.fd], env: { ...process.env, [CHILD_ENV]: '1' } });
  await log.close();
  let exited: number | null = null;
  child.on('exit', (code) => (exited = code ?? 1));
  child.unref();
  for (let i = 0; i < 6000; i++) {
    const s = await readState(stateDir);
    if (s?.ready && s.pid === child.pid) {
      process.stdout.write((await readFile(logPath, 'utf8').catch(() => '')) || `mounted (pid ${child.pid})\n`);
      return;
    }
    if (exited !== null) {
      // The daemon's own one-line error; anything else (a crash dump) is only pointed at.
      const text = (await readFile(logPath, 'utf8').catch(() => '')).trim();
      const line = text
        .split('\n')
        .filter((l) => l.startsWith('soci: '))
        .at(-1)
        ?.slice(6);
      throw new SociError('ERR_IO', line || `mount daemon exited with ${exited}; see ${logPath}`);
    }
    await sleep(100);
  }
  throw new SociError('ERR_TIMEOUT', `mount daemon (pid ${child.pid}) not ready after 10 minutes; see ${logPath}`);
}

async function readState(stateDir: string): Promise<MountState | null> {
  try {
    return JSON.parse(await readFile(join(stateDir, 'state.json'), 'utf8')) as MountState;
  } catch {
    return null;
  }
}

async function writeState(stateDir: string, s: MountState): Promise<void> {
  await writeFileAtomic(join(stateDir, 'state.json'), `${JSON.stringify(s, null, 2)}\n`);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Alive and not a zombie (a reaped-late daemon still answers kill -0). */
async function aliveAsync(pid: number): Promise<boolean> {
  try {
    const st = await readFile(`/proc/${pid}/status`, 'utf8');
    return !/^State:\s+Z/m.test(st);
  } catch {
    return false;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
