/**
 * `soci rebuild-db`: re-derives the artifacts DB from the content store. Indexes (v1 and v2) are
 * recognised by their config media type; rows whose blobs vanished are dropped; what we knew about
 * still-present artifacts (image ref, platform, location) is kept.
 */
import { Command } from 'commander';
import { ANN, MT } from '../oci/media-types.js';
import { decodeManifest } from '../oci/types.js';
import type { ArtifactEntry } from '../store/index.js';
import { globals, openStore } from './common.js';
import { info } from './output.js';

export function rebuildDbCommand(): Command {
  return new Command('rebuild-db').description('rebuild the artifacts database from the content store').action(async (_o: unknown, c: Command) => {
    const store = await openStore(globals(c));
    try {
      const known = new Map(store.db.list().map((e) => [`${e.type}|${e.digest}|${e.originalDigest}`, e]));
      const fresh: ArtifactEntry[] = [];
      const now = new Date().toISOString();
      for (const d of await store.content.list()) {
        const size = await store.content.size(d);
        if (size < 10 || size > 4 << 20) continue;
        let m;
        try {
          m = decodeManifest(await store.content.get(d));
        } catch {
          continue;
        }
        if (m.config.mediaType !== MT.sociIndexV1 && m.config.mediaType !== MT.sociIndexV2) continue;
        const prev = [...known.values()].find((e) => e.type === 'soci_index' && e.digest === d);
        const imageDigest = m.subject?.digest ?? prev?.imageDigest ?? '';
        const base = { imageDigest, imageRef: prev?.imageRef ?? '', platform: prev?.platform ?? '', location: prev?.location ?? '' };
        fresh.push({ ...base, digest: d, size, type: 'soci_index', originalDigest: imageDigest, mediaType: MT.ociManifest, artifactType: m.config.mediaType, spanSize: 0, createdAt: prev?.createdAt ?? now });
        for (const l of m.layers) {
          if (!(await store.content.has(l.digest))) continue;
          const type = l.mediaType === MT.ztoc ? 'soci_layer' : 'soci_prefetch';
          const layerDigest = l.annotations?.[ANN.layerDigest] ?? '';
          const old = known.get(`${type}|${l.digest}|${layerDigest}`);
          fresh.push({
            ...base,
            digest: l.digest,
            size: l.size,
            type,
            originalDigest: layerDigest,
            mediaType: l.annotations?.[ANN.layerMediaType] ?? '',
            artifactType: '',
            spanSize: Number(l.annotations?.[ANN.spanSize] ?? 0),
            createdAt: old?.createdAt ?? now,
          });
        }
      }
      store.db.replaceAll(fresh);
      info(`artifacts database rebuilt: ${fresh.filter((e) => e.type === 'soci_index').length} indexes, ${fresh.filter((e) => e.type !== 'soci_index').length} zTOCs/prefetch artifacts`);
    } finally {
      store.close();
    }
  });
}
