/**
 * ReadTracker: what a workload really read from one layer, for "why was this not lazy?" answers and
 * the benchmark's model lower bound. It records distinct uncompressed bytes read at 4 KiB
 * page granularity (a bitmap: 32 KiB of memory per GiB of layer) and turns them into a compressed
 * estimate with each span's own compression ratio, so amplification = fetched ÷ needed is honest
 * for layers that mix text and incompressible data. Cost on the read path: a few bit operations.
 */
import type { SpanTable } from '../compression/types.js';

const PAGE_SHIFT = 12;

export interface ReadStats {
  /** distinct uncompressed bytes read (4 KiB pages) */
  bytesRead: number;
  /** compressed estimate of bytesRead: Σ pages read in a span × the span's compressed/uncompressed ratio */
  neededCompressed: number;
  /** spans holding at least one byte that was read */
  spansTouched: number;
  /** wall-clock ms (Date.now) of the first read served, 0 if none */
  firstReadAt: number;
  /** uncompressed bytes served in all, the same byte read twice counted twice (AWS's bytes served) */
  bytesServed: number;
}

export class ReadTracker {
  private readonly pages: Uint8Array;
  private readonly pagesPerSpan: Uint32Array;
  private readonly table: SpanTable;
  private firstReadAt = 0;
  private served = 0;

  constructor(table: SpanTable) {
    this.table = table;
    const size = table.spans.at(-1)?.uEnd ?? 0;
    this.pages = new Uint8Array(Math.ceil(Math.ceil(size / (1 << PAGE_SHIFT)) / 8));
    this.pagesPerSpan = new Uint32Array(table.spans.length);
  }

  /** Records a served read of uncompressed bytes [offset, end). */
  record(offset: number, end: number): void {
    if (end <= offset) return;
    this.served += end - offset;
    if (this.firstReadAt === 0) this.firstReadAt = Date.now();
    const first = Math.floor(offset / (1 << PAGE_SHIFT));
    const last = Math.floor((end - 1) / (1 << PAGE_SHIFT));
    let span = -1;
    let spanEnd = -1;
    for (let p = first; p <= last; p++) {
      const byte = p >> 3;
      const bit = 1 << (p & 7);
      if (this.pages[byte]! & bit) continue;
      this.pages[byte]! |= bit;
      const at = p * (1 << PAGE_SHIFT);
      if (at >= spanEnd) {
        span = this.table.spanIdForOffset(Math.max(at, offset));
        spanEnd = this.table.spans[span]!.uEnd;
      }
      this.pagesPerSpan[span]!++;
    }
  }

  stats(): ReadStats {
    let bytesRead = 0;
    let needed = 0;
    let touched = 0;
    for (const [i, n] of this.pagesPerSpan.entries()) {
      if (n === 0) continue;
      touched++;
      const sp = this.table.spans[i]!;
      const u = sp.uEnd - sp.uStart;
      const bytes = Math.min(n * (1 << PAGE_SHIFT), u);
      bytesRead += bytes;
      needed += u > 0 ? (bytes * (sp.cEnd - sp.cStart)) / u : 0;
    }
    return { bytesRead, neededCompressed: Math.round(needed), spansTouched: touched, firstReadAt: this.firstReadAt, bytesServed: this.served };
  }
}
