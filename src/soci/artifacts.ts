/**
 * Keeping what a build or a conversion made: its blobs go to an ArtifactBlobs (containerd's content
 * store or ours) with containerd's garbage-collection references, and its SOCI indexes and zTOCs are
 * recorded in the artifacts DB.
 *
 * The GC labels are the ones AWS's CLI sets, so containerd keeps and removes the same graph: an image
 * index references its manifests (`containerd.io/gc.ref.content.m.<i>`), an image manifest its config
 * and layers (`.config`, `.l.<i>`), a SOCI index manifest its `{}` config and zTOCs (`.config`,
 * `.ztoc.<i>`). Leaves are written before what references them.
 */
import { ANN, EMPTY_CONFIG, MT, isIndexType } from '../oci/media-types.js';
import { decodeIndex, decodeManifest } from '../oci/types.js';
import type { ArtifactBlobs, ArtifactEntry, ArtifactsDb } from '../store/index.js';
import type { BuiltIndex, ZtocCache } from './index-builder.js';

const GC = 'containerd.io/gc.ref.content';

/** A zTOC cache over the DB and a blob store: reuse unless --force. */
export function ztocCache(db: ArtifactsDb, blobs: ArtifactBlobs): ZtocCache {
  return {
    async find(layerDigest, spanSize) {
      const e = db.findZtoc(layerDigest, spanSize);
      if (!e || !(await blobs.has(e.digest))) return undefined;
      return { desc: { mediaType: MT.ztoc, digest: e.digest, size: e.size }, bytes: await blobs.get(e.digest) };
    },
  };
}

type Kind = 'index' | 'manifest' | 'soci-index' | 'leaf';

function kindOf(bytes: Buffer): Kind {
  if (bytes.length < 2 || bytes[0] !== 0x7b) return 'leaf';
  let j: { mediaType?: string; manifests?: unknown; config?: { mediaType?: string }; layers?: unknown };
  try {
    j = JSON.parse(bytes.toString('utf8')) as typeof j;
  } catch {
    return 'leaf';
  }
  if (Array.isArray(j.manifests) && (!j.mediaType || isIndexType(j.mediaType))) return 'index';
  if (j.config && Array.isArray(j.layers)) {
    return j.config.mediaType === MT.sociIndexV1 || j.config.mediaType === MT.sociIndexV2 ? 'soci-index' : 'manifest';
  }
  return 'leaf';
}

/** containerd GC references of one blob (none for leaves). */
export function gcLabels(bytes: Buffer): Record<string, string> {
  const labels: Record<string, string> = {};
  const kind = kindOf(bytes);
  if (kind === 'index') {
    for (const [i, d] of decodeIndex(bytes).manifests.entries()) labels[`${GC}.m.${i}`] = d.digest;
  } else if (kind !== 'leaf') {
    const m = decodeManifest(bytes);
    labels[`${GC}.config`] = m.config.digest;
    for (const [i, l] of m.layers.entries()) labels[`${GC}.${kind === 'soci-index' ? 'ztoc' : 'l'}.${i}`] = l.digest;
  }
  return labels;
}

/** Writes blobs (digest → bytes), leaves first, then SOCI indexes and manifests, image indexes last. */
export async function saveBlobs(blobs: ArtifactBlobs, created: Map<string, Buffer>): Promise<void> {
  const rank: Record<Kind, number> = { leaf: 0, 'soci-index': 1, manifest: 2, index: 3 };
  const ordered = [...created].map(([d, b]) => ({ d, b, k: kindOf(b) })).sort((x, y) => rank[x.k] - rank[y.k]);
  for (const { d, b } of ordered) await blobs.put(b, d, gcLabels(b));
}

/** The blobs of one built index: zTOCs, prefetch artifacts, `{}` config, the index manifest. */
export function indexBlobs(b: BuiltIndex): Map<string, Buffer> {
  const m = new Map<string, Buffer>([[EMPTY_CONFIG.digest, Buffer.from(EMPTY_CONFIG.bytes)]]);
  for (const z of b.blobs) m.set(z.desc.digest, z.bytes);
  m.set(b.desc.digest, b.bytes);
  return m;
}

export interface IndexMeta {
  /** the image reference shown by `index list` when containerd has no name for it */
  imageRef: string;
  /** the image manifest the index serves */
  manifestDigest: string;
  /** the image the index belongs to: the manifest (v1), the converted image index (v2) */
  imageDigest: string;
  platform: string;
  /** where the layers came from (layout path, registry ref, `containerd:<namespace>`) */
  location: string;
}

/** Records an index and its zTOCs/prefetch artifacts (one transaction). */
export function recordIndex(db: ArtifactsDb, b: BuiltIndex, meta: IndexMeta): void {
  const now = new Date().toISOString();
  const spanSize = Number(b.blobs.find((z) => z.desc.mediaType === MT.ztoc)?.desc.annotations?.[ANN.spanSize] ?? 0);
  const rows: ArtifactEntry[] = b.blobs.map((z) => ({
    digest: z.desc.digest,
    size: z.desc.size,
    type: z.desc.mediaType === MT.ztoc ? 'soci_layer' : 'soci_prefetch',
    originalDigest: z.layer.digest,
    imageDigest: meta.imageDigest,
    imageRef: meta.imageRef,
    platform: meta.platform,
    location: meta.location,
    mediaType: z.layer.mediaType,
    artifactType: '',
    spanSize,
    createdAt: now,
  }));
  rows.push({
    digest: b.desc.digest,
    size: b.desc.size,
    type: 'soci_index',
    originalDigest: meta.manifestDigest,
    imageDigest: meta.imageDigest,
    imageRef: meta.imageRef,
    platform: meta.platform,
    location: meta.location,
    mediaType: MT.ociManifest,
    artifactType: b.manifest.config.mediaType,
    spanSize,
    createdAt: now,
  });
  db.putMany(rows);
}
