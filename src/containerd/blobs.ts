/** containerd's content store as an ArtifactBlobs (`--content-store containerd`, AWS's default). */
import { isSociError } from '../errors.js';
import type { ArtifactBlobs } from '../store/artifact-blobs.js';
import type { ContentService } from './content.js';

export function containerdBlobs(content: ContentService): ArtifactBlobs {
  return {
    has: async (d) => (await content.stat(d)) !== undefined,
    get: (d) => content.get(d),
    readRange: (d, s, e) => content.readRange(d, s, e),
    put: (bytes, d, labels) => content.put(bytes, d, labels),
    async delete(d) {
      try {
        await content.delete(d);
        return true;
      } catch (e) {
        if (isSociError(e, 'ERR_NOT_FOUND')) return false;
        throw e;
      }
    },
    async list() {
      return (await content.list()).map((i) => ({ digest: i.digest, size: i.size }));
    },
  };
}
