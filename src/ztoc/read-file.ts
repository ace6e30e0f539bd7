/**
 * One file of a layer through its zTOC, checked the way the FUSE path checks it: every span verified
 * against its zTOC digest before it is inflated, and the file's tar header checked against its zTOC
 * entry first (./entry-check.ts). `soci ztoc get-file` reads this way, from any byte source.
 */
import { readVerifiedRange } from '../compression/span-verify.js';
import { SociError } from '../errors.js';
import { TocHeaders, checkHeader } from './entry-check.js';
import { spanTable } from './spans.js';
import type { FileMetadata, Ztoc } from './types.js';

export async function readFileVerified(z: Ztoc, meta: FileMetadata, read: (start: number, end: number) => Promise<Buffer>, layer: string): Promise<Buffer> {
  if (meta.type !== 'reg') throw new SociError('ERR_UNSUPPORTED', `${JSON.stringify(meta.name.toString('utf8'))} is a ${meta.type}, not a regular file`);
  const headers = new TocHeaders(z.toc, z.uncompressedArchiveSize, layer);
  if (meta.uncompressedSize === 0) return Buffer.alloc(0);
  const table = spanTable(z);
  const digests = z.compression.spanDigests;
  if (digests.length !== table.spans.length) throw new SociError('ERR_INVALID_ZTOC', `zTOC of layer ${layer} has ${digests.length} span digests for ${table.spans.length} spans`);
  const region = headers.region(meta.uncompressedOffset);
  if (!region) throw new SociError('ERR_INVALID_ZTOC', `layer ${layer}: no zTOC entry has its data at ${meta.uncompressedOffset}`);
  checkHeader(region, await readVerifiedRange(table, digests, read, region.start, region.end, layer), layer);
  return readVerifiedRange(table, digests, read, meta.uncompressedOffset, meta.uncompressedOffset + meta.uncompressedSize, layer);
}
