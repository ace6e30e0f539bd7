/**
 * `soci convert`: makes a SOCI-enabled (v2) image. Source-agnostic: blobs
 * are read through a BlobReader and new blobs handed to `put`, so the same code serves standalone
 * layouts and registry-to-registry conversion.
 */
import { digestOf } from '../oci/digest.js';
import { SociError } from '../errors.js';
import { ANN, MT, isIndexType, isManifestType } from '../oci/media-types.js';
import { configPlatform, manifestsFor } from '../oci/select.js';
import { hostPlatform, normalizePlatform, samePlatform, formatPlatform } from '../oci/platform.js';
import { decodeIndex, decodeManifest, encodeIndex, encodeManifest, type Descriptor, type ImageIndex, type Platform } from '../oci/types.js';
import { buildSociIndex, type BuildOptions, type BuiltIndex, type LayerSource, type ZtocCache } from './index-builder.js';
import { silentLogger } from '../logger.js';

export interface ConvertSource extends LayerSource {
  readBlob(digest: string): Promise<Buffer>;
  hasBlob(digest: string): Promise<boolean>;
}

export interface ConvertOptions extends Omit<BuildOptions, 'version'> {
  platforms?: Platform[];
  allPlatforms?: boolean;
}

export interface ConvertResult {
  /** the new OCI image index */
  desc: Descriptor;
  bytes: Buffer;
  /** every blob created (rewritten manifests, SOCI indexes, zTOCs, prefetch, `{}` config) */
  blobs: Map<string, Buffer>;
  /** per converted platform */
  indexes: Array<{ platform: Platform; manifest: Descriptor; index: BuiltIndex }>;
}

/** A manifest descriptor that is a SOCI index itself (never rebuilt or rewritten as an image). */
function isSociDescriptor(d: Descriptor): boolean {
  return d.artifactType === MT.sociIndexV2 || d.artifactType === MT.sociIndexV1;
}

export async function convertImage(root: Descriptor, src: ConvertSource, cache: ZtocCache | undefined, opts: ConvertOptions): Promise<ConvertResult> {
  const rootBytes = await src.readBlob(root.digest);
  const log = opts.log ?? silentLogger;
  let index: ImageIndex;
  let defaultPlatform = hostPlatform();
  if (isIndexType(root.mediaType)) {
    index = decodeIndex(rootBytes);
    index.mediaType = MT.ociIndex;
  } else if (isManifestType(root.mediaType)) {
    const p = await configPlatform(decodeManifest(rootBytes), (d) => src.readBlob(d));
    defaultPlatform = p;
    const target: Descriptor = { mediaType: root.mediaType, digest: root.digest, size: root.size, platform: p };
    if (root.annotations) target.annotations = root.annotations;
    index = { schemaVersion: 2, mediaType: MT.ociIndex, manifests: [target] };
  } else {
    throw new SociError('ERR_UNSUPPORTED', `cannot convert ${root.digest}: unsupported media type ${root.mediaType}`);
  }

  // Which image manifests to index, and the platform their SOCI descriptor carries: the manifest's own
  // with --all-platforms, else the requested platform as normalised (what AWS soci writes).
  const candidates = index.manifests.filter((d) => isManifestType(d.mediaType) && !isSociDescriptor(d));
  const selected = new Map<string, Platform>();
  if (opts.allPlatforms) {
    for (const d of candidates) selected.set(d.digest, d.platform ?? defaultPlatform);
  } else {
    const requested = opts.platforms?.length
      ? opts.platforms.map(normalizePlatform)
      : [isIndexType(root.mediaType) ? normalizePlatform(defaultPlatform) : defaultPlatform];
    for (const { desc, platform } of manifestsFor(candidates, dedupePlatforms(requested))) if (!selected.has(desc.digest)) selected.set(desc.digest, platform);
  }

  const blobs = new Map<string, Buffer>();
  const built = new Map<string, BuiltIndex>();
  const indexes: ConvertResult['indexes'] = [];
  for (const d of candidates.filter((c) => selected.has(c.digest))) {
    const manifest = decodeManifest(await src.readBlob(d.digest));
    try {
      const b = await buildSociIndex({ manifest, desc: d }, src, cache, { ...opts, version: 'v2' });
      built.set(d.digest, b);
    } catch (e) {
      if (e instanceof SociError && e.code === 'ERR_EMPTY_INDEX') {
        log.info({ manifest: d.digest }, `no SOCI index created for ${formatPlatform(selected.get(d.digest)!)}: all layers skipped`);
        continue;
      }
      throw e;
    }
  }
  if (built.size === 0) throw new SociError('ERR_EMPTY_INDEX', 'no SOCI indices created: all layers of every platform were skipped');

  // Rewrite every present image manifest to OCI media types; annotate those that got an index.
  const manifests: Descriptor[] = [];
  for (const d of index.manifests) {
    if (!isManifestType(d.mediaType) || isSociDescriptor(d) || !(built.has(d.digest) || (await src.hasBlob(d.digest)))) {
      manifests.push(d);
      continue;
    }
    const m = decodeManifest(await src.readBlob(d.digest));
    m.mediaType = MT.ociManifest;
    m.config = { ...m.config, mediaType: MT.ociConfig };
    const b = built.get(d.digest);
    if (b) m.annotations = { ...(m.annotations ?? {}), [ANN.indexDigest]: b.desc.digest };
    const bytes = encodeManifest(m);
    const nd: Descriptor = { mediaType: MT.ociManifest, digest: digestOf(bytes), size: bytes.length };
    if (d.urls) nd.urls = d.urls;
    if (m.annotations && Object.keys(m.annotations).length) nd.annotations = m.annotations;
    if (d.data) nd.data = d.data;
    if (d.platform) nd.platform = d.platform;
    if (d.artifactType) nd.artifactType = d.artifactType;
    blobs.set(nd.digest, bytes);
    manifests.push(nd);
    if (b) {
      for (const z of b.blobs) blobs.set(z.desc.digest, z.bytes);
      blobs.set(b.desc.digest, b.bytes);
      blobs.set('sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a', Buffer.from('{}'));
      const platform = selected.get(d.digest)!;
      indexes.push({ platform, manifest: nd, index: b });
    }
  }
  // SOCI index descriptors: replace an existing v2 one for the same platform in place, else append.
  for (const { platform, manifest, index: b } of indexes) {
    const sd: Descriptor = {
      mediaType: MT.ociManifest,
      digest: b.desc.digest,
      size: b.desc.size,
      annotations: { [ANN.imageManifestDigest]: manifest.digest },
      platform,
      artifactType: MT.sociIndexV2,
    };
    const at = manifests.findIndex(
      (x) => x.artifactType === MT.sociIndexV2 && x.platform && samePlatform(normalizePlatform(x.platform), normalizePlatform(platform)),
    );
    if (at >= 0) manifests[at] = sd;
    else manifests.push(sd);
  }
  index.manifests = manifests;
  const bytes = encodeIndex(index);
  const desc: Descriptor = { mediaType: MT.ociIndex, digest: digestOf(bytes), size: bytes.length };
  blobs.set(desc.digest, bytes);
  return { desc, bytes, blobs, indexes };
}

function dedupePlatforms(ps: Platform[]): Platform[] {
  const out: Platform[] = [];
  for (const p of ps) if (!out.some((q) => samePlatform(q, p))) out.push(p);
  return out;
}
