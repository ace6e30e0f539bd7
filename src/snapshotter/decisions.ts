/**
 * What the snapshotter decided for each layer it was asked to prepare: lazy (a FUSE mount),
 * local (we downloaded and unpacked it) or deferred (containerd unpacks it), and why. Kept per
 * image (manifest digest) in memory, most recently prepared images last, bounded, and served over
 * the daemon's status service so `soci doctor` can tell what actually happened without parsing logs.
 */

export type LayerMode = 'lazy' | 'local' | 'deferred';

export interface LayerDecision {
  /** manifest digest of the image (containerd's cri.manifest-digest label) */
  image: string;
  imageRef: string;
  layer: string;
  mode: LayerMode;
  /** why the layer is not lazy; empty when it is */
  reason: string;
  /** stable cause: min-layer-size, no-ztoc, no-index, mount-failed, unpack-failed, no-unpacker */
  cause: string;
  atUnixMs: number;
}

export class LayerDecisions {
  private readonly images = new Map<string, Map<string, LayerDecision>>();

  constructor(private readonly maxImages = 256) {}

  record(d: Omit<LayerDecision, 'atUnixMs'>): void {
    if (!d.image || !d.layer) return;
    let layers = this.images.get(d.image);
    if (layers) this.images.delete(d.image);
    else layers = new Map();
    this.images.set(d.image, layers);
    layers.set(d.layer, { ...d, atUnixMs: Date.now() });
    while (this.images.size > this.maxImages) this.images.delete(this.images.keys().next().value!);
  }

  /** The decisions for one image, or for every image kept when `image` is empty. */
  list(image = ''): LayerDecision[] {
    if (image) return [...(this.images.get(image)?.values() ?? [])];
    return [...this.images.values()].flatMap((m) => [...m.values()]);
  }
}
