/**
 * Span digests computed while the indexer consumes the blob: O(1) memory,
 * no second pass. (A worker-thread variant was measured: copying the compressed bytes into shared
 * memory plus the wake-ups cost the main thread as much as hashing inline, so hashing stays inline.)
 */
import { createHash, type Hash } from 'node:crypto';

export class SpanDigester {
  private hash: Hash | null = null;
  private readonly digests: string[] = [];

  /** compressed bytes consumed, in order, once the first span is open */
  update(chunk: Buffer): void {
    this.hash?.update(chunk);
  }

  /** closes the current span (if one is open) and opens the next; `extra` = a shared byte to hash first */
  boundary(extra: number | null): void {
    if (this.hash) this.digests.push(`sha256:${this.hash.digest('hex')}`);
    this.hash = createHash('sha256');
    if (extra !== null) this.hash.update(Buffer.of(extra));
  }

  /** closes the last span; all digests "sha256:<hex>" in span order */
  finish(): string[] {
    if (this.hash) this.digests.push(`sha256:${this.hash.digest('hex')}`);
    this.hash = null;
    return this.digests.slice();
  }

  abort(): void {
    this.hash = null;
  }
}
