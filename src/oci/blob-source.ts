/**
 * Random access to a blob's bytes: a registry blob, a local file and a test fake all implement it.
 * The span manager depends on this, not on the registry client.
 */
export interface BlobSource {
  /** size of the blob in bytes */
  readonly size: number;
  /** bytes [start, end) exactly; rejects (never short-reads) on failure */
  read(start: number, end: number, signal?: AbortSignal): Promise<Buffer>;
}
