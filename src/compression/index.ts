/**
 * Public face of src/compression: checkpoint indexing, span tables and span extraction.
 * Contract types live in ./types.ts.
 */
import { SociError } from '../errors.js';
import { selectEngine } from './engine.js';
import { GzipIndexer } from './gzip-indexer.js';
import { TarIndexer } from './tar-indexer.js';
import type { LayerIndexer, LayerIndexerOptions } from './types.js';

export type * from './types.js';
export { selectEngine, nativeAvailable } from './engine.js';
export { encodeCheckpoints, decodeCheckpoints, encodeTarZinfo, decodeTarZinfo, WINDOW_SIZE, RECORD_SIZE } from './checkpoints.js';
export type { DecodedCheckpoints, TarZinfo } from './checkpoints.js';
export { tarMaxSpanId } from './tar-indexer.js';
export { parseCheckpoints } from './span-table.js';
export { extractSpans } from './extract.js';

/**
 * A single-pass indexer over a layer blob: write() the blob in order, end() for the zTOC's
 * compression info. Uncompressed bytes reach `onData` synchronously and in order, as views that
 * are valid only during the call (gzip); the indexer never keeps the chunks given to write().
 */
export function createLayerIndexer(opts: LayerIndexerOptions): LayerIndexer {
  if (opts.compression === 'gzip') return new GzipIndexer(opts.spanSize, opts.engine ?? selectEngine(), opts.onData);
  if (opts.compression === 'uncompressed') return new TarIndexer(opts.spanSize, opts.onData);
  throw new SociError('ERR_UNSUPPORTED', `compression "${String(opts.compression)}" is not supported`);
}
