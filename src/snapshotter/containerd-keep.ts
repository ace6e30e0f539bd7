/**
 * `discard_unpacked_layers = false` in parallel pull mode: as AWS's daemon, the verified layer blobs
 * go to containerd's content store, in the namespace of the pull that brought them, so the image is
 * complete there (`ctr images check`, push, export). containerd's pull labelled the manifest with
 * references to its layers before any was prepared, so its garbage collector keeps them with the
 * image. A blob that cannot be written is logged: the snapshot itself is verified and stays.
 */
import { createReadStream } from 'node:fs';
import type { Containerd } from '../containerd/index.js';
import { DEFAULT_NAMESPACE } from '../containerd/index.js';
import type { Logger } from '../logger.js';

export type BlobKeeper = (file: string, layer: { digest: string; size: number }, namespace: string | undefined) => Promise<void>;

export function containerdBlobKeeper(address: string, logger: Logger): BlobKeeper {
  const conns = new Map<string, Promise<Containerd>>();
  const connect = (namespace: string): Promise<Containerd> => {
    let c = conns.get(namespace);
    if (!c) {
      c = import('../containerd/index.js').then(({ Containerd }) => Containerd.connect({ address, namespace }));
      c.catch(() => conns.delete(namespace)); // the next blob tries again
      conns.set(namespace, c);
    }
    return c;
  };
  return async (file, layer, namespace = DEFAULT_NAMESPACE) => {
    try {
      const c = await connect(namespace);
      await c.content.putStream(createReadStream(file, { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>, layer.size, layer.digest);
    } catch (e) {
      logger.warn(
        { layer: layer.digest, namespace, address, error: e instanceof Error ? e.message : String(e) },
        "cannot keep the layer blob in containerd's content store",
      );
    }
  };
}
