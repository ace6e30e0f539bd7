/**
 * An image in containerd's image store (what `nerdctl pull` or `ctr images pull` left there), seen
 * through the same ConvertSource contract as a layout or a registry. Layers are read from
 * containerd's content store and hashed while indexed (the index builder checks every digest).
 */
import type { ContentService } from '../containerd/index.js';
import { SociError, isSociError } from '../errors.js';
import type { ConvertSource } from './convert.js';

export class ContainerdImageSource implements ConvertSource {
  constructor(
    readonly content: ContentService,
    /** the image name, for messages */
    readonly image: string,
  ) {}

  async readBlob(digest: string): Promise<Buffer> {
    try {
      return await this.content.get(digest);
    } catch (e) {
      throw this.missing(e, digest, 'blob');
    }
  }

  async hasBlob(digest: string): Promise<boolean> {
    return (await this.content.stat(digest)) !== undefined;
  }

  async *openBlob(digest: string): AsyncIterable<Buffer> {
    try {
      yield* this.content.read(digest);
    } catch (e) {
      throw this.missing(e, digest, 'layer');
    }
  }

  private missing(e: unknown, digest: string, what: string): unknown {
    if (!isSociError(e, 'ERR_NOT_FOUND')) return e;
    return new SociError(
      'ERR_NOT_FOUND',
      `${what} ${digest} of ${this.image} is not in containerd's content store (pulled for another platform, or only partly?): pull the image for the platform you convert (--platform / --all-platforms)`,
      { cause: e },
    );
  }
}
