/**
 * Builds a SOCI index (v1 or v2) for one platform-specific image manifest.
 * The layer bytes come from any BlobReader (layout, registry, store); every layer is digest-checked
 * while it is indexed, so a zTOC is never built from wrong bytes.
 */
import { runBounded } from '../concurrency.js';
import { digestOf } from '../oci/digest.js';
import { createHash } from 'node:crypto';
import { SociError } from '../errors.js';
import { ANN, EMPTY_CONFIG, MT, layerCompression } from '../oci/media-types.js';
import { encodeManifest, type Descriptor, type Manifest } from '../oci/types.js';
import { BUILD_TOOL_IDENTIFIER } from '../version.js';
import { unmarshalZtoc } from '../ztoc/index.js';
import { buildPrefetchArtifacts, type PrefetchTarget } from './prefetch.js';
import type { SpanRange } from '../ztoc/index.js';
import { buildZtocBytes, summarize, type ZtocBuild } from './ztoc-worker.js';
import { type Logger, silentLogger } from '../logger.js';

export const DEFAULT_SPAN_SIZE = 4 * 1024 * 1024;
export const DEFAULT_MIN_LAYER_SIZE = 10 * 1024 * 1024;

export type IndexVersion = 'v1' | 'v2';

export interface ZtocCache {
  /** an existing zTOC for this layer and span size, or undefined */
  find(layerDigest: string, spanSize: number): Promise<{ desc: Descriptor; bytes: Buffer } | undefined>;
}

export interface BuildOptions {
  version: IndexVersion;
  spanSize?: number;
  minLayerSize?: number;
  /** `--optimizations xattr` */
  optimizations?: string[];
  /** files (or byte ranges of them) whose spans get prefetch artifacts */
  prefetchFiles?: PrefetchTarget[];
  /** 'read': the artifacts list spans in the order of prefetchFiles (a prefetch record); default: merged and sorted, as AWS's */
  prefetchOrder?: 'offset' | 'read';
  force?: boolean;
  /**
   * Layers indexed at once. Default: 2 worker threads for sources that stream from a network (the
   * download overlaps indexing on both cores); 1 layer at a time in-process for local layouts, where
   * there is nothing to overlap and peak memory matters more (one TOC in memory at a time).
   */
  concurrency?: number;
  /** one info line per layer (AWS's `soci create` output), warnings for skipped layers */
  log?: Logger;
  /** progress callback: bytes of a layer consumed so far */
  onProgress?: (layerDigest: string, bytes: number, total: number) => void;
}

export interface LayerSource {
  openBlob(digest: string): AsyncIterable<Buffer>;
  /** true when openBlob itself fails on bytes that do not match the digest (registry client) */
  readonly verifiesBlobs?: boolean;
}

export interface BuiltIndex {
  /** the index manifest (Go-canonical JSON) and its descriptor */
  manifest: Manifest;
  bytes: Buffer;
  desc: Descriptor;
  /** new or reused zTOC and prefetch blobs, in index order */
  blobs: Array<{ desc: Descriptor; bytes: Buffer; reused: boolean; layer: Descriptor }>;
}

export async function buildSociIndex(
  image: { manifest: Manifest; desc: Descriptor },
  source: LayerSource,
  cache: ZtocCache | undefined,
  opts: BuildOptions,
): Promise<BuiltIndex> {
  const spanSize = opts.spanSize ?? DEFAULT_SPAN_SIZE;
  const minLayerSize = opts.minLayerSize ?? DEFAULT_MIN_LAYER_SIZE;
  validateSizes(spanSize, minLayerSize);
  const log = opts.log ?? silentLogger;
  const optimizations = new Set(opts.optimizations ?? []);
  for (const o of optimizations) if (o !== 'xattr') throw new SociError('ERR_USAGE', `unknown optimization "${o}": valid values are [xattr]`);

  const layers = image.manifest.layers;
  // Per layer only what the index needs (never the TOC model: it can be 100+ MB for big layers).
  type Built = { desc: Descriptor; bytes: Buffer; reused: boolean; layer: Descriptor; needsXattrs: boolean; hits: Map<string, SpanRange[]> };
  const results: Array<Built | null> = new Array(layers.length).fill(null);
  const prefetchFiles = opts.prefetchFiles ?? [];

  const work = async (i: number) => {
    const layer = layers[i]!;
    if (layer.mediaType === MT.sociPrefetch) return;
    const comp = layerCompression(layer.mediaType);
    if (comp === null) throw new SociError('ERR_UNSUPPORTED', `layer ${layer.digest} has media type ${layer.mediaType}, which is not an image layer`);
    if (layer.size < minLayerSize) {
      log.info(
        { layer: layer.digest, skipped: 'min-layer-size' },
        `ztoc skipped - layer ${layer.digest} (${layer.mediaType}) size ${layer.size} is less than min-layer-size ${minLayerSize}`,
      );
      return;
    }
    if (comp !== 'gzip' && comp !== 'uncompressed') {
      log.info({ layer: layer.digest, skipped: 'format' }, `ztoc skipped - layer ${layer.digest} (${layer.mediaType}) has unsupported format ${comp}`);
      return;
    }
    if (!opts.force && cache) {
      const hit = await cache.find(layer.digest, spanSize);
      if (hit) {
        log.info({ layer: layer.digest, ztoc: hit.desc.digest }, `layer ${layer.digest} -> ztoc ${hit.desc.digest} (already exists)`);
        const s = summarize(unmarshalZtoc(hit.bytes), prefetchFiles);
        results[i] = { ...hit, reused: true, layer, needsXattrs: s.needsXattrs, hits: s.hits };
        return;
      }
    }
    let built: ZtocBuild;
    try {
      built = await buildZtocBytes(
        verified(source.openBlob(layer.digest), layer, opts.onProgress, !source.verifiesBlobs),
        { compression: comp, spanSize, prefetchFiles },
        (opts.concurrency ?? (source.verifiesBlobs ? 2 : 1)) > 1,
      );
    } catch (e) {
      // Name the layer: a corrupt byte or a wrong download must be traceable to its blob.
      if (e instanceof SociError && !e.message.includes(layer.digest)) throw new SociError(e.code, `layer ${layer.digest}: ${e.message}`, { cause: e });
      throw e;
    }
    if (built.compressedArchiveSize !== layer.size) {
      throw new SociError('ERR_DIGEST_MISMATCH', `layer ${layer.digest}: read ${built.compressedArchiveSize} bytes, descriptor says ${layer.size}`);
    }
    const bytes = built.bytes;
    const digest = digestOf(bytes);
    const desc = { mediaType: MT.ztoc, digest, size: bytes.length };
    log.info({ layer: layer.digest, ztoc: digest }, `layer ${layer.digest} -> ztoc ${digest}`);
    results[i] = { desc, bytes, reused: false, layer, needsXattrs: built.needsXattrs, hits: built.hits };
  };
  await runBounded(layers.length, opts.concurrency ?? (source.verifiesBlobs ? 2 : 1), work);

  const built = results.filter((r): r is NonNullable<typeof r> => r !== null);
  if (built.length === 0) throw new SociError('ERR_EMPTY_INDEX', 'no ztocs created, all layers either skipped or produced errors');

  const blobs: BuiltIndex['blobs'] = [];
  const indexLayers: Descriptor[] = [];
  for (const r of built) {
    const annotations: Record<string, string> = {
      [ANN.layerDigest]: r.layer.digest,
      [ANN.layerMediaType]: r.layer.mediaType,
      [ANN.spanSize]: String(spanSize),
    };
    if (optimizations.has('xattr') && !r.needsXattrs) annotations[ANN.disableXattrs] = 'true';
    const desc = { ...r.desc, annotations };
    indexLayers.push(desc);
    blobs.push({ desc, bytes: r.bytes, reused: r.reused, layer: r.layer });
  }
  if (opts.prefetchFiles?.length) {
    for (const p of buildPrefetchArtifacts(
      built.map((r) => ({ layer: r.layer, hits: r.hits })),
      opts.prefetchFiles,
      layers,
      log,
      opts.prefetchOrder ?? 'offset',
    )) {
      indexLayers.push(p.desc);
      blobs.push({ desc: p.desc, bytes: p.bytes, reused: false, layer: p.layer });
      log.info({ layer: p.layer.digest, prefetch: p.desc.digest }, `Created prefetch artifact for layer ${p.layer.digest}: ${p.desc.digest}`);
    }
  }
  const manifest: Manifest = {
    schemaVersion: 2,
    mediaType: MT.ociManifest,
    config: { mediaType: opts.version === 'v1' ? MT.sociIndexV1 : MT.sociIndexV2, digest: EMPTY_CONFIG.digest, size: EMPTY_CONFIG.size },
    layers: indexLayers,
    annotations: { [ANN.buildTool]: BUILD_TOOL_IDENTIFIER },
  };
  if (opts.version === 'v1') manifest.subject = { mediaType: image.desc.mediaType, digest: image.desc.digest, size: image.desc.size };
  const bytes = encodeManifest(manifest);
  const desc = { mediaType: MT.ociManifest, digest: digestOf(bytes), size: bytes.length };
  return { manifest, bytes, desc, blobs };
}

export function validateSizes(spanSize: number, minLayerSize: number): void {
  if (!Number.isSafeInteger(spanSize) || spanSize < 0) throw new SociError('ERR_USAGE', 'span size must be >= 0');
  if (!Number.isSafeInteger(minLayerSize) || minLayerSize < 0) throw new SociError('ERR_USAGE', 'min layer size must be >= 0');
}

/**
 * Passes the layer through while checking its size and (unless the source already does) its sha256;
 * errors at the end on mismatch, before the zTOC is used.
 */
async function* verified(src: AsyncIterable<Buffer>, layer: Descriptor, onProgress: BuildOptions['onProgress'], hash: boolean): AsyncIterable<Buffer> {
  const h = hash ? createHash('sha256') : null;
  let n = 0;
  for await (const chunk of src) {
    h?.update(chunk);
    n += chunk.length;
    onProgress?.(layer.digest, n, layer.size);
    yield chunk;
  }
  const got = h ? `sha256:${h.digest('hex')}` : layer.digest;
  if (got !== layer.digest || n !== layer.size) {
    throw new SociError('ERR_DIGEST_MISMATCH', `layer ${layer.digest} content does not match its descriptor (got ${got}, ${n} bytes)`);
  }
}
