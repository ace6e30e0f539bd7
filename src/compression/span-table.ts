/**
 * Span tables from a zTOC's checkpoints: where each span lives in the
 * compressed blob and in the uncompressed archive, and which span holds a given offset.
 */
import { SociError } from '../errors.js';
import { decodeCheckpoints, decodeTarZinfo } from './checkpoints.js';
import { tarMaxSpanId } from './tar-indexer.js';
import type { Checkpoint, Compression, Span, SpanTable } from './types.js';

function bad(msg: string): SociError {
  return new SociError('ERR_INVALID_CHECKPOINTS', msg);
}

function checkSize(v: number, what: string): void {
  if (!Number.isSafeInteger(v) || v < 0) throw bad(`${what} ${v} is not a valid size`);
}

class GzipSpanTable implements SpanTable {
  readonly compression = 'gzip' as const;
  readonly maxSpanId: number;
  constructor(
    readonly spanSize: number,
    readonly spans: readonly Span[],
    private readonly cps: readonly Checkpoint[],
  ) {
    this.maxSpanId = spans.length - 1;
  }
  spanIdForOffset(u: number): number {
    // largest i with out_i <= u (checkpoint 0 if none)
    let lo = 0;
    let hi = this.spans.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.spans[mid]!.uStart <= u) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }
  checkpoint(i: number): Checkpoint {
    const cp = this.cps[i];
    if (!cp) throw new SociError('ERR_INTERNAL', `span ${i} out of range (max ${this.maxSpanId})`);
    return cp;
  }
}

class TarSpanTable implements SpanTable {
  readonly compression = 'uncompressed' as const;
  readonly maxSpanId: number;
  readonly spans: readonly Span[];
  constructor(
    readonly spanSize: number,
    size: number,
  ) {
    this.maxSpanId = tarMaxSpanId(size, spanSize);
    const spans: Span[] = [];
    for (let i = 0; i <= this.maxSpanId; i++) {
      const s = i * spanSize;
      const e = Math.min(s + spanSize, size);
      spans.push({ id: i, cStart: s, cEnd: e, uStart: s, uEnd: e });
    }
    this.spans = spans;
  }
  /** offset/span, clamped so a read ending at EOF of a span-multiple blob stays in the table */
  spanIdForOffset(u: number): number {
    return Math.max(0, Math.min(Math.floor(u / this.spanSize), this.maxSpanId));
  }
  checkpoint(): Checkpoint {
    throw new SociError('ERR_UNSUPPORTED', 'uncompressed layers have no gzip checkpoints');
  }
}

/**
 * Parses the zTOC `checkpoints` bytes. gzip: zinfo v2 or legacy v1 (decided by length), spans
 * validated as strictly increasing in both domains and within the archive sizes. tar: TarZinfo.
 * Any inconsistency is SociError ERR_INVALID_CHECKPOINTS.
 */
export function parseCheckpoints(blob: Buffer, compression: Compression, compressedSize: number, uncompressedSize: number): SpanTable {
  checkSize(compressedSize, 'compressed size');
  checkSize(uncompressedSize, 'uncompressed size');
  if (compression === 'uncompressed') {
    const z = decodeTarZinfo(blob);
    if (z.size !== compressedSize) throw bad(`TarZinfo size ${z.size} differs from the layer size ${compressedSize}`);
    return new TarSpanTable(z.spanSize, z.size);
  }
  if (compression !== 'gzip') throw new SociError('ERR_UNSUPPORTED', `compression "${String(compression)}" is not supported`);
  const { spanSize, checkpoints: cps } = decodeCheckpoints(blob);
  const n = cps.length;
  const spans: Span[] = [];
  for (let i = 0; i < n; i++) {
    const cp = cps[i]!;
    const next = cps[i + 1];
    if (cp.bits !== 0 && cp.in < 1) throw bad(`checkpoint ${i} has bits but starts at offset 0`);
    const cStart = cp.in - (cp.bits !== 0 ? 1 : 0);
    const cEnd = next ? next.in : compressedSize;
    const uEnd = next ? next.out : uncompressedSize;
    if (next && (next.in <= cp.in || next.out <= cp.out)) {
      throw bad(`checkpoints ${i} and ${i + 1} are not strictly increasing (in ${cp.in}→${next.in}, out ${cp.out}→${next.out})`);
    }
    if (cEnd > compressedSize || cp.in > compressedSize) throw bad(`checkpoint ${i} lies beyond the compressed size ${compressedSize}`);
    if (uEnd > uncompressedSize || cp.out > uncompressedSize) throw bad(`checkpoint ${i} lies beyond the uncompressed size ${uncompressedSize}`);
    spans.push({ id: i, cStart, cEnd, uStart: cp.out, uEnd });
  }
  return new GzipSpanTable(spanSize, spans, cps);
}
