/**
 * A whole image as a read-only tree: each layer with a zTOC is mounted lazily over FUSE, the others
 * are downloaded, verified and unpacked into directories; a read-only overlayfs (or a read-only bind
 * mount for a single layer) joins them on the target. `planImage` says, per layer, lazy or why not.
 */
import { execFile } from 'node:child_process';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { SociError, isSociError } from '../errors.js';
import { layerCompression } from '../oci/media-types.js';
import type { Descriptor } from '../oci/types.js';
import type { RegistryClient } from '../registry/index.js';
import { fetchSociArtifacts, type FindSociIndexOptions, type SociArtifacts } from '../soci/discovery.js';
import { mountLayer, type LayerMount, type LayerMountOptions } from './mount-layer.js';
import type { SpanCache } from './span-cache.js';
import { unpackLayer } from './unpack.js';

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

export async function planImage(client: RegistryClient, repo: string, manifestDigest: string, layers: Descriptor[], discovery: FindSociIndexOptions): Promise<ImagePlan> {
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
  log?: (msg: string, fields?: Record<string, unknown>) => void;
}

export interface ImageMount {
  readonly target: string;
  readonly layers: Array<{ plan: LayerPlan; dir: string; mount?: LayerMount }>;
  unmount(): Promise<void>;
}

export async function mountImage(p: MountImageParams): Promise<ImageMount> {
  const layers: ImageMount['layers'] = [];
  let merged = false;
  const unmountAll = async () => {
    if (merged) {
      await umountPath(p.target);
      merged = false;
    }
    for (const l of [...layers].reverse()) await l.mount?.unmount();
  };
  try {
    for (const plan of p.plan.layers) {
      const dir = join(p.workDir, 'layers', String(plan.index));
      await rm(dir, { recursive: true, force: true });
      await mkdir(dir, { recursive: true });
      if (plan.lazy) {
        const z = p.plan.artifacts!.ztocs.get(plan.digest)!;
        const prefetch = p.prefetch ? p.plan.artifacts!.prefetch.get(plan.digest) : undefined;
        const mount = await mountLayer({
          ztoc: z.ztoc,
          ztocDesc: z.desc,
          layer: { mediaType: plan.mediaType, digest: plan.digest, size: plan.size },
          blob: p.client.blobSource(p.repo, plan.digest, plan.size),
          mountpoint: dir,
          cache: p.cache,
          options: { ...p.layerOptions, ...(prefetch ? { prefetch } : {}) },
        });
        layers.push({ plan, dir, mount });
      } else {
        const comp = layerCompression(plan.mediaType);
        if (comp !== 'gzip' && comp !== 'uncompressed' && comp !== 'zstd') throw new SociError('ERR_UNSUPPORTED', `layer ${plan.digest} has unsupported media type ${plan.mediaType}`);
        // fetchBlob verifies the digest at the end and throws before the layer is ever exposed.
        await unpackLayer(p.client.fetchBlob(p.repo, plan.digest, { size: plan.size }), comp, dir);
        layers.push({ plan, dir });
        p.log?.('layer unpacked', { digest: plan.digest, reason: plan.reason });
      }
    }
    if (layers.length === 0) throw new SociError('ERR_INVALID_MANIFEST', 'image has no layers');
    if (layers.length === 1) {
      await sh('mount', ['--bind', layers[0]!.dir, p.target]);
      merged = true;
      await sh('mount', ['-o', 'remount,bind,ro', p.target]);
    } else {
      const lower = [...layers].reverse().map((l) => l.dir).join(':');
      await sh('mount', ['-t', 'overlay', 'overlay', '-o', `ro,lowerdir=${lower}`, p.target]);
      merged = true;
    }
  } catch (e) {
    await unmountAll().catch(() => undefined);
    throw e;
  }
  return { target: p.target, layers, unmount: unmountAll };
}

/** umount, falling back to a lazy umount when busy; a path that is not mounted is fine. */
export async function umountPath(path: string): Promise<void> {
  try {
    await sh('umount', [path]);
  } catch (e) {
    if (/not mounted|no mount point|not found/i.test((e as Error).message)) return;
    await sh('umount', ['-l', path]);
  }
}

/** Runs a command asynchronously (never blocks the loop that may be serving FUSE for it). */
export function sh(cmd: string, args: string[], timeoutMs = 60_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: timeoutMs }, (err, stdout, stderr) => {
      if (err) reject(new SociError('ERR_IO', `${cmd} ${args.join(' ')}: ${String(stderr).trim() || err.message}`));
      else resolve(String(stdout));
    });
  });
}
