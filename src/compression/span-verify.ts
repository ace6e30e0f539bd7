/**
 * Span digests: every span's compressed bytes are hashed and compared with the zTOC's digest before
 * a byte of it is inflated or served. One function for every read path (FUSE reads, prefetch,
 * `soci ztoc get-file`), so none of them can use bytes the zTOC did not vouch for.
 */
import { createHash } from 'node:crypto';
import { SociError } from '../errors.js';
import { extractSpans } from './extract.js';
import type { SpanTable } from './types.js';

/** sha256 in 1 MiB steps, yielding between them so big spans never stall the event loop. */
export async function sha256Chunked(buf: Buffer): Promise<string> {
  const h = createHash('sha256');
  const step = 1 << 20;
  for (let o = 0; o < buf.length; o += step) {
    h.update(buf.subarray(o, o + step));
    if (o + step < buf.length) await new Promise<void>((r) => setImmediate(r));
  }
  return `sha256:${h.digest('hex')}`;
}

/**
 * The first span of `ids` whose bytes do not match its digest, or undefined when all match.
 * `buf` holds the compressed bytes from spans[ids[0]].cStart on.
 */
export async function firstBadSpan(table: SpanTable, digests: readonly string[], ids: readonly number[], buf: Buffer): Promise<number | undefined> {
  const start = table.spans[ids[0]!]!.cStart;
  for (const id of ids) {
    const sp = table.spans[id]!;
    if (sp.cEnd - start > buf.length || (await sha256Chunked(buf.subarray(sp.cStart - start, sp.cEnd - start))) !== digests[id]) return id;
  }
  return undefined;
}

/** Throws ERR_DIGEST_MISMATCH naming the span and the layer when any span of `ids` does not match. */
export async function verifySpans(table: SpanTable, digests: readonly string[], ids: readonly number[], buf: Buffer, layer: string): Promise<void> {
  const bad = await firstBadSpan(table, digests, ids, buf);
  if (bad !== undefined) throw new SociError('ERR_DIGEST_MISMATCH', `span ${bad} of layer ${layer} does not match its zTOC digest`);
}

/**
 * Uncompressed bytes [uStart, uEnd) of a layer, from the compressed bytes of the spans holding them
 * (`read(cStart, cEnd)`, end exclusive), each span verified before it is inflated.
 */
export async function readVerifiedRange(
  table: SpanTable,
  digests: readonly string[],
  read: (start: number, end: number) => Promise<Buffer>,
  uStart: number,
  uEnd: number,
  layer: string,
): Promise<Buffer> {
  if (uEnd <= uStart) return Buffer.alloc(0);
  const first = table.spanIdForOffset(uStart);
  const last = table.spanIdForOffset(uEnd - 1);
  const fs = table.spans[first]!;
  const ls = table.spans[last]!;
  const compressed = await read(fs.cStart, ls.cEnd);
  if (compressed.length !== ls.cEnd - fs.cStart)
    throw new SociError('ERR_IO', `short read of layer ${layer} bytes ${fs.cStart}-${ls.cEnd}: got ${compressed.length}`);
  const ids: number[] = [];
  for (let i = first; i <= last; i++) ids.push(i);
  await verifySpans(table, digests, ids, compressed, layer);
  const data = await extractSpans(table, first, last, compressed);
  const from = uStart - fs.uStart;
  if (data.length < from + (uEnd - uStart))
    throw new SociError('ERR_INVALID_ZTOC', `layer ${layer}: spans ${first}..${last} inflate to fewer bytes than the zTOC says`);
  return data.subarray(from, from + (uEnd - uStart));
}
