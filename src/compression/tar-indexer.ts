/**
 * Indexer for uncompressed tar layers: spans are fixed [i*span, (i+1)*span)
 * slices of the blob, the checkpoints field is the TarZinfo flatbuffer, and the bytes pass through.
 */
import { createHash, type Hash } from 'node:crypto';
import { SociError } from '../errors.js';
import { encodeTarZinfo } from './checkpoints.js';
import type { IndexResult, LayerIndexer } from './types.js';

/** AWS SOCI's MaxSpanID for tar: size/span − (size%span == 0 ? 1 : 0) (−1 for an empty blob). */
export function tarMaxSpanId(size: number, spanSize: number): number {
  return Math.floor(size / spanSize) - (size % spanSize === 0 ? 1 : 0);
}

export class TarIndexer implements LayerIndexer {
  private size = 0;
  /** bytes already hashed into `hash` for the current span */
  private inSpan = 0;
  private hash: Hash = createHash('sha256');
  private readonly digests: string[] = [];
  private ended = false;

  constructor(
    private readonly spanSize: number,
    private readonly onData: (b: Buffer) => void,
  ) {
    if (!Number.isSafeInteger(spanSize) || spanSize <= 0) {
      throw new SociError('ERR_USAGE', `span size must be a positive integer for uncompressed layers, got ${spanSize}`);
    }
  }

  write(chunk: Buffer): void {
    if (this.ended) throw new SociError('ERR_INTERNAL', 'write after end');
    let off = 0;
    while (off < chunk.length) {
      const take = Math.min(chunk.length - off, this.spanSize - this.inSpan);
      this.hash.update(chunk.subarray(off, off + take));
      this.inSpan += take;
      off += take;
      if (this.inSpan === this.spanSize) {
        this.digests.push(`sha256:${this.hash.digest('hex')}`);
        this.hash = createHash('sha256');
        this.inSpan = 0;
      }
    }
    this.size += chunk.length;
    if (chunk.length > 0) this.onData(chunk);
  }

  end(): IndexResult {
    if (this.ended) throw new SociError('ERR_INTERNAL', 'end called twice');
    this.ended = true;
    if (this.inSpan > 0) this.digests.push(`sha256:${this.hash.digest('hex')}`);
    const maxSpanId = tarMaxSpanId(this.size, this.spanSize);
    return {
      compression: 'uncompressed',
      checkpoints: encodeTarZinfo(this.spanSize, this.size),
      maxSpanId,
      spanDigests: this.digests.slice(),
      compressedSize: this.size,
    };
  }
}
