/**
 * Contract of src/compression.
 * Everything here is about compressed <-> uncompressed byte streams; nothing knows tar or zTOC.
 * Offsets are JS numbers (exact up to 2^53, far beyond any layer).
 */
export type Compression = 'gzip' | 'uncompressed';
export type EngineName = 'native' | 'js';

/** One gzip checkpoint (zinfo record). */
export interface Checkpoint {
  /** compressed offset of the first full byte after the block boundary */
  in: number;
  /** uncompressed offset of the boundary */
  out: number;
  /** number of bits (0..7) of byte in-1 that belong to the span starting here */
  bits: number;
  /** the 32 KiB of uncompressed data before `out` (zero padded at the front) */
  window: Buffer;
}

/** What indexing a layer yields (the zTOC's compression_info, plus the blob size). */
export interface IndexResult {
  compression: Compression;
  /** the `checkpoints` bytes stored in the zTOC: gzip zinfo v2 blob, or the TarZinfo flatbuffer */
  checkpoints: Buffer;
  /** number of spans - 1 */
  maxSpanId: number;
  /** "sha256:<hex>" of each span's compressed byte range */
  spanDigests: string[];
  /** bytes of the layer blob consumed (= compressed_archive_size) */
  compressedSize: number;
}

/**
 * Single-pass indexer: feed the layer blob in order; uncompressed bytes are handed to `onData`
 * synchronously and in order (the tar walker consumes them), so the layer is read once.
 */
export interface LayerIndexer {
  write(chunk: Buffer): void;
  /** after the last chunk; throws SociError ERR_BAD_GZIP on truncated/corrupt input */
  end(): IndexResult;
}

export interface LayerIndexerOptions {
  compression: Compression;
  spanSize: number;
  /** default: selectEngine() — SOCI_ZLIB_ENGINE=js|native, else native when the addon loads */
  engine?: EngineName;
  /**
   * Receives the uncompressed bytes, synchronously and in order. The buffer is a view into a reused
   * output buffer, valid only during the call: copy (Buffer.from) whatever must outlive it.
   */
  onData: (uncompressed: Buffer) => void;
}

/** A span's extents in both domains. */
export interface Span {
  id: number;
  /** compressed range [cStart, cEnd) to fetch and hash */
  cStart: number;
  cEnd: number;
  /** uncompressed range [uStart, uEnd) it yields */
  uStart: number;
  uEnd: number;
}

/**
 * The span layout of one layer, from its zTOC checkpoints (parseCheckpoints).
 * gzip: span i = [in_i − (bits_i?1:0), in_{i+1}) compressed, [out_i, out_{i+1}) uncompressed,
 * the last span ending at the blob / uncompressed archive size. tar: fixed [i*span, (i+1)*span).
 */
export interface SpanTable {
  readonly compression: Compression;
  readonly spanSize: number;
  readonly spans: readonly Span[];
  /** spans.length − 1 */
  readonly maxSpanId: number;
  /** the span holding uncompressed offset u (gzip: largest i with out_i ≤ u; tar: u/span), clamped to [0, maxSpanId] */
  spanIdForOffset(u: number): number;
  /** gzip only: the checkpoint span i starts from (ERR_UNSUPPORTED for tar) */
  checkpoint(i: number): Checkpoint;
}
