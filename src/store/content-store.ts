/**
 * Content-addressed blob store laid out as an OCI image layout (`blobs/sha256/<hex>`, `oci-layout`),
 * like AWS's `soci` content store at `<root>/content`. Writes are atomic: bytes go to
 * `ingest/<random>` and are renamed into place only after their digest is verified, so a crash or a
 * bad input never leaves a partial blob.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readFile, rename, rm, stat, writeFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Transform } from 'node:stream';
import { SociError } from '../errors.js';
import { digestHex, digestOf } from '../oci/digest.js';

export interface BlobInfo {
  digest: string;
  size: number;
}

export class ContentStore {
  constructor(readonly root: string) {}

  static async open(root: string): Promise<ContentStore> {
    await mkdir(join(root, 'blobs', 'sha256'), { recursive: true, mode: 0o700 });
    await mkdir(join(root, 'ingest'), { recursive: true, mode: 0o700 });
    const layoutFile = join(root, 'oci-layout');
    if (!(await exists(layoutFile))) await writeFile(layoutFile, '{"imageLayoutVersion":"1.0.0"}');
    return new ContentStore(root);
  }

  blobPath(digest: string): string {
    return join(this.root, 'blobs', 'sha256', digestHex(digest));
  }

  async has(digest: string): Promise<boolean> {
    return exists(this.blobPath(digest));
  }

  async size(digest: string): Promise<number> {
    try {
      return (await stat(this.blobPath(digest))).size;
    } catch {
      throw new SociError('ERR_NOT_FOUND', `blob ${digest} not found in the local store`);
    }
  }

  async get(digest: string): Promise<Buffer> {
    try {
      return await readFile(this.blobPath(digest));
    } catch {
      throw new SociError('ERR_NOT_FOUND', `blob ${digest} not found in the local store`);
    }
  }

  open(digest: string, start?: number, end?: number): NodeJS.ReadableStream {
    return createReadStream(this.blobPath(digest), { start, end: end === undefined ? undefined : end - 1, highWaterMark: 1 << 20 });
  }

  /** Stores bytes; when `expected` is given they must match it. */
  async put(bytes: Uint8Array, expected?: string): Promise<BlobInfo> {
    const digest = digestOf(bytes);
    if (expected && expected !== digest) {
      throw new SociError('ERR_DIGEST_MISMATCH', `content does not match its digest ${expected} (got ${digest})`);
    }
    if (!(await this.has(digest))) {
      const tmp = this.tempPath();
      await writeFile(tmp, bytes, { mode: 0o600 });
      await rename(tmp, this.blobPath(digest));
    }
    return { digest, size: bytes.length };
  }

  /** Streams into the store, hashing on the way; verified against `expected` before it becomes visible. */
  async putStream(source: AsyncIterable<Buffer> | NodeJS.ReadableStream, expected?: string): Promise<BlobInfo> {
    const tmp = this.tempPath();
    const hash = createHash('sha256');
    let size = 0;
    const tap = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        hash.update(chunk);
        size += chunk.length;
        cb(null, chunk);
      },
    });
    try {
      await pipeline(source as AsyncIterable<Buffer>, tap, createWriteStream(tmp, { mode: 0o600 }));
      const digest = `sha256:${hash.digest('hex')}`;
      if (expected && expected !== digest) {
        throw new SociError('ERR_DIGEST_MISMATCH', `content does not match its digest ${expected} (got ${digest})`);
      }
      await rename(tmp, this.blobPath(digest));
      return { digest, size };
    } finally {
      await rm(tmp, { force: true });
    }
  }

  async delete(digest: string): Promise<void> {
    await rm(this.blobPath(digest), { force: true });
  }

  async list(): Promise<string[]> {
    const names = await readdir(join(this.root, 'blobs', 'sha256')).catch(() => [] as string[]);
    return names.filter((n) => /^[a-f0-9]{64}$/.test(n)).map((n) => `sha256:${n}`);
  }

  private tempPath(): string {
    return join(this.root, 'ingest', `${randomBytes(8).toString('hex')}.tmp`);
  }
}

async function exists(p: string): Promise<boolean> {
  try {
    await stat(p);
    return true;
  } catch {
    return false;
  }
}
