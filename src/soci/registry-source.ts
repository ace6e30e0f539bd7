/**
 * Images that live in a registry, seen through the same BlobReader/ConvertSource contract as a local
 * layout: manifests come from /manifests/, everything else from /blobs/ (streamed, digest-checked).
 */
import { SociError } from '../errors.js';
import { isIndexType } from '../oci/media-types.js';
import type { Reference } from '../oci/reference.js';
import { decodeIndex, type Descriptor } from '../oci/types.js';
import type { RegistryClient } from '../registry/index.js';
import type { ConvertSource } from './convert.js';

export class RegistryImageSource implements ConvertSource {
  private readonly manifests = new Map<string, Buffer>();
  /** fetchBlob checks size and digest at the end of every stream */
  readonly verifiesBlobs = true;

  constructor(
    readonly client: RegistryClient,
    readonly repo: string,
  ) {}

  /** Resolves the tag/digest to its root descriptor and remembers every manifest of an index. */
  async resolve(ref: Reference): Promise<Descriptor> {
    const m = await this.client.getManifest(this.repo, ref.reference());
    this.manifests.set(m.digest, m.bytes);
    if (isIndexType(m.mediaType)) {
      for (const d of decodeIndex(m.bytes).manifests) this.manifests.set(d.digest, Buffer.alloc(0));
    }
    return { mediaType: m.mediaType, digest: m.digest, size: m.size };
  }

  isManifest(digest: string): boolean {
    return this.manifests.has(digest);
  }

  async readBlob(digest: string): Promise<Buffer> {
    const cached = this.manifests.get(digest);
    if (cached?.length) return cached;
    if (cached) {
      const m = await this.client.getManifest(this.repo, digest);
      this.manifests.set(digest, m.bytes);
      return m.bytes;
    }
    const parts: Buffer[] = [];
    let n = 0;
    for await (const c of this.client.fetchBlob(this.repo, digest)) {
      n += c.length;
      if (n > 64 << 20) throw new SociError('ERR_INVALID_MANIFEST', `blob ${digest} is too large to be a config`);
      parts.push(c);
    }
    return Buffer.concat(parts);
  }

  openBlob(digest: string): AsyncIterable<Buffer> {
    return this.client.fetchBlob(this.repo, digest);
  }

  async hasBlob(digest: string): Promise<boolean> {
    return this.manifests.has(digest) || this.client.blobExists(this.repo, digest);
  }
}
