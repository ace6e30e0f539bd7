/**
 * Span math over a zTOC: which spans a file touches, name lookup
 * with hardlink resolution, whole-file extraction, and the Unix mode of an entry.
 */
import { SociError } from '../errors.js';
import { parseCheckpoints } from '../compression/index.js';
import { readVerifiedRange } from '../compression/span-verify.js';
import type { Span, SpanTable } from '../compression/types.js';
import type { FileMetadata, Ztoc } from './types.js';
import { cleanPath, quoteName } from './names.js';

export { cleanPath };

/** The part of compression's SpanTable this module relies on. */
/** Spans first..last of a zTOC, inclusive (named as in AWS's prefetch artifact JSON). */
export interface SpanRange {
  start_span: number;
  end_span: number;
}

export interface SpanLookup {
  readonly spans: readonly Span[];
  spanIdForOffset(uncompressedOffset: number): number;
}

const tables = new WeakMap<Ztoc, SpanTable>();

/** The zTOC's span table (parsed once per Ztoc object; throws ERR_INVALID_CHECKPOINTS when bad). */
export function spanTable(z: Ztoc): SpanTable {
  let t = tables.get(z);
  if (!t) {
    t = parseCheckpoints(z.compression.checkpoints, z.compression.algorithm, z.compressedArchiveSize, z.uncompressedArchiveSize);
    tables.set(z, t);
  }
  return t;
}

function isZtoc(x: SpanLookup | Ztoc): x is Ztoc {
  return (x as Ztoc).toc !== undefined && (x as Ztoc).compression !== undefined;
}

/**
 * Start/end span of a file as `soci ztoc info` and prefetch compute them: SpanID(offset) and
 * SpanID(offset + size). The end is the *exclusive* end offset, so a file ending exactly on a span
 * boundary reports the following span too (AWS quirk, kept for identical output).
 */
export function fileSpans(tableOrZtoc: SpanLookup | Ztoc, entry: FileMetadata): { start: number; end: number } {
  const t = isZtoc(tableOrZtoc) ? spanTable(tableOrZtoc) : tableOrZtoc;
  return {
    start: t.spanIdForOffset(entry.uncompressedOffset),
    end: t.spanIdForOffset(entry.uncompressedOffset + entry.uncompressedSize),
  };
}

/**
 * The entry whose cleaned name equals the cleaned `name` (last one wins, like the Go map), with
 * hardlinks resolved to their target entry (Go `GetMetadataEntry`). `undefined` when absent.
 */
export function findEntry(z: Ztoc, name: string | Buffer): FileMetadata | undefined {
  const want = cleanPath(name);
  let found: FileMetadata | undefined;
  for (const e of z.toc) if (cleanPath(e.name) === want) found = e;
  // Follow hardlink chains; the step bound protects against cycles in a hostile zTOC.
  for (let steps = 0; found && found.type === 'hardlink' && steps < 64; steps++) {
    const target = cleanPath(found.linkname);
    let next: FileMetadata | undefined;
    for (const e of z.toc) if (cleanPath(e.name) === target) next = e;
    if (!next) throw new SociError('ERR_NOT_FOUND', `hardlink ${quoteName(want)} points to missing ${quoteName(target)}`);
    found = next;
  }
  if (found && found.type === 'hardlink') throw new SociError('ERR_INVALID_ZTOC', `hardlink loop at ${quoteName(want)}`);
  return found;
}

/**
 * The file's bytes, fetched span by span through `read(start, end)` (compressed blob range,
 * end exclusive), verified and inflated from the spans' checkpoints. Hardlinks are resolved first.
 * No tar-header check: `readFileVerified` (read-file.ts) is the one for untrusted zTOCs.
 */
export async function extractFile(
  z: Ztoc,
  entry: FileMetadata,
  read: (start: number, end: number) => Promise<Buffer>,
  /** the layer's digest, for messages */
  layer = '(digest not given)',
): Promise<Buffer> {
  let e = entry;
  if (e.type === 'hardlink') {
    const t = findEntry(z, e.linkname);
    if (!t) throw new SociError('ERR_NOT_FOUND', `hardlink target ${quoteName(e.linkname)} not found`);
    e = t;
  }
  if (e.type !== 'reg') throw new SociError('ERR_UNSUPPORTED', `${quoteName(e.name)} is a ${e.type}, not a regular file`);
  if (e.uncompressedSize === 0) return Buffer.alloc(0);
  const endOffset = e.uncompressedOffset + e.uncompressedSize;
  if (endOffset > z.uncompressedArchiveSize) {
    throw new SociError('ERR_INVALID_ZTOC', `entry ${quoteName(e.name)} ends beyond the archive`);
  }
  // Only the spans holding the file's bytes, each verified against its digest before inflating.
  return readVerifiedRange(spanTable(z), z.compression.spanDigests, read, e.uncompressedOffset, endOffset, layer);
}

const S_IFMT = { reg: 0o100000, hardlink: 0o100000, dir: 0o040000, symlink: 0o120000, char: 0o020000, block: 0o060000, fifo: 0o010000 } as const;

/**
 * Unix st_mode of an entry: permission + setuid/setgid/sticky bits of the tar mode, and the file
 * type from the entry type (Go `FileMetadata.FileMode`; type bits inside the tar mode are ignored).
 */
export function fileMode(entry: FileMetadata): number {
  return (entry.mode & 0o7777) | S_IFMT[entry.type];
}
