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
  private readonly byData = new Map<number, HeaderRegion>();

  /** Throws ERR_INVALID_ZTOC when the TOC's entries overlap or leave the archive. */
  constructor(toc: readonly FileMetadata[], uncompressedArchiveSize: number, layer: string) {
    const order = [...toc].sort((a, b) => a.uncompressedOffset - b.uncompressedOffset);
    let next = 0;
    for (const e of order) {
      const bad = (why: string) => new SociError('ERR_INVALID_ZTOC', `zTOC of layer ${layer}: entry ${show(e.name)} ${why}`);
      if (!Number.isSafeInteger(e.uncompressedOffset) || !Number.isSafeInteger(e.uncompressedSize) || e.uncompressedSize < 0) throw bad('has an invalid offset or size');
      if (e.uncompressedOffset < next + BLOCK) throw bad(`starts at ${e.uncompressedOffset}, inside the previous entry or its header (next header at ${next})`);
      if (e.uncompressedOffset + e.uncompressedSize > uncompressedArchiveSize) throw bad(`ends beyond the ${uncompressedArchiveSize}-byte archive`);
      if (e.uncompressedOffset - next > MAX_HEADER_REGION) throw bad(`has ${e.uncompressedOffset - next} bytes of headers`);
      this.byData.set(e.uncompressedOffset, { entry: e, start: next, end: e.uncompressedOffset });
      next = align(e.uncompressedOffset + (e.type === 'reg' ? e.uncompressedSize : 0));
    }
  }

  /** The entry whose data (or, header-only entries, whose header's end) is at `dataOffset`. */
  region(dataOffset: number): HeaderRegion | undefined {
    return this.byData.get(dataOffset);
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
  const fail = (what: string) => new SociError('ERR_INVALID_ZTOC', `layer ${layer}: the tar header of ${show(want.name)} does not match its zTOC entry: ${what}`);
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
