/**
 * Whoever can publish a SOCI index can publish a zTOC, and span digests only prove the compressed
 * bytes: nothing proves that the TOC maps a name to the right bytes of the layer. So before a file's
 * data is served the first time, the tar header(s) in front of it, which lie in verified span bytes,
 * are parsed again with the same Go-compatible walker that built the TOC and compared with its TOC
 * entry: name (PAX and GNU long names included), type, size, mode, uid/gid, link target, device
 * numbers, and that the data starts right after the header.
 *
 * Where the headers are: the first header is at offset 0 and the next one right after a file's data
 * and padding (AWS's zTOC reader derives TarHeaderOffset the same way), so entries in offset order
 * give each file's header region [start, dataOffset). Building that order also validates the TOC's
 * structure: offsets increasing, no overlaps, every entry inside the archive.
 */
import { SociError } from '../errors.js';
import { BLOCK } from './tar-header.js';
import { TarWalker } from './tar-walker.js';
import type { FileMetadata } from './types.js';

/** Go archive/tar's bound on a PAX or GNU long-name header; with a few blocks of slack. */
const MAX_HEADER_REGION = (1 << 20) + 8 * BLOCK;

export interface HeaderRegion {
  entry: FileMetadata;
  /** uncompressed offset of the entry's first header block */
  start: number;
  /** the entry's data offset (end of its headers) */
  end: number;
}

const align = (n: number) => Math.ceil(n / BLOCK) * BLOCK;
const show = (b: Buffer) => JSON.stringify(b.toString('latin1'));

export class TocHeaders {
  /** entries in archive order, and where each one's headers start (same index) */
  private readonly order: readonly FileMetadata[];
  private readonly starts: Float64Array;

  /**
   * Throws ERR_INVALID_ZTOC when the TOC's entries overlap or leave the archive. Cheap on the mount
   * path: a TOC written by a tar walk is already in archive order, so it is only sorted when not.
   */
  constructor(toc: readonly FileMetadata[], uncompressedArchiveSize: number, layer: string) {
    let sorted = true;
    for (let i = 1; i < toc.length && sorted; i++) sorted = toc[i - 1]!.uncompressedOffset <= toc[i]!.uncompressedOffset;
    this.order = sorted ? toc : [...toc].sort((a, b) => a.uncompressedOffset - b.uncompressedOffset);
    this.starts = new Float64Array(this.order.length);
    let next = 0;
    for (let i = 0; i < this.order.length; i++) {
      const e = this.order[i]!;
      const off = e.uncompressedOffset;
      const size = e.uncompressedSize;
      let why: string | undefined;
      if (!Number.isSafeInteger(off) || !Number.isSafeInteger(size) || size < 0) why = 'has an invalid offset or size';
      else if (off < next + BLOCK) why = `starts at ${off}, inside the previous entry or its header (next header at ${next})`;
      else if (off + size > uncompressedArchiveSize) why = `ends beyond the ${uncompressedArchiveSize}-byte archive`;
      else if (off - next > MAX_HEADER_REGION) why = `has ${off - next} bytes of headers`;
      if (why) throw new SociError('ERR_INVALID_ZTOC', `zTOC of layer ${layer}: entry ${show(e.name)} ${why}`);
      this.starts[i] = next;
      next = align(off + (e.type === 'reg' ? size : 0));
    }
  }

  /** The entry whose data (or, header-only entries, whose header's end) is at `dataOffset`. */
  region(dataOffset: number): HeaderRegion | undefined {
    let lo = 0;
    let hi = this.order.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const off = this.order[mid]!.uncompressedOffset;
      if (off === dataOffset) return { entry: this.order[mid]!, start: this.starts[mid]!, end: off };
      if (off < dataOffset) lo = mid + 1;
      else hi = mid - 1;
    }
    return undefined;
  }
}

/**
 * Throws ERR_INVALID_ZTOC (naming the layer, the entry and what differed) unless `headers`, the
 * bytes [region.start, region.end) of the uncompressed layer, are the tar header of `region.entry`.
 */
export function checkHeader(region: HeaderRegion, headers: Buffer, layer: string): void {
  const want = region.entry;
  const seen: FileMetadata[] = [];
  const walker = new TarWalker((e) => seen.push(e));
  const fail = (what: string) =>
    new SociError('ERR_INVALID_ZTOC', `layer ${layer}: the tar header of ${show(want.name)} does not match its zTOC entry: ${what}`);
  try {
    walker.write(headers);
  } catch (e) {
    throw fail(`unreadable header (${(e as Error).message})`);
  }
  if (seen.length !== 1) throw fail(seen.length ? `${seen.length} entries where one was expected` : 'no header before its data');
  const got = seen[0]!;
  if (got.uncompressedOffset !== headers.length) throw fail(`its data starts at ${region.start + got.uncompressedOffset}, the zTOC says ${region.end}`);
  const diffs: string[] = [];
  if (!got.name.equals(want.name)) diffs.push(`name ${show(got.name)}`);
  if (got.type !== want.type) diffs.push(`type ${got.type} (zTOC: ${want.type})`);
  if (got.uncompressedSize !== want.uncompressedSize) diffs.push(`size ${got.uncompressedSize} (zTOC: ${want.uncompressedSize})`);
  if (got.mode !== want.mode) diffs.push(`mode ${got.mode.toString(8)} (zTOC: ${want.mode.toString(8)})`);
  if (got.uid !== want.uid || got.gid !== want.gid) diffs.push(`owner ${got.uid}:${got.gid} (zTOC: ${want.uid}:${want.gid})`);
  if (!got.linkname.equals(want.linkname)) diffs.push(`link target ${show(got.linkname)}`);
  if (got.devmajor !== want.devmajor || got.devminor !== want.devminor) diffs.push('device numbers');
  if (diffs.length) throw fail(diffs.join(', '));
}
