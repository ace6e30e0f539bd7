/**
 * The local path for layers a SOCI index does not cover: download the layer, verify its compressed
 * digest (the registry client does, at the end of the stream) and its uncompressed digest against
 * the image config's `rootfs.diff_ids`, and apply it into the snapshot's dir in overlay lower-layer
 * form. Any failure throws; the snapshotter then cleans the dir and defers the layer to containerd.
 */
import { createHash } from 'node:crypto';
import { SociError } from '../errors.js';
import { decompress, unpackLayer } from '../fs/unpack.js';
import { layerCompression } from '../oci/media-types.js';
import { parseReference } from '../oci/reference.js';
import { decodeManifest } from '../oci/types.js';
import type { RegistryClient } from '../registry/index.js';
import type { LocalUnpacker, MountContext } from './layer-mounter.js';
import { LABELS } from './labels.js';
import type { Logger } from '../logger.js';

interface ImageMeta {
  manifest: ReturnType<typeof decodeManifest>;
  diffIds: string[];
}

/** Manifests and configs of recent images: containerd prepares an image's layers one by one. */
const META_CACHE = 16;

export class RegistryLocalUnpacker implements LocalUnpacker {
  private readonly meta = new Map<string, Promise<ImageMeta>>();

  constructor(
    private readonly clientFor: (registry: string) => RegistryClient,
    private readonly logger: Logger,
  ) {}

  async unpack(dir: string, _parentDirs: string[], labels: Record<string, string>, ctx: MountContext): Promise<void> {
    const imageRef = labels[LABELS.imageRef];
    const layerDigest = labels[LABELS.layerDigest];
    const manifestDigest = labels[LABELS.manifestDigest];
    if (!imageRef || !layerDigest || !manifestDigest) throw new SociError('ERR_NO_INDEX', 'CRI labels missing: cannot fetch the layer');
    const ref = parseReference(imageRef);
    const client = this.clientFor(ref.registry);
    // The download starts now, while the manifest and config are looked up (they are cached after
    // an image's first layer, but that first layer would wait two round trips for them).
    const size = Number(labels[LABELS.size]);
    const blob = client.fetchBlob(ref.repository, layerDigest, Number.isSafeInteger(size) && size > 0 ? { size } : {});
    const head = blob.next();
    head.catch(() => undefined); // observed below, or dropped with the download
    try {
      await this.unpackFrom(blob, head, client, dir, labels, ctx, ref, layerDigest, manifestDigest);
    } finally {
      void blob.return(undefined).catch(() => undefined);
    }
  }

  private async unpackFrom(
    blob: AsyncGenerator<Buffer, void, undefined>,
    head: Promise<IteratorResult<Buffer, void>>,
    client: RegistryClient,
    dir: string,
    labels: Record<string, string>,
    ctx: MountContext,
    ref: { registry: string; repository: string },
    layerDigest: string,
    manifestDigest: string,
  ): Promise<void> {
    const { manifest, diffIds } = await this.imageMeta(client, ref.registry, ref.repository, manifestDigest);
    const i = manifest.layers.findIndex((l) => l.digest === layerDigest);
    if (i < 0) throw new SociError('ERR_NOT_FOUND', `layer ${layerDigest} is not in manifest ${manifestDigest}`);
    const layer = manifest.layers[i]!;
    const diffId = diffIds[i];
    if (!diffId) throw new SociError('ERR_INVALID_MANIFEST', `image config has no diff_id for layer ${i}`);
    const comp = layerCompression(layer.mediaType);
    if (comp !== 'gzip' && comp !== 'uncompressed')
      throw new SociError('ERR_UNSUPPORTED', `layer ${layerDigest}: ${layer.mediaType} is unpacked by containerd`);

    // compressed stream (digest-checked at its end) → gunzip → sha256 tap → unpack. Plain async
    // iteration end to end: a failed download or corrupt data rejects this Prepare, nothing else.
    const hash = createHash('sha256');
    if (Number(labels[LABELS.size]) > 0 && Number(labels[LABELS.size]) !== layer.size)
      throw new SociError('ERR_INVALID_MANIFEST', `layer ${layerDigest}: size label ${labels[LABELS.size]} is not the manifest's ${layer.size}`);
    const stream = (async function* whole() {
      const first = await head;
      if (first.done) return;
      yield first.value;
      yield* blob;
    })();
    const plain = decompress(stream, comp);
    const tapped = (async function* tap() {
      for await (const chunk of plain) {
        hash.update(chunk);
        yield chunk;
      }
    })();
    const stats = await unpackLayer(tapped, 'uncompressed', dir);
    const got = `sha256:${hash.digest('hex')}`;
    if (got !== diffId) throw new SociError('ERR_DIGEST_MISMATCH', `layer ${layerDigest}: uncompressed digest ${got} does not match diff_id ${diffId}`);
    this.logger.info({ layer: layerDigest, entries: stats.entries, bytes: stats.bytes, namespace: ctx.namespace }, 'layer unpacked locally');
  }

  /** The manifest and diff_ids (both digest-verified by the client), fetched once per image. */
  private imageMeta(client: RegistryClient, registry: string, repository: string, manifestDigest: string): Promise<ImageMeta> {
    const key = `${registry}/${repository}@${manifestDigest}`;
    let p = this.meta.get(key);
    if (!p) {
      p = (async () => {
        const manifest = decodeManifest((await client.getManifest(repository, manifestDigest)).bytes);
        const config = JSON.parse(
          Buffer.concat(await collect(client.fetchBlob(repository, manifest.config.digest, { size: manifest.config.size }))).toString('utf8'),
        ) as { rootfs?: { diff_ids?: string[] } };
        return { manifest, diffIds: config.rootfs?.diff_ids ?? [] };
      })();
      p.catch(() => this.meta.delete(key)); // a failure is not remembered
      this.meta.set(key, p);
      while (this.meta.size > META_CACHE) this.meta.delete(this.meta.keys().next().value!);
    }
    return p;
  }
}

async function collect(it: AsyncIterable<Buffer>): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for await (const c of it) out.push(c);
  return out;
}
