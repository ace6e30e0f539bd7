/**
 * One file of a layer through its zTOC, checked the way the FUSE path checks it: every span verified
 * against its zTOC digest before it is inflated, and the file's tar header checked against its zTOC
 * entry first (./entry-check.ts). `soci ztoc get-file` reads this way, from any byte source.
 */
import { readVerifiedRange } from '../compression/span-verify.js';
import { SociError } from '../errors.js';
import { TocHeaders, checkHeader } from './entry-check.js';
import { cleanPath, spanTable } from './spans.js';
import type { FileMetadata, Ztoc } from './types.js';

/**
 * The bytes of the file named `name` (the last TOC entry of that name, as tar extraction leaves it).
 * A hardlink resolves only to an entry before it in the archive, and every entry on the way (the
 * link's own header too) is checked against the layer.
 */
export async function readFileVerified(z: Ztoc, name: string, read: (start: number, end: number) => Promise<Buffer>, layer: string): Promise<Buffer> {
  const headers = new TocHeaders(z.toc, z.uncompressedArchiveSize, layer);
  const table = spanTable(z);
  const digests = z.compression.spanDigests;
  if (digests.length !== table.spans.length)
    throw new SociError('ERR_INVALID_ZTOC', `zTOC of layer ${layer} has ${digests.length} span digests for ${table.spans.length} spans`);
  const check = async (e: FileMetadata) => {
    const region = headers.region(e.uncompressedOffset);
    if (!region || region.entry !== e) throw new SociError('ERR_INVALID_ZTOC', `layer ${layer}: no zTOC entry has its data at ${e.uncompressedOffset}`);
    checkHeader(region, await readVerifiedRange(table, digests, read, region.start, region.end, layer), layer);
  };
  const want = cleanPath(name);
  let e = lastNamed(z.toc, want, Infinity);
  if (!e) throw new SociError('ERR_NOT_FOUND', `file ${JSON.stringify(name)} not found in the zTOC`);
  for (let steps = 0; e.type === 'hardlink'; steps++) {
    await check(e);
    const target = lastNamed(z.toc, cleanPath(e.linkname), e.uncompressedOffset);
    if (!target || steps > 64) throw new SociError('ERR_INVALID_ZTOC', `layer ${layer}: hardlink ${JSON.stringify(name)} does not point to an earlier entry`);
    e = target;
  }
  if (e.type !== 'reg') throw new SociError('ERR_UNSUPPORTED', `${JSON.stringify(name)} is a ${e.type}, not a regular file`);
  await check(e);
  return readVerifiedRange(table, digests, read, e.uncompressedOffset, e.uncompressedOffset + e.uncompressedSize, layer);
}

/** The last entry named `path` whose data comes before `before` in the archive. */
function lastNamed(toc: readonly FileMetadata[], path: string, before: number): FileMetadata | undefined {
  let found: FileMetadata | undefined;
  for (const e of toc)
    if (e.uncompressedOffset < before && cleanPath(e.name) === path && (!found || e.uncompressedOffset > found.uncompressedOffset)) found = e;
  return found;
}
