/**
 * `soci rebuild-db`: reconciles the artifacts DB with the content store in use, as AWS's does.
 *  - rows whose blob is neither in that store nor in ours are dropped (after `nerdctl rmi` and
 *    containerd's GC, or `index rm` elsewhere);
 *  - SOCI indexes found in the store that the DB does not know are added with their zTOCs: v1 ones
 *    by their subject, v2 ones through the image index that lists them (its descriptor names the
 *    image manifest and platform). What was known about a kept row (image ref, location) stays.
 */
import { Command } from 'commander';
import { ANN, MT, isIndexType } from '../oci/media-types.js';
import { formatPlatform } from '../oci/platform.js';
import { decodeIndex, decodeManifest, type Manifest } from '../oci/types.js';
import type { ArtifactBlobs, ArtifactEntry } from '../store/index.js';
import { localBlobs } from '../store/index.js';
import { info } from './output.js';
import { globals, openSession } from './session.js';

const MAX_INDEX_BYTES = 4 << 20;

interface Found {
  manifest: Manifest;
  size: number;
}

export function rebuildDbCommand(): Command {
  return new Command('rebuild-db').description('rebuilds the artifacts database').action(async (_o: unknown, c: Command) => {
    const s = await openSession(globals(c));
    try {
      const inUse = await s.blobs();
      const ours = localBlobs(s.local.content);
      const stores = s.storeType === 'soci' ? [inUse] : [inUse, ours];
      // Each store is listed once; the listing serves both the presence check and the scan.
      const listed = await Promise.all(stores.map(async (st) => ({ st, blobs: await st.list() })));
      const present = new Set(listed.flatMap((l) => l.blobs.map((b) => b.digest)));

      const known = s.db.list().filter((e) => present.has(e.digest));
      const byDigest = new Map(known.map((e) => [`${e.type}|${e.digest}`, e]));
      // SOCI index manifests, and what the image indexes say about v2 ones.
      const indexes = new Map<string, Found>();
      const v2 = new Map<string, { imageDigest: string; manifestDigest: string; platform: string }>();
      for (const { st, blobs } of listed) await scan(st, blobs, indexes, v2);

      const now = new Date().toISOString();
      const rows: ArtifactEntry[] = [...known];
      for (const [digest, { manifest: m, size }] of indexes) {
        if (byDigest.has(`soci_index|${digest}`)) continue;
        const isV2 = m.config.mediaType === MT.sociIndexV2;
        const ref = isV2 ? v2.get(digest) : m.subject ? { imageDigest: m.subject.digest, manifestDigest: m.subject.digest, platform: '' } : undefined;
        if (!ref) continue;
        const spanSize = Number(m.layers.find((l) => l.mediaType === MT.ztoc)?.annotations?.[ANN.spanSize] ?? 0);
        const base = { imageDigest: ref.imageDigest, imageRef: '', platform: ref.platform, location: '', createdAt: now, spanSize };
        rows.push({
          ...base,
          digest,
          size,
          type: 'soci_index',
          originalDigest: ref.manifestDigest,
          mediaType: MT.ociManifest,
          artifactType: m.config.mediaType,
        });
        for (const l of m.layers) {
          const type = l.mediaType === MT.ztoc ? 'soci_layer' : 'soci_prefetch';
          if (!present.has(l.digest) || byDigest.has(`${type}|${l.digest}`)) continue;
          rows.push({
            ...base,
            digest: l.digest,
            size: l.size,
            type,
            originalDigest: l.annotations?.[ANN.layerDigest] ?? '',
            mediaType: l.annotations?.[ANN.layerMediaType] ?? '',
            artifactType: '',
          });
        }
      }
      s.db.replaceAll(rows);
      info(
        `artifacts database rebuilt: ${rows.filter((e) => e.type === 'soci_index').length} indexes, ${rows.filter((e) => e.type !== 'soci_index').length} zTOCs/prefetch artifacts`,
      );
    } finally {
      await s.close();
    }
  });
}

async function scan(
  st: ArtifactBlobs,
  blobs: ReadonlyArray<{ digest: string; size: number }>,
  indexes: Map<string, Found>,
  v2: Map<string, { imageDigest: string; manifestDigest: string; platform: string }>,
): Promise<void> {
  for (const { digest, size } of blobs) {
    if (size < 10 || size > MAX_INDEX_BYTES || indexes.has(digest)) continue;
    let bytes: Buffer;
    try {
      bytes = await st.get(digest);
    } catch {
      continue; // collected while we looked
    }
    if (bytes[0] !== 0x7b) continue;
    let j: { mediaType?: string; manifests?: unknown; config?: unknown };
    try {
      j = JSON.parse(bytes.toString('utf8')) as typeof j;
    } catch {
      continue;
    }
    if (Array.isArray(j.manifests) && (!j.mediaType || isIndexType(j.mediaType))) {
      let list;
      try {
        list = decodeIndex(bytes).manifests;
      } catch {
        continue;
      }
      for (const d of list) {
        const m = d.annotations?.[ANN.imageManifestDigest];
        if (d.artifactType === MT.sociIndexV2 && m)
          v2.set(d.digest, { imageDigest: digest, manifestDigest: m, platform: d.platform ? formatPlatform(d.platform) : '' });
      }
    } else if (j.config) {
      try {
        const m = decodeManifest(bytes);
        if (m.config.mediaType === MT.sociIndexV1 || m.config.mediaType === MT.sociIndexV2) indexes.set(digest, { manifest: m, size });
      } catch {
        /* not a manifest */
      }
    }
  }
}
