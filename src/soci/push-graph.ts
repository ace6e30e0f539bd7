/**
 * Pushing a converted image to a registry: every blob the new manifests reference (copied or
 * cross-repo mounted from the source when it is not there yet), then manifests by digest, and the
 * image index by tag last, so a reader never sees a tag pointing at missing content.
 */
import { MT, isIndexType } from '../oci/media-types.js';
import { decodeIndex, decodeManifest, type Descriptor } from '../oci/types.js';
import type { RegistryClient } from '../registry/index.js';
import { runBounded } from '../concurrency.js';
import type { RegistryImageSource } from './registry-source.js';
import { type Logger, silentLogger } from '../logger.js';

export interface PushTarget {
  client: RegistryClient;
  repo: string;
  tag: string;
  concurrency?: number;
  log?: Logger;
}

/**
 * `created`: blobs and manifests made by the conversion (by digest); `root`: the new image index.
 * Anything else the graph references is fetched from `source`.
 */
export async function pushImageGraph(created: Map<string, Buffer>, root: Descriptor, source: RegistryImageSource, target: PushTarget): Promise<void> {
  const log = target.log ?? silentLogger;
  const sameRegistry = source.client.registry === target.client.registry;
  const manifests: Array<{ digest: string; bytes: Buffer; mediaType: string }> = [];
  const blobs = new Map<string, number>();

  const rootBytes = created.get(root.digest)!;
  const index = decodeIndex(rootBytes);
  for (const d of index.manifests) {
    const bytes = created.get(d.digest) ?? (await source.readBlob(d.digest));
    const m = decodeManifest(bytes);
    manifests.push({ digest: d.digest, bytes, mediaType: d.mediaType });
    blobs.set(m.config.digest, m.config.size);
    for (const l of m.layers) blobs.set(l.digest, l.size);
  }

  await runBounded(blobs.size, target.concurrency ?? 3, async (i) => {
    const [digest, size] = [...blobs.entries()][i]!;
    const own = created.get(digest);
    const how = own
      ? await target.client.pushBlob(target.repo, digest, size, own)
      : await target.client.pushBlob(
          target.repo,
          digest,
          size,
          () => source.openBlob(digest),
          sameRegistry && source.repo !== target.repo ? { mountFrom: source.repo } : {},
        );
    log.info({ digest, how }, `blob ${digest}: ${how}`);
  });
  // Image manifests before the SOCI indexes that name them; both by digest.
  const ordered = [...manifests.filter((m) => !isSoci(m.bytes)), ...manifests.filter((m) => isSoci(m.bytes))];
  for (const m of ordered) {
    await target.client.putManifest(target.repo, m.digest, m.bytes, m.mediaType);
    log.info({ digest: m.digest }, `manifest ${m.digest}: pushed`);
  }
  await target.client.putManifest(target.repo, target.tag, rootBytes, isIndexType(root.mediaType) ? root.mediaType : MT.ociIndex);
  log.info({ digest: root.digest, repo: target.repo, tag: target.tag }, `index ${root.digest}: pushed as ${target.repo}:${target.tag}`);
}

function isSoci(bytes: Buffer): boolean {
  try {
    const m = decodeManifest(bytes);
    return m.config.mediaType === MT.sociIndexV2 || m.config.mediaType === MT.sociIndexV1;
  } catch {
    return false;
  }
}
