/**
 * The snapshotter's side of local pulls: labels → the image and layer to pull, through the
 * parallel puller (../pull). Every layer is downloaded, checked against its digest and the image
 * config's diff_id, and unpacked into the snapshot's dir in overlay lower-layer form; any failure
 * throws, and the snapshotter cleans the dir.
 */
import { SociError } from '../errors.js';
import { parseReference } from '../oci/reference.js';
import type { ImagePuller, PullTarget } from '../pull/index.js';
import type { LocalUnpacker, MountContext } from './layer-mounter.js';
import { LABELS } from './labels.js';

export class PullingUnpacker implements LocalUnpacker {
  constructor(private readonly puller: ImagePuller) {}

  // A lower layer in overlay form needs its parents only for the dirs it implies without listing.
  unpack(dir: string, parentDirs: string[], labels: Record<string, string>, ctx?: MountContext): Promise<void> {
    return this.puller.layer(target(labels, ctx), dir, parentDirs);
  }

  unpackImage(dir: string, parentDirs: string[], labels: Record<string, string>, ctx?: MountContext): Promise<void> {
    return this.puller.image(target(labels, ctx), dir, parentDirs);
  }
}

function target(labels: Record<string, string>, ctx: MountContext | undefined): PullTarget {
  const imageRef = labels[LABELS.imageRef];
  const layerDigest = labels[LABELS.layerDigest];
  const manifestDigest = labels[LABELS.manifestDigest];
  if (!imageRef || !layerDigest || !manifestDigest) throw new SociError('ERR_NO_INDEX', 'CRI labels missing: cannot fetch the layer');
  const ref = parseReference(imageRef);
  const size = Number(labels[LABELS.size]);
  return {
    registry: ref.registry,
    repository: ref.repository,
    manifestDigest,
    layerDigest,
    ...(Number.isSafeInteger(size) && size > 0 ? { size } : {}),
    ...(ctx ? { namespace: ctx.namespace } : {}),
  };
}
