/** SOCI artifacts in the local store: zTOC reuse and recording built indexes in the artifacts DB. */
import type { Descriptor } from '../oci/types.js';
import type { LocalStore } from '../store/index.js';
import type { BuiltIndex, ZtocCache } from './index-builder.js';
import { EMPTY_CONFIG, MT } from '../oci/media-types.js';

export function storeZtocCache(store: LocalStore): ZtocCache {
  return {
    async find(layerDigest, spanSize) {
      const e = store.db.findZtoc(layerDigest, spanSize);
      if (!e || !(await store.content.has(e.digest))) return undefined;
      return { desc: { mediaType: MT.ztoc, digest: e.digest, size: e.size }, bytes: await store.content.get(e.digest) };
    },
  };
}

export interface IndexMeta {
  imageRef: string;
  imageDigest: string;
  platform: string;
  location: string;
  manifestMediaType: string;
}

/** Writes the index, its zTOCs/prefetch blobs and the `{}` config, then records them (one transaction). */
export async function saveIndex(store: LocalStore, b: BuiltIndex, meta: IndexMeta): Promise<void> {
  await store.content.put(EMPTY_CONFIG.bytes, EMPTY_CONFIG.digest);
  for (const z of b.blobs) await store.content.put(z.bytes, z.desc.digest);
  await store.content.put(b.bytes, b.desc.digest);
  const now = new Date().toISOString();
  const spanSize = Number(b.blobs.find((z) => z.desc.mediaType === MT.ztoc)?.desc.annotations?.['com.amazon.soci.span-size'] ?? 0);
  store.db.putMany([
    ...b.blobs.map((z) => ({
      digest: z.desc.digest,
      size: z.desc.size,
      type: z.desc.mediaType === MT.ztoc ? ('soci_layer' as const) : ('soci_prefetch' as const),
      originalDigest: z.layer.digest,
      imageDigest: meta.imageDigest,
      imageRef: meta.imageRef,
      platform: meta.platform,
      location: meta.location,
      mediaType: z.layer.mediaType,
      artifactType: '',
      spanSize,
      createdAt: now,
    })),
    {
      digest: b.desc.digest,
      size: b.desc.size,
      type: 'soci_index' as const,
      originalDigest: meta.imageDigest,
      imageDigest: meta.imageDigest,
      imageRef: meta.imageRef,
      platform: meta.platform,
      location: meta.location,
      mediaType: MT.ociManifest,
      artifactType: b.manifest.config.mediaType,
      spanSize,
      createdAt: now,
    },
  ]);
}

export function describe(d: Descriptor): string {
  return `${d.digest} (${d.size} bytes)`;
}
