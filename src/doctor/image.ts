/**
 * The image half of `soci doctor`: find the SOCI index the way the snapshotter would (explicit
 * digest, v2 annotation, v1 referrers), say per layer whether it can be lazy and why not, and for
 * an image already pulled, what happened: which snapshotter holds its layers (ours or another, via
 * containerd's snapshots and the layers' chain IDs) and what our daemon decided for each layer.
 */
import type { ContainerdConnection } from '../containerd/client.js';
import { ImageService } from '../containerd/images.js';
import { isSociError } from '../errors.js';
import { findSociIndex, layerZtocMap, type FoundSociIndex } from '../image/discovery.js';
import { ANN, MT, isIndexType, layerCompression } from '../oci/media-types.js';
import { hostPlatform } from '../oci/platform.js';
import type { Reference } from '../oci/reference.js';
import { manifestsFor } from '../oci/select.js';
import { chainIds } from '../oci/digest.js';
import { decodeIndex, decodeManifest, type Descriptor, type Manifest } from '../oci/types.js';
import type { RegistryClient } from '../registry/index.js';
import type { LayerDecision } from '../snapshotter/decisions.js';
import type { Report } from './report.js';

export interface ImageFacts {
  manifestDigest: string;
  manifest: Manifest;
  /** the largest layer: where registry behaviour is measured */
  probeBlob?: Descriptor;
}

const CRI_NAMESPACE = 'k8s.io';
const size = (n: number) => (n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MiB` : `${n} B`);

/** The manifest the snapshotter would see for this host's platform. */
export async function resolveImage(r: Report, client: RegistryClient, ref: Reference): Promise<ImageFacts | undefined> {
  const top = await client.getManifest(ref.repository, ref.digest ?? ref.tag ?? 'latest');
  let desc: Descriptor = { mediaType: top.mediaType, digest: top.digest, size: top.bytes.length };
  let bytes = top.bytes;
  if (isIndexType(top.mediaType)) {
    const index = decodeIndex(top.bytes);
    const images = index.manifests.filter((d) => !d.artifactType && d.platform);
    desc = manifestsFor(images.length ? images : index.manifests, [hostPlatform()], ref.string())[0]!.desc;
    bytes = (await client.getManifest(ref.repository, desc.digest)).bytes;
  }
  const manifest = decodeManifest(bytes, `manifest ${desc.digest}`);
  r.ok('image', `${ref.string()} resolves to manifest ${desc.digest} (${manifest.layers.length} layers)`);
  const probeBlob = [...manifest.layers].sort((a, b) => b.size - a.size)[0];
  return { manifestDigest: desc.digest, manifest, ...(probeBlob ? { probeBlob } : {}) };
}

export interface DiscoveryOptions {
  v1: boolean;
  explicitDigest?: string;
}

/** The index, found as the snapshotter finds it; a fail line with the reason when there is none. */
export async function checkDiscovery(
  r: Report,
  client: RegistryClient,
  ref: Reference,
  img: ImageFacts,
  o: DiscoveryOptions,
): Promise<FoundSociIndex | undefined> {
  const ann = img.manifest.annotations?.[ANN.indexDigest];
  let v1: string | undefined;
  try {
    const found = await findSociIndex(client, ref.repository, img.manifestDigest, {
      v1: o.v1,
      ...(o.explicitDigest ? { explicitDigest: o.explicitDigest } : {}),
    });
    const how =
      found.version === 'explicit'
        ? 'the digest given'
        : found.version === 'v2'
          ? `the manifest's ${ANN.indexDigest} annotation (SOCI index manifest v2)`
          : 'the referrers of the manifest (SOCI index manifest v1)';
    r.ok('index', `SOCI index ${found.desc.digest} found through ${how}`);
    return found;
  } catch (e) {
    if (!isSociError(e, 'ERR_NO_INDEX')) throw e;
    if (ann)
      r.fail(
        'index',
        `the manifest names SOCI index ${ann}, which the registry does not serve: the image was copied without its index (skopeo copy without --all, or one platform only)`,
        'copy the whole image index (skopeo copy --all, crane copy, nerdctl push --all-platforms), or convert and push it again',
      );
    else if (!o.v1 && (v1 = await v1Index(client, ref.repository, img.manifestDigest)))
      r.fail(
        'index',
        `the image has a SOCI index manifest v1 (${v1}, found through referrers), but the snapshotter's v1 discovery is off`,
        'set [pull_modes.soci_v1] enable = true in the snapshotter config, or soci convert the image (v2)',
      );
    else
      r.fail(
        'index',
        `no SOCI index: the manifest has no ${ANN.indexDigest} annotation${o.v1 ? ' and no referrer is a SOCI index' : ', and v1 discovery (referrers) is off'}`,
        o.v1
          ? 'soci convert the image and push the result'
          : 'soci convert the image and push the result (or enable pull_modes.soci_v1 for indexes made by soci create + soci push)',
      );
    return undefined;
  }
}

/** A SOCI v1 index among the manifest's referrers (API or tag fallback), if any. */
async function v1Index(client: RegistryClient, repo: string, digest: string): Promise<string | undefined> {
  const refs = await client.referrers(repo, digest, MT.sociIndexV1).catch(() => []);
  return refs.find((d) => d.artifactType === MT.sociIndexV1)?.digest;
}

/** Per layer: lazy (a zTOC the registry has) or why not. */
export async function checkLayers(
  r: Report,
  client: RegistryClient,
  repo: string,
  img: ImageFacts,
  index: FoundSociIndex | undefined,
  minLayerSize: number,
): Promise<void> {
  const ztocs = index ? layerZtocMap(index.manifest) : new Map<string, Descriptor>();
  let lazy = 0;
  for (const [i, l] of img.manifest.layers.entries()) {
    const id = `layer.${i}`;
    const what = `${l.digest} (${size(l.size)})`;
    const z = ztocs.get(l.digest);
    if (z) {
      if (await client.blobExists(repo, z.digest)) {
        lazy++;
        r.ok(id, `${what}: lazy, zTOC ${z.digest}`);
      } else
        r.fail(
          id,
          `${what}: its zTOC ${z.digest} is missing from the registry`,
          'push the index again with its zTOCs (soci push, or nerdctl push of the converted image)',
        );
      continue;
    }
    if (layerCompression(l.mediaType) === 'zstd')
      r.warn(id, `${what}: not lazy, zstd layers have no zTOC (${l.mediaType})`, 'build the image with gzip layers for lazy loading');
    else if (l.size < minLayerSize) r.info(id, `${what}: not lazy by design, below min-layer-size ${minLayerSize} (unpacked at pull)`);
    else if (!index) r.info(id, `${what}: not lazy, no SOCI index`);
    else r.warn(id, `${what}: not lazy, the index has no zTOC for it`, 'convert again (a smaller --min-layer-size indexes it)');
  }
  if (index && lazy === 0) r.fail('image.lazy', 'no layer of this image can be lazy', 'see the layer lines above');
  else if (!index && img.manifest.layers.every((l) => l.size < minLayerSize))
    r.fail(
      'image.lazy',
      `every layer is below min-layer-size ${minLayerSize}: there is nothing to load lazily`,
      'convert with a smaller --min-layer-size if lazy loading matters for this image',
    );
  else if (index) r.ok('image.lazy', `${lazy} of ${img.manifest.layers.length} layers can be lazy`);
}

/** For an image in containerd's store: which snapshotter holds each layer, and what our daemon decided. */
export async function checkPulled(
  r: Report,
  conn: ContainerdConnection,
  name: string,
  img: ImageFacts,
  config: Buffer | undefined,
  decisions: LayerDecision[] | undefined,
): Promise<void> {
  // nerdctl and ctr pull into the namespace given; Kubernetes (CRI) into k8s.io.
  let namespace = conn.namespace;
  const images = new ImageService(conn);
  let record = await images.get(name).catch(() => undefined);
  if (!record && namespace !== CRI_NAMESPACE) {
    record = await images.get(name, CRI_NAMESPACE).catch(() => undefined);
    namespace = CRI_NAMESPACE;
  }
  if (!record) {
    r.info('pulled', `${name} is not in containerd's store (namespace ${conn.namespace} or ${CRI_NAMESPACE}): nothing pulled to inspect`);
    return;
  }
  r.info('pulled', `${name} is in containerd's store (namespace ${namespace})`);
  const diffIds = config ? ((JSON.parse(config.toString('utf8')) as { rootfs?: { diff_ids?: string[] } }).rootfs?.diff_ids ?? []) : [];
  const ids = chainIds(diffIds);
  const has = async (snapshotter: string, key: string) =>
    conn.unary('snapshots', 'Stat', { snapshotter, key }, { namespace }).then(
      () => true,
      () => false,
    );
  const byLayer = new Map((decisions ?? []).map((d) => [d.layer, d]));
  for (const [i, l] of img.manifest.layers.entries()) {
    const id = `pulled.layer.${i}`;
    const chain = ids[i];
    const inSoci = chain ? await has('soci', chain) : false;
    const inOverlay = chain ? await has('overlayfs', chain) : false;
    const d = byLayer.get(l.digest);
    if (inOverlay && !inSoci)
      r.warn(
        id,
        `${l.digest}: already unpacked by overlayfs: the image was pulled with another snapshotter`,
        'remove the image and pull it with --snapshotter soci',
      );
    else if (d) {
      if (d.mode === 'lazy') r.ok(id, `${l.digest}: mounted lazily by soci`);
      else r.info(id, `${l.digest}: ${d.mode === 'local' ? 'unpacked by soci' : 'left to containerd to unpack'} (${d.cause}: ${d.reason})`);
    } else if (inSoci) r.info(id, `${l.digest}: in the soci snapshotter (prepared before this daemon started, no decision recorded)`);
    else r.info(id, `${l.digest}: not unpacked by any snapshotter yet (the image is in the store, not yet run)`);
  }
}
