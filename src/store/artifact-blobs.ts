/**
 * Where SOCI artifacts (zTOCs, SOCI index manifests, the converted image's manifests) are kept: the
 * `--content-store` of AWS's CLI. Two implementations share this surface: containerd's content
 * store (src/containerd/blobs.ts) and our own under `--root` (below).
 */
import { SociError } from '../errors.js';
import type { ContentStore } from './content-store.js';

export interface ArtifactBlobs {
  has(digest: string): Promise<boolean>;
  get(digest: string): Promise<Buffer>;
  /** bytes [start, end) */
  readRange(digest: string, start: number, end: number): Promise<Buffer>;
  /** stores bytes that hash to `digest`; labels are containerd GC references (ignored locally) */
  put(bytes: Buffer, digest: string, labels?: Record<string, string>): Promise<void>;
  /** false when the blob was not there */
  delete(digest: string): Promise<boolean>;
  list(): Promise<Array<{ digest: string; size: number }>>;
}

export function localBlobs(store: ContentStore): ArtifactBlobs {
  return {
    has: (d) => store.has(d),
    get: (d) => store.get(d),
    async readRange(d, start, end) {
      const parts: Buffer[] = [];
      for await (const c of store.open(d, start, end) as AsyncIterable<Buffer>) parts.push(c);
      const b = Buffer.concat(parts);
      if (b.length !== end - start) throw new SociError('ERR_IO', `blob ${d}: read ${b.length} bytes at ${start}, wanted ${end - start}`);
      return b;
    },
    async put(bytes, d) {
      await store.put(bytes, d);
    },
    async delete(d) {
      const had = await store.has(d);
      await store.delete(d);
      return had;
    },
    async list() {
      const out: Array<{ digest: string; size: number }> = [];
      for (const d of await store.list()) out.push({ digest: d, size: await store.size(d).catch(() => -1) });
      return out.filter((x) => x.size >= 0);
    },
  };
}
