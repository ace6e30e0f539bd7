/**
 * A whole image as a read-only tree: each layer with a zTOC is mounted lazily over FUSE, the others
 * are downloaded, verified and unpacked into directories; a read-only overlayfs (or a read-only bind
 * mount for a single layer) joins them on the target. `planImage` says, per layer, lazy or why not.
 *
 * The target is visible to every user of the host, so it is mounted nosuid,nodev unless the caller
 * opts in (allowSuid / allowDev): an image's setuid-root binaries and device nodes must not become
 * a way for an unprivileged user to gain root. The layer FUSE mounts are always nosuid,nodev, and the
 * unpacked layers sit in a root-only (0700) directory.
 */
import { chmod, mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { SociError, isSociError } from '../errors.js';
import { mountPointsUnder, readMountinfo, sh, umount, umountPath } from '../host/index.js';
import { layerCompression } from '../oci/media-types.js';
import type { Descriptor } from '../oci/types.js';
import type { RegistryClient } from '../registry/index.js';
import { mountLayer, unpackLayer, type LayerMount, type LayerMountOptions, type SpanCache } from '../fs/index.js';
import { fetchSociArtifacts, type FindSociIndexOptions, type SociArtifacts } from './discovery.js';
import type { Logger } from '../logger.js';
import type { ConnectionKeeper, KeptConnection } from '../fuse/index.js';

export interface LayerPlan {
  index: number;
  digest: string;
  mediaType: string;
  size: number;
  lazy: boolean;
  /** why the layer is (not) lazy */
  reason: string;
}

export interface ImagePlan {
  layers: LayerPlan[];
  artifacts: SociArtifacts | null;
  /** set when no index could be used */
  indexError?: string;
}

export async function planImage(
  client: RegistryClient,
  repo: string,
  manifestDigest: string,
  layers: Descriptor[],
  discovery: FindSociIndexOptions,
): Promise<ImagePlan> {
  let artifacts: SociArtifacts | null = null;
  let indexError: string | undefined;
  try {
    artifacts = await fetchSociArtifacts(client, repo, manifestDigest, discovery);
  } catch (e) {
    if (!isSociError(e, 'ERR_NO_INDEX')) throw e;
    indexError = e.message;
  }
  const plans = layers.map((l, index): LayerPlan => {
    const base = { index, digest: l.digest, mediaType: l.mediaType, size: l.size };
    const comp = layerCompression(l.mediaType);
    if (!artifacts) return { ...base, lazy: false, reason: `no SOCI index (${indexError ?? 'not found'})` };
    if (comp === 'zstd') return { ...base, lazy: false, reason: 'zstd layer (SOCI indexes gzip and uncompressed layers only)' };
    if (comp !== 'gzip' && comp !== 'uncompressed') return { ...base, lazy: false, reason: `unsupported layer media type ${l.mediaType}` };
    if (!artifacts.ztocs.has(l.digest)) return { ...base, lazy: false, reason: 'not in the SOCI index (below the min layer size when indexed, or skipped)' };
    return { ...base, lazy: true, reason: `zTOC ${artifacts.ztocs.get(l.digest)!.desc.digest}` };
  });
  return { layers: plans, artifacts, ...(indexError ? { indexError } : {}) };
}

export interface MountImageParams {
  client: RegistryClient;
  repo: string;
  plan: ImagePlan;
  /** where the merged tree appears (an existing dir) */
  target: string;
  /** private dir for layer mountpoints and unpacked layers */
  workDir: string;
  cache: SpanCache;
  layerOptions?: LayerMountOptions;
  /** resolve prefetch artifacts at mount (default false, like `[prefetch] enable`) */
  prefetch?: boolean;
  /** honour setuid/setgid bits on the target (default false: nosuid) */
  allowSuid?: boolean;
  /** allow opening device nodes through the target (default false: nodev) */
  allowDev?: boolean;
  /** every read of a file from a lazy layer: path and byte range (prefetch recording) */
  onRead?: (layer: string, path: string, offset: number, length: number) => void;
  logger?: Logger;
  /**
   * Keeps each lazy layer's FUSE connection outside this process (a holder process, or systemd's
   * fd store), so that the tree outlives it; released when the tree is unmounted.
   */
  keeper?: ConnectionKeeper;
  /**
   * The tree a previous process mounted on `target` from the same plan, still mounted: its kept
   * connections by layer dir. They are served again, and the unpacked layers and the overlay are
   * left as they are.
   */
  takeOver?: Map<string, KeptConnection>;
}

/** The per-mount flags of the merged target: always ro; nosuid and nodev unless allowed. */
export function targetMountFlags(o: { allowSuid?: boolean; allowDev?: boolean }): string[] {
  return ['ro', ...(o.allowSuid ? [] : ['nosuid']), ...(o.allowDev ? [] : ['nodev'])];
}

/** FUSE mount options that would lift the layer mounts' nosuid/nodev/ro are dropped. */
function safeFuseOptions(o: LayerMountOptions | undefined): LayerMountOptions {
  const mo = o?.fuse?.mountOptions;
  if (!o || !mo) return o ?? {};
  return { ...o, fuse: { ...o.fuse, mountOptions: mo.filter((x) => !/^(suid|dev|rw)$/.test(x.trim())) } };
}

export interface ImageMount {
  readonly target: string;
  readonly layers: Array<{ plan: LayerPlan; dir: string; mount?: LayerMount }>;
  unmount(): Promise<void>;
}

export async function mountImage(p: MountImageParams): Promise<ImageMount> {
  const layers: ImageMount['layers'] = [];
  const layersDir = join(p.workDir, 'layers');
  let merged = false;
  const unmountAll = async () => {
    if (merged) {
      await umountPath(p.target);
      merged = false;
    }
    for (const l of [...layers].reverse()) {
      if (!l.mount) continue;
      await l.mount.unmount();
      await p.keeper?.release(l.dir);
    }
  };
  try {
    // Unpacked layers keep their setuid bits and device nodes: only root may reach them.
    await mkdir(layersDir, { recursive: true, mode: 0o700 });
    await chmod(layersDir, 0o700);
    const layerOptions = safeFuseOptions(p.layerOptions);
    for (const plan of p.plan.layers) {
      const dir = join(layersDir, String(plan.index));
      if (p.takeOver && !plan.lazy) {
        layers.push({ plan, dir }); // unpacked by the previous process, before it mounted the tree
        continue;
      }
      const kept = p.takeOver?.get(dir);
      if (p.takeOver && !kept) throw new SociError('ERR_NOT_FOUND', `layer ${plan.index}: no kept FUSE connection to take over at ${dir}`);
      if (!kept) {
        await removeUnmounted(dir);
        await mkdir(dir, { recursive: true });
      }
      if (plan.lazy) {
        const z = p.plan.artifacts!.ztocs.get(plan.digest)!;
        const prefetch = p.prefetch ? p.plan.artifacts!.prefetch.get(plan.digest) : undefined;
        const unusable = p.prefetch ? p.plan.artifacts!.prefetchErrors.get(plan.digest) : undefined;
        if (unusable) p.logger?.warn({ layer: plan.digest, error: unusable }, 'prefetch skipped, reads fetch on demand');
        const mount = await mountLayer({
          ...(kept ? { resume: { fd: p.keeper!.take(kept), kernel: kept.kernel } } : {}),
          // stable across processes: a takeover finds the spans cached before it
          cacheKey: `${plan.index}-${plan.digest}`,
          ztoc: z.ztoc,
          ztocDesc: z.desc,
          layer: { mediaType: plan.mediaType, digest: plan.digest, size: plan.size },
          blob: p.client.blobSource(p.repo, plan.digest, plan.size),
          mountpoint: dir,
          cache: p.cache,
          options: {
            ...layerOptions,
            ...(prefetch ? { prefetch } : {}),
            ...(p.onRead ? { onRead: (path: string, offset: number, length: number) => p.onRead!(plan.digest, path, offset, length) } : {}),
          },
        });
        layers.push({ plan, dir, mount });
        if (!kept && p.keeper) {
          await p.keeper
            .keep(mount.server)
            .catch((e: unknown) => p.logger?.warn({ dir, error: String(e) }, 'FUSE connection not kept: the tree will not outlive this process'));
        }
      } else {
        const comp = layerCompression(plan.mediaType);
        if (comp !== 'gzip' && comp !== 'uncompressed' && comp !== 'zstd')
          throw new SociError('ERR_UNSUPPORTED', `layer ${plan.digest} has unsupported media type ${plan.mediaType}`);
        // fetchBlob verifies the digest at the end and throws before the layer is ever exposed.
        try {
          await unpackLayer(p.client.fetchBlob(p.repo, plan.digest, { size: plan.size }), comp, dir);
        } catch (e) {
          if (e instanceof SociError)
            throw new SociError(e.code, `layer ${plan.index}${e.message.includes(plan.digest) ? '' : ` (${plan.digest})`}: ${e.message}`, { cause: e });
          throw e;
        }
        layers.push({ plan, dir });
        p.logger?.info({ digest: plan.digest, reason: plan.reason }, 'layer unpacked');
      }
    }
    if (layers.length === 0) throw new SociError('ERR_INVALID_MANIFEST', 'image has no layers');
    // The layers' prefetches ran concurrently with the mounts that followed; ready means fetched.
    await Promise.all(layers.map((l) => l.mount?.prefetched));
    const flags = targetMountFlags(p);
    if (p.takeOver) merged = true;
    else if (layers.length === 1) {
      // mount(8) binds, then remounts the bind with the flags (a bind takes no flags of its own).
      await sh('mount', ['--bind', '-o', flags.join(','), layers[0]!.dir, p.target]);
      merged = true;
    } else {
      const lower = [...layers]
        .reverse()
        .map((l) => l.dir)
        .join(':');
      await sh('mount', ['-t', 'overlay', 'overlay', '-o', `${flags.join(',')},lowerdir=${lower}`, p.target]);
      merged = true;
    }
    await checkTargetFlags(p.target, flags);
  } catch (e) {
    await unmountAll().catch(() => undefined);
    // Nothing half-written stays behind: the unpacked layers go with the failed mount.
    await removeUnmounted(layersDir).catch(() => undefined);
    throw e;
  }
  return {
    target: p.target,
    layers,
    unmount: async () => {
      await unmountAll();
      await removeUnmounted(layersDir).catch((e: Error) => p.logger?.warn({ dir: layersDir, error: e.message }, 'cleanup failed'));
    },
  };
}

/** Removes `dir` unless something is still mounted in it (never deletes through a mount). */
async function removeUnmounted(dir: string): Promise<void> {
  const left = await mountPointsUnder(dir);
  if (left.length) throw new SociError('ERR_IO', `${left[0]} is still mounted; not removing ${dir}`);
  await rm(dir, { recursive: true, force: true });
}

/** The target's per-mount options must carry every flag asked for; otherwise it is taken down. */
async function checkTargetFlags(target: string, flags: string[]): Promise<void> {
  const m = (await readMountinfo()).filter((x) => x.mountpoint === target).pop();
  const have = new Set((m?.options ?? '').split(','));
  const missing = flags.filter((f) => !have.has(f));
  if (!m || missing.length) throw new SociError('ERR_IO', `mount on ${target} lacks ${missing.join(',') || 'an entry in mountinfo'}`);
}

/** Removes the unpacked layers of `workDir` (after a crash: once `soci umount` took the mounts down). */
export async function removeLayerDirs(workDir: string): Promise<void> {
  await removeUnmounted(join(workDir, 'layers'));
}

/** Last resort (a mount cut short by a crash): lazily unmounts whatever is left under `workDir`'s layers, then removes them. */
export async function releaseLayers(workDir: string): Promise<void> {
  const dir = join(workDir, 'layers');
  for (const m of await mountPointsUnder(dir)) await umount(m, true);
  await removeUnmounted(dir);
}
