/** containerd's image records: name → target descriptor (+ labels), as `ctr images` shows them. */
import { isSociError } from '../errors.js';
import type { Descriptor } from '../oci/types.js';
import type { ContainerdConnection } from './client.js';

export interface ImageRecord {
  name: string;
  target: Descriptor;
  labels: Record<string, string>;
}

interface PDescriptor {
  media_type: string;
  digest: string;
  size: string;
  annotations: Record<string, string>;
}
interface PImage {
  name: string;
  labels: Record<string, string>;
  target: PDescriptor | null;
}

const fromProto = (i: PImage): ImageRecord => {
  const t = i.target ?? { media_type: '', digest: '', size: '0', annotations: {} };
  const target: Descriptor = { mediaType: t.media_type, digest: t.digest, size: Number(t.size) };
  if (t.annotations && Object.keys(t.annotations).length) target.annotations = t.annotations;
  return { name: i.name, target, labels: i.labels ?? {} };
};

const toProto = (i: ImageRecord): PImage => ({
  name: i.name,
  labels: i.labels,
  target: { media_type: i.target.mediaType, digest: i.target.digest, size: String(i.target.size), annotations: i.target.annotations ?? {} },
});

export class ImageService {
  constructor(private readonly c: ContainerdConnection) {}

  /** The record in the connection's namespace, or in `namespace`. */
  async get(name: string, namespace?: string): Promise<ImageRecord | undefined> {
    try {
      const r = (await this.c.unary('images', 'Get', { name }, namespace === undefined ? {} : { namespace })) as { image: PImage };
      return fromProto(r.image);
    } catch (e) {
      if (isSociError(e, 'ERR_NOT_FOUND')) return undefined;
      throw e;
    }
  }

  /** containerd filters, e.g. `target.digest==sha256:…`. */
  async list(filters: string[] = []): Promise<ImageRecord[]> {
    const r = (await this.c.unary('images', 'List', { filters })) as { images: PImage[] };
    return r.images.map(fromProto);
  }

  /** Creates the record, or points an existing one at the new target (its labels kept). */
  async put(name: string, target: Descriptor, labels: Record<string, string> = {}): Promise<void> {
    const old = await this.get(name);
    if (!old) {
      try {
        await this.c.unary('images', 'Create', { image: toProto({ name, target, labels }) });
        return;
      } catch (e) {
        if (!isSociError(e, 'ERR_ALREADY_EXISTS')) throw e;
      }
    }
    await this.update({ name, target, labels: { ...(old?.labels ?? {}), ...labels } });
  }

  /** Updates the given fields (all when none are named). */
  async update(image: ImageRecord, fields: string[] = []): Promise<void> {
    await this.c.unary('images', 'Update', { image: toProto(image), ...(fields.length ? { update_mask: { paths: fields } } : {}) });
  }

  async delete(name: string): Promise<void> {
    await this.c.unary('images', 'Delete', { name, sync: false });
  }
}
