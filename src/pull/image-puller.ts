/**
 * Parallel pull and unpack for layers that are not lazily loaded, with the meaning AWS's
 * docs/parallel-mode.md gives its keys. containerd prepares an image's layers one by one, each
 * waiting for the last; on the first Prepare of an image, `image()` starts every layer from that
 * one to the top at once, each downloaded in chunks and unpacked into a staging dir of its own
 * (a lower layer in overlay form does not need its parents). Each Prepare then waits for its own
 * layer only and moves the staged entries into its snapshot dir; the layer whose Prepare started
 * the pull is unpacked straight into its snapshot dir. `layer()` is the same path for one layer
 * (a layer an index does not cover, beneath lazily loaded ones). The snapshot dir itself is kept
 * (only its contents and times change), so nothing beside it is touched.
 *
 * Bounds: downloads (chunk requests) per image and per daemon, unpacks per image and per daemon;
 * -1 (or 0) is unbounded. A staged layer nobody claims (containerd found it elsewhere, or the pull
 * was cancelled) is removed after STAGED_TTL_MS; the staging dir is emptied at start.
 */
import { randomBytes } from 'node:crypto';
import { lstat, mkdir, readdir, rename, rm, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { Semaphore } from '../concurrency.js';
import { SociError } from '../errors.js';
import { inheritImpliedDirs } from '../fs/implied-dirs.js';
import type { UnpackStats } from '../fs/unpack.js';
import { sh } from '../host/index.js';
import type { Logger } from '../logger.js';
import { digestHex } from '../oci/digest.js';
import { decodeManifest } from '../oci/types.js';
import type { RegistryClient } from '../registry/index.js';
import type { DecompressTools } from './decompressors.js';
import type { ChunkedDownload } from './chunked-download.js';
import { pullLayer, startDownload, type KeepBlob } from './layer-pull.js';

export interface ParallelPullSettings {
  maxConcurrentDownloads: number;
  maxConcurrentDownloadsPerImage: number;
  /** bytes per Range request; 0 = a whole layer per request */
  chunkSize: number;
  maxConcurrentUnpacks: number;
  maxConcurrentUnpacksPerImage: number;
  /** drop the compressed blob after its unpack instead of keeping it (ImagePullerOptions.keep) */
  discardUnpackedLayers: boolean;
  tools: DecompressTools;
}

export interface PullTarget {
  registry: string;
  repository: string;
  manifestDigest: string;
  layerDigest: string;
  /** the compressed size, when the caller knows it: the download then starts before the manifest is read */
  size?: number;
  /** containerd's namespace of the pull (where a kept blob goes) */
  namespace?: string;
}

/** How long an unclaimed staged layer is kept. */
const STAGED_TTL_MS = 10 * 60 * 1000;

interface ImageMeta {
  layers: Array<{ digest: string; size: number; mediaType: string }>;
  diffIds: string[];
}

interface Staged {
  dir: string;
  /** unpacked straight into the snapshot dir: nothing to move, and the caller cleans it on failure */
  direct: boolean;
  done: Promise<UnpackStats>;
  timer?: NodeJS.Timeout;
}

interface ImageJob {
  meta: Promise<ImageMeta>;
  downloads: Semaphore;
  unpacks: Semaphore;
  /** staged layers not claimed yet, by layer digest */
  staged: Map<string, Staged>;
  /** layer pulls running for this image */
  running: number;
}

export interface ImagePullerOptions {
  /** where layers are unpacked before a Prepare claims them (same filesystem as the snapshots) */
  stagingDir: string;
  /** an OCI layout (`blobs/sha256`, `ingest`) for kept blobs and downloads in progress */
  contentDir: string;
  clientFor: (registry: string) => RegistryClient;
  logger: Logger;
  settings: ParallelPullSettings;
  /**
   * Where a blob goes when `discardUnpackedLayers` is false (the daemon: containerd's content store,
   * in the pull's namespace); without it, `contentDir`'s `blobs/sha256`.
   */
  keep?: (file: string, layer: { digest: string; size: number; mediaType: string }, namespace: string | undefined) => Promise<void>;
}

export class ImagePuller {
  private readonly jobs = new Map<string, ImageJob>();
  private readonly downloads: Semaphore;
  private readonly unpacks: Semaphore;

  private constructor(private readonly o: ImagePullerOptions) {
    this.downloads = new Semaphore(o.settings.maxConcurrentDownloads);
    this.unpacks = new Semaphore(o.settings.maxConcurrentUnpacks);
  }

  static async open(o: ImagePullerOptions): Promise<ImagePuller> {
    await rm(o.stagingDir, { recursive: true, force: true });
    await mkdir(o.stagingDir, { recursive: true, mode: 0o700 });
    await mkdir(join(o.contentDir, 'blobs', 'sha256'), { recursive: true, mode: 0o700 });
    await mkdir(join(o.contentDir, 'ingest'), { recursive: true, mode: 0o700 });
    return new ImagePuller(o);
  }

  /**
   * Pulls `t`'s layer and the image's layers above it at once; resolves when `t`'s layer is in
   * `dir`. `parents`: the layer's parent snapshot dirs, nearest first (see inheritImpliedDirs).
   */
  async image(t: PullTarget, dir: string, parents: readonly string[] = []): Promise<void> {
    const job = this.job(t);
    try {
      const early = job.staged.has(t.layerDigest) ? undefined : this.earlyDownload(t, job);
      const { meta, i } = await this.find(t, job, early);
      if (!job.staged.has(t.layerDigest)) {
        for (let j = i; j < meta.layers.length; j++) {
          const d = meta.layers[j]!.digest;
          if (!job.staged.has(d)) job.staged.set(d, j === i ? this.stage(t, job, meta, j, early, dir) : this.stage(t, job, meta, j));
        }
      } else await early?.download.discard();
      const staged = job.staged.get(t.layerDigest)!;
      job.staged.delete(t.layerDigest);
      clearTimeout(staged.timer);
      await this.claim(staged, dir, parents);
    } finally {
      this.release(t.manifestDigest, job); // failed or not
    }
  }

  /** Pulls one layer of the image into `dir`, with the image's and the daemon's bounds. */
  async layer(t: PullTarget, dir: string, parents: readonly string[] = []): Promise<void> {
    const job = this.job(t);
    try {
      const early = this.earlyDownload(t, job);
      const { meta, i } = await this.find(t, job, early);
      await this.claim(this.stage(t, job, meta, i, early, dir), dir, parents);
    } finally {
      this.release(t.manifestDigest, job); // failed or not
    }
  }

  /**
   * The layer's download, started before the manifest and config are read (they are cached after
   * an image's first layer, but that first layer would wait two round trips for them).
   */
  private earlyDownload(t: PullTarget, job: ImageJob): { download: ChunkedDownload; file: string } | undefined {
    if (t.size === undefined || !Number.isSafeInteger(t.size) || t.size <= 0) return undefined;
    const file = this.downloadFile(t.layerDigest);
    const download = startDownload({
      client: this.o.clientFor(t.registry),
      repo: t.repository,
      layer: { digest: t.layerDigest, size: t.size, mediaType: '' },
      downloadFile: file,
      chunkSize: this.o.settings.chunkSize,
      downloads: [job.downloads, this.downloads],
    });
    return { download, file };
  }

  /** The image's metadata and the layer's index in it; an early download that does not fit is dropped. */
  private async find(t: PullTarget, job: ImageJob, early?: { download: ChunkedDownload }): Promise<{ meta: ImageMeta; i: number }> {
    let meta: ImageMeta;
    try {
      meta = await job.meta;
    } catch (e) {
      await early?.download.discard();
      throw e;
    }
    const i = meta.layers.findIndex((l) => l.digest === t.layerDigest);
    if (i < 0 || meta.layers[i]!.size !== t.size) await early?.download.discard();
    if (i < 0) throw new SociError('ERR_NOT_FOUND', `layer ${t.layerDigest} is not in manifest ${t.manifestDigest}`);
    if (early && meta.layers[i]!.size !== t.size)
      throw new SociError('ERR_INVALID_MANIFEST', `layer ${t.layerDigest}: size label ${t.size} is not the manifest's ${meta.layers[i]!.size}`);
    return { meta, i };
  }

  private downloadFile(digest: string): string {
    return join(this.o.contentDir, 'ingest', `${digestHex(digest)}-${randomBytes(4).toString('hex')}`);
  }

  private job(t: PullTarget): ImageJob {
    let job = this.jobs.get(t.manifestDigest);
    if (!job) {
      const s = this.o.settings;
      job = {
        meta: this.fetchMeta(t),
        downloads: new Semaphore(s.maxConcurrentDownloadsPerImage),
        unpacks: new Semaphore(s.maxConcurrentUnpacksPerImage),
        staged: new Map(),
        running: 0,
      };
      const j = job;
      job.meta.catch(() => {
        if (this.jobs.get(t.manifestDigest) === j) this.jobs.delete(t.manifestDigest); // a failure is not remembered
      });
      this.jobs.set(t.manifestDigest, job);
    }
    return job;
  }

  /** Forgets an image once nothing of it runs or waits to be claimed. */
  private release(manifestDigest: string, job: ImageJob): void {
    if (job.running === 0 && job.staged.size === 0 && this.jobs.get(manifestDigest) === job) this.jobs.delete(manifestDigest);
  }

  /** Starts pulling layer `i` into `into` (an empty dir), or else a fresh staging dir. */
  private stage(t: PullTarget, job: ImageJob, meta: ImageMeta, i: number, early?: { download: ChunkedDownload; file: string }, into?: string): Staged {
    const layer = meta.layers[i]!;
    const dir = into ?? join(this.o.stagingDir, randomBytes(8).toString('hex'));
    const diffId = meta.diffIds[i];
    const started = Date.now();
    job.running++;
    const done = (async () => {
      if (!diffId) {
        await early?.download.discard();
        throw new SociError('ERR_INVALID_MANIFEST', `image config has no diff_id for layer ${i}`);
      }
      if (!into) await mkdir(dir, { mode: 0o755 });
      const keep = this.o.settings.discardUnpackedLayers ? undefined : this.keeper(t.namespace);
      const stats = await pullLayer({
        client: this.o.clientFor(t.registry),
        repo: t.repository,
        layer,
        diffId,
        dir,
        downloadFile: early?.file ?? this.downloadFile(layer.digest),
        chunkSize: this.o.settings.chunkSize,
        downloads: [job.downloads, this.downloads],
        unpacks: [job.unpacks, this.unpacks],
        tools: this.o.settings.tools,
        ...(keep ? { keep } : {}),
        ...(early ? { download: early.download } : {}),
      });
      this.o.logger.info(
        { layer: layer.digest, entries: stats.entries, bytes: stats.bytes, requests: stats.requests, ms: Date.now() - started },
        'layer pulled and unpacked in parallel',
      );
      return stats;
    })();
    const staged: Staged = { dir, direct: into !== undefined, done };
    done
      .catch(async () => {
        if (!into) await rm(dir, { recursive: true, force: true });
      })
      .finally(() => {
        job.running--;
        // Claimed layers are gone from the map; one still there waits for a Prepare that may never come.
        if (job.staged.get(layer.digest) === staged) {
          staged.timer = setTimeout(() => {
            if (job.staged.get(layer.digest) !== staged) return;
            job.staged.delete(layer.digest);
            void rm(dir, { recursive: true, force: true });
            this.release(t.manifestDigest, job);
          }, STAGED_TTL_MS);
          staged.timer.unref();
        } else this.release(t.manifestDigest, job); // the claim that failed on it may have run first, with this pull still counted
      });
    return staged;
  }

  /**
   * Waits for a staged layer, moves its entries into `dir` (an empty directory) and gives its
   * implied dirs their parents' attributes.
   */
  private async claim(staged: Staged, dir: string, parents: readonly string[]): Promise<void> {
    let stats: UnpackStats;
    if (staged.direct) stats = await staged.done;
    else
      try {
        stats = await staged.done;
        await moveInto(staged.dir, dir, stats.rootOpaque);
      } finally {
        await rm(staged.dir, { recursive: true, force: true });
      }
    await inheritImpliedDirs(dir, stats.impliedDirs, parents);
  }

  /** How a verified blob of a pull in `namespace` is kept. */
  private keeper(namespace: string | undefined): KeepBlob {
    const keep = this.o.keep;
    if (keep)
      return async (file, layer) => {
        await keep(file, layer, namespace);
        return false;
      };
    return async (file, layer) => {
      await rename(file, join(this.o.contentDir, 'blobs', 'sha256', digestHex(layer.digest)));
      return true;
    };
  }

  /** The manifest's layers and the config's diff_ids, both digest-verified by the client. */
  private async fetchMeta(t: PullTarget): Promise<ImageMeta> {
    const client = this.o.clientFor(t.registry);
    const manifest = decodeManifest((await client.getManifest(t.repository, t.manifestDigest)).bytes);
    const chunks: Buffer[] = [];
    for await (const c of client.fetchBlob(t.repository, manifest.config.digest, { size: manifest.config.size })) chunks.push(c);
    let config: { rootfs?: { diff_ids?: string[] } };
    try {
      config = JSON.parse(Buffer.concat(chunks).toString('utf8')) as typeof config;
    } catch {
      throw new SociError('ERR_INVALID_MANIFEST', `image config ${manifest.config.digest} is not JSON`);
    }
    return { layers: manifest.layers, diffIds: config.rootfs?.diff_ids ?? [] };
  }
}

/**
 * Moves the entries of `from` into the empty dir `to`, then gives `to` what the layer can set on
 * its root: the times of `from` (a `./` entry) and, when the layer says so, the opaque marker.
 */
async function moveInto(from: string, to: string, rootOpaque: boolean): Promise<void> {
  for (const name of await readdir(from)) await rename(join(from, name), join(to, name));
  if (rootOpaque) await sh('setfattr', ['-h', '-n', 'trusted.overlay.opaque', '-v', 'y', to]);
  const st = await lstat(from);
  await utimes(to, st.atime, st.mtime);
}
