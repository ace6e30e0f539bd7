/**
 * containerd's content service: info, labels, read (streamed, ranged), write and delete.
 *
 * A write is one Write stream under a unique ref: WRITE messages of at most 1 MiB, then COMMIT with
 * the expected digest, total size and labels, so containerd itself verifies the bytes before they
 * become visible. Content that is already there (containerd answers ALREADY_EXISTS) only gets its
 * labels updated: GC references must be set whether or not the blob existed.
 */
import type * as grpc from '@grpc/grpc-js';
import { randomBytes } from 'node:crypto';
import { SociError, isSociError } from '../errors.js';
import type { ContainerdConnection } from './client.js';

export interface ContentInfo {
  digest: string;
  size: number;
  labels: Record<string, string>;
}

interface PInfo {
  digest: string;
  size: string;
  labels: Record<string, string>;
}

const CHUNK = 1 << 20;

const toInfo = (i: PInfo): ContentInfo => ({ digest: i.digest, size: Number(i.size), labels: i.labels ?? {} });

export class ContentService {
  constructor(private readonly c: ContainerdConnection) {}

  async info(digest: string): Promise<ContentInfo> {
    const r = (await this.c.unary('content', 'Info', { digest })) as { info: PInfo };
    return toInfo(r.info);
  }

  /** The info, or undefined when containerd does not have the blob. */
  async stat(digest: string): Promise<ContentInfo | undefined> {
    try {
      return await this.info(digest);
    } catch (e) {
      if (isSociError(e, 'ERR_NOT_FOUND')) return undefined;
      throw e;
    }
  }

  /** Sets these labels (others are left alone). */
  async label(digest: string, labels: Record<string, string>): Promise<void> {
    const keys = Object.keys(labels);
    if (!keys.length) return;
    await this.c.unary('content', 'Update', { info: { digest, labels }, update_mask: { paths: keys.map((k) => `labels.${k}`) } });
  }

  async delete(digest: string): Promise<void> {
    await this.c.unary('content', 'Delete', { digest });
  }

  async list(filters: string[] = []): Promise<ContentInfo[]> {
    const call = this.c.stub('content').List!({ filters }, this.c.metadata(), this.c.callOptions()) as grpc.ClientReadableStream<{ info: PInfo[] }>;
    const out: ContentInfo[] = [];
    try {
      for await (const m of call) for (const i of (m as { info: PInfo[] }).info) out.push(toInfo(i));
    } catch (e) {
      throw this.c.error(e as grpc.ServiceError, 'content.List');
    }
    return out;
  }

  /** Bytes [offset, offset+size) (size 0: to the end), streamed as containerd sends them. */
  async *read(digest: string, offset = 0, size = 0): AsyncIterable<Buffer> {
    const call = this.c.stub('content').Read!(
      { digest, offset: String(offset), size: String(size) },
      this.c.metadata(),
      this.c.callOptions(),
    ) as grpc.ClientReadableStream<{ data: Buffer }>;
    try {
      for await (const m of call) yield (m as { data: Buffer }).data;
    } catch (e) {
      throw this.c.error(e as grpc.ServiceError, 'content.Read');
    } finally {
      call.cancel();
    }
  }

  async get(digest: string, maxBytes = 64 << 20): Promise<Buffer> {
    const parts: Buffer[] = [];
    let n = 0;
    for await (const c of this.read(digest)) {
      n += c.length;
      if (n > maxBytes) throw new SociError('ERR_INVALID_MANIFEST', `blob ${digest} is larger than ${maxBytes} bytes`);
      parts.push(c);
    }
    return Buffer.concat(parts, n);
  }

  async readRange(digest: string, start: number, end: number): Promise<Buffer> {
    const parts: Buffer[] = [];
    for await (const c of this.read(digest, start, end - start)) parts.push(c);
    const b = Buffer.concat(parts);
    if (b.length !== end - start) throw new SociError('ERR_IO', `blob ${digest}: read ${b.length} bytes at ${start}, wanted ${end - start}`);
    return b;
  }

  /** Writes bytes that must hash to `digest`, with labels; an existing blob only gets the labels. */
  async put(bytes: Buffer, digest: string, labels: Record<string, string> = {}): Promise<void> {
    return this.putStream(split(bytes), bytes.length, digest, labels);
  }

  /**
   * The same for `size` bytes streamed from `source` (a layer blob read from disk): written as it
   * is read, waiting for the stream to drain, so memory holds a chunk or two, never the blob.
   */
  async putStream(source: AsyncIterable<Buffer> | Iterable<Buffer>, size: number, digest: string, labels: Record<string, string> = {}): Promise<void> {
    if (await this.stat(digest)) return this.label(digest, labels);
    try {
      await this.write(source, size, digest, labels);
    } catch (e) {
      if (!isSociError(e, 'ERR_ALREADY_EXISTS')) throw e;
      await this.label(digest, labels);
    }
  }

  private async write(source: AsyncIterable<Buffer> | Iterable<Buffer>, size: number, digest: string, labels: Record<string, string>): Promise<void> {
    const ref = `soci-${digest.replace(':', '-')}-${randomBytes(6).toString('hex')}`;
    const call = this.c.stub('content').Write!(this.c.metadata(), this.c.callOptions()) as grpc.ClientDuplexStream<Record<string, unknown>, { action: string }>;
    let failed: unknown;
    const committed = new Promise<void>((resolve, reject) => {
      call.on('data', (m: { action: string }) => {
        if (m.action === 'COMMIT') resolve();
      });
      call.on('error', (e: grpc.ServiceError) => reject(this.c.error(e, 'content.Write')));
      call.on('end', () => reject(new SociError('ERR_CONTAINERD', `containerd closed the write of ${digest} before it was committed`)));
    });
    committed.catch((e: unknown) => {
      failed ??= e;
    });
    try {
      const total = String(size);
      let offset = 0;
      for await (const data of source) {
        if (failed !== undefined) throw failed;
        for (const piece of split(data)) {
          if (!call.write({ action: 'WRITE', ref, total, expected: digest, offset: String(offset), data: piece }))
            await Promise.race([new Promise<void>((r) => call.once('drain', r)), committed]); // an error ends the wait too
          offset += piece.length;
        }
      }
      call.write({ action: 'COMMIT', ref, total, expected: digest, offset: String(offset), labels });
      await committed;
      call.end();
    } catch (e) {
      call.cancel();
      throw failed ?? e;
    }
  }
}

/** A buffer in WRITE-sized pieces (containerd takes at most a few MiB per message). */
function* split(b: Buffer): Generator<Buffer> {
  for (let off = 0; off < b.length; off += CHUNK) yield b.subarray(off, off + CHUNK);
}
