/**
 * A blob downloaded in chunks: concurrent Range GETs write into a file at their offsets (memory
 * stays at the registry client's socket buffers, never a chunk, never a layer), while `bytes()`
 * reads the file back in order as soon as each byte is there, so decompress and unpack run while
 * the rest downloads. Every chunk request takes a permit from each of `limits` (the image's bound,
 * then the daemon's) for as long as it runs; chunks queue in order, so a layer's first chunks, and
 * an image's first layers, go first.
 *
 * The bytes are hashed in order as `bytes()` yields them and the blob's digest is checked at the
 * end: the iteration throws ERR_DIGEST_MISMATCH instead of finishing, so a consumer must not use
 * what it unpacked before the loop completes. An interrupted chunk resumes from the byte it broke
 * at (the client's retry budget); the first failure that survives retries aborts the others and is
 * what `bytes()` throws. The file is removed on failure; on success it holds the verified blob and
 * belongs to the caller.
 */
import { createHash } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { open, rm, type FileHandle } from 'node:fs/promises';
import type { Semaphore } from '../concurrency.js';
import { SociError } from '../errors.js';
import type { RegistryClient } from '../registry/index.js';

/** How much of the file one read of `bytes()` takes. */
const READ_SIZE = 1 << 20;

export interface ChunkedDownloadOptions {
  client: RegistryClient;
  repo: string;
  digest: string;
  size: number;
  /** bytes per Range request; 0 = the whole blob in one request */
  chunkSize: number;
  /** the file to create (it must not exist) */
  file: string;
  /** permits every chunk request holds, taken in this order */
  limits: Semaphore[];
  signal?: AbortSignal;
}

export class ChunkedDownload {
  /** bytes of each chunk written so far (each chunk is written front to back) */
  private readonly written: number[];
  private readonly chunk: number;
  private readonly abort = new AbortController();
  private failure: unknown;
  private wake: (() => void) | null = null;
  private readonly fd: Promise<FileHandle>;
  private readonly tasks: Promise<void>;
  /** chunk requests sent, for tests and logs */
  requests = 0;

  constructor(private readonly o: ChunkedDownloadOptions) {
    if (!Number.isSafeInteger(o.size) || o.size < 0) throw new SociError('ERR_INTERNAL', `invalid blob size ${o.size}`);
    this.chunk = o.chunkSize > 0 ? o.chunkSize : Math.max(1, o.size);
    this.written = Array.from({ length: Math.ceil(o.size / this.chunk) }, () => 0);
    // Every chunk request in flight listens on it: as many as max_concurrent_downloads_per_image,
    // which may pass Node's warning threshold (10) without any leak.
    setMaxListeners(0, this.abort.signal);
    o.signal?.addEventListener('abort', () => this.fail(o.signal!.reason), { once: true });
    this.fd = open(o.file, 'wx+', 0o600); // read back by bytes()
    this.fd.catch((e: unknown) => this.fail(e));
    this.tasks = Promise.all(this.written.map((_, i) => this.fetchChunk(i))).then(() => undefined);
  }

  /**
   * The blob's bytes in order, its digest checked at the end (see the file comment). A yielded
   * buffer is reused by the next read: a consumer copies what it keeps before asking for more
   * (the unpack pipe does), so a layer's read-back makes no garbage.
   */
  async *bytes(): AsyncGenerator<Buffer, void, undefined> {
    const hash = createHash('sha256');
    const readBuf = Buffer.allocUnsafe(Math.min(READ_SIZE, Math.max(1, this.o.size)));
    let pos = 0;
    let ok = false;
    try {
      const fd = await this.fd;
      while (pos < this.o.size) {
        if (this.failure !== undefined) throw this.failure;
        const i = Math.floor(pos / this.chunk);
        const avail = i * this.chunk + this.written[i]! - pos;
        if (avail <= 0) {
          await new Promise<void>((r) => {
            this.wake = r;
          });
          continue;
        }
        const buf = readBuf.subarray(0, Math.min(avail, READ_SIZE));
        const { bytesRead } = await fd.read(buf, 0, buf.length, pos);
        if (bytesRead !== buf.length) throw new SociError('ERR_IO', `download file ${this.o.file}: short read at ${pos}`);
        pos += bytesRead;
        hash.update(buf);
        yield buf;
      }
      await this.tasks;
      if (this.failure !== undefined) throw this.failure;
      const got = `sha256:${hash.digest('hex')}`;
      if (got !== this.o.digest)
        throw new SociError(
          'ERR_DIGEST_MISMATCH',
          `blob ${this.o.digest} in ${this.o.client.registry}/${this.o.repo}: received ${pos} bytes with digest ${got}`,
        );
      ok = true;
    } finally {
      if (!ok) this.fail(new SociError('ERR_INTERNAL', 'download abandoned'));
      await this.tasks.catch(() => undefined);
      await (await this.fd.catch(() => undefined))?.close().catch(() => undefined);
      if (!ok) await rm(this.o.file, { force: true });
    }
  }

  /** Stops a download that will not be read, and removes its file. */
  async discard(): Promise<void> {
    this.fail(new SociError('ERR_INTERNAL', 'download discarded'));
    await this.tasks.catch(() => undefined);
    await (await this.fd.catch(() => undefined))?.close().catch(() => undefined);
    await rm(this.o.file, { force: true });
  }

  private wrongLength(start: number, end: number, what: 'more' | 'fewer'): SociError {
    return new SociError(
      'ERR_REGISTRY',
      `blob ${this.o.digest} in ${this.o.client.registry}/${this.o.repo}: ${what} bytes than asked for in ${start}-${end - 1}`,
    );
  }

  private fail(e: unknown): void {
    if (this.failure !== undefined) return;
    this.failure = e ?? new SociError('ERR_INTERNAL', 'download aborted');
    this.abort.abort();
    this.notify();
  }

  private notify(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  private async fetchChunk(i: number): Promise<void> {
    const start = i * this.chunk;
    const end = Math.min(this.o.size, start + this.chunk);
    const run = this.o.limits.reduceRight<() => Promise<void>>(
      (inner, s) => () => s.run(inner),
      async () => {
        if (this.failure !== undefined) return;
        const fd = await this.fd;
        this.requests++;
        for await (const piece of this.o.client.streamBlobRange(this.o.repo, this.o.digest, start, end, this.abort.signal)) {
          if (this.written[i]! + piece.length > end - start) throw this.wrongLength(start, end, 'more');
          let off = 0;
          while (off < piece.length) off += (await fd.write(piece, off, piece.length - off, start + this.written[i]! + off)).bytesWritten;
          this.written[i]! += piece.length;
          this.notify();
        }
        if (this.written[i] !== end - start) throw this.wrongLength(start, end, 'fewer');
      },
    );
    try {
      await run();
    } catch (e) {
      this.fail(e);
    }
  }
}
