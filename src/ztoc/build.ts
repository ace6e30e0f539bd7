/**
 * Build a zTOC from a layer blob in one streaming pass: the compression
 * indexer inflates and records checkpoints, and hands every uncompressed chunk to the tar walker.
 * Memory is bounded by the TOC and the checkpoints; file data is never held.
 */
import { createLayerIndexer } from '../compression/index.js';
import type { Compression, EngineName } from '../compression/types.js';
import { SociError } from '../errors.js';
import { BUILD_TOOL_IDENTIFIER } from '../version.js';
import { TarWalker } from './tar-walker.js';
import type { FileMetadata, Ztoc } from './types.js';

export const ZTOC_VERSION = '0.9';

export interface BuildZtocOptions {
  compression: Compression;
  spanSize: number;
  /** default BUILD_TOOL_IDENTIFIER ("AWS SOCI CLI v0.2") so artifacts match the Go CLI */
  buildToolIdentifier?: string;
  engine?: EngineName;
}

export async function buildZtoc(source: AsyncIterable<Buffer>, opts: BuildZtocOptions): Promise<Ztoc> {
  if (!Number.isSafeInteger(opts.spanSize) || opts.spanSize < 0) {
    throw new SociError('ERR_USAGE', `span size must be >= 0, got ${opts.spanSize}`);
  }
  const toc: FileMetadata[] = [];
  const walker = new TarWalker((e) => toc.push(e));
  const indexer = createLayerIndexer({
    compression: opts.compression,
    spanSize: opts.spanSize,
    ...(opts.engine ? { engine: opts.engine } : {}),
    onData: (chunk) => walker.write(chunk),
  });
  for await (const chunk of source) indexer.write(chunk);
  const index = indexer.end();
  const tar = walker.end();
  return {
    version: ZTOC_VERSION,
    buildToolIdentifier: opts.buildToolIdentifier ?? BUILD_TOOL_IDENTIFIER,
    compressedArchiveSize: index.compressedSize,
    uncompressedArchiveSize: tar.uncompressedArchiveSize,
    toc,
    compression: {
      algorithm: index.compression,
      maxSpanId: index.maxSpanId,
      spanDigests: index.spanDigests,
      checkpoints: index.checkpoints,
    },
  };
}
