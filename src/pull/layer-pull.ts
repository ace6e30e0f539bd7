/**
 * One layer, downloaded in chunks and unpacked as it arrives: chunked download (digest-checked in
 * order) → the unpack worker, which decompresses it, hashes the tar (checked here against the
 * config's diff_id) and applies it to `dir` in overlay lower-layer form, off the event loop. The unpack
 * takes its permits (`unpacks`) before it starts; the download does not wait for them, it goes on
 * to disk. Any failure throws a one-line SociError, and the caller discards `dir`.
 */
import { rm } from 'node:fs/promises';
import type { Semaphore } from '../concurrency.js';
import { SociError } from '../errors.js';
import { unpackLayer, type UnpackStats } from '../fs/unpack.js';
import { layerCompression } from '../oci/media-types.js';
import type { RegistryClient } from '../registry/index.js';
import { ChunkedDownload } from './chunked-download.js';
import type { DecompressTools } from './decompressors.js';

export interface LayerPullOptions {
  client: RegistryClient;
  repo: string;
  layer: { digest: string; size: number; mediaType: string };
  diffId: string;
  /** the empty directory to unpack into */
  dir: string;
  /** a path for the download file */
  downloadFile: string;
  chunkSize: number;
  downloads: Semaphore[];
  unpacks: Semaphore[];
  tools: DecompressTools;
  /** keeps the verified compressed blob; undefined = it is discarded after the unpack */
  keep?: KeepBlob;
  /** a download of this layer into `downloadFile` that was started before its descriptor was known */
  download?: ChunkedDownload;
  signal?: AbortSignal;
}

/**
 * Keeps a verified blob found in `file` (digest- and diff_id-checked): true when the file was moved
 * away (the caller then leaves it alone), false when its bytes were copied and it may be removed.
 */
export type KeepBlob = (file: string, layer: { digest: string; size: number; mediaType: string }) => Promise<boolean>;

export interface LayerPullResult extends UnpackStats {
  requests: number;
}

export async function pullLayer(o: LayerPullOptions): Promise<LayerPullResult> {
  const comp = layerCompression(o.layer.mediaType);
  if (comp !== 'gzip' && comp !== 'zstd' && comp !== 'uncompressed') {
    await o.download?.discard();
    throw new SociError('ERR_UNSUPPORTED', `layer ${o.layer.digest}: media type ${o.layer.mediaType} cannot be unpacked`);
  }
  const dl = o.download ?? startDownload(o);
  const bytes = dl.bytes();
  // The download's own failure (registry, digest), as the blob's reader saw it.
  let blobError: unknown;
  const next = () =>
    bytes.next().catch((e: unknown) => {
      blobError ??= e;
      throw e;
    });
  // The decoder may stop reading at the end of its stream; it must not close the download then,
  // or the blob's digest would never be checked: it gets an iterator without return().
  const source: AsyncIterable<Buffer> = { [Symbol.asyncIterator]: () => ({ next }) };
  let kept = false;
  try {
    // The worker decompresses, hashes the tar and applies it, and reads the blob to its end (gzip
    // trailer, padding), so the download has checked the blob's digest when this returns.
    const tool = comp === 'uncompressed' ? undefined : o.tools[comp];
    const { diffId, ...stats } = await runWithin(o.unpacks, () => unpackLayer(source, comp, o.dir, tool ? { tool } : {}));
    while (!(await next()).done) {
      /* nothing left, unless a worker stopped early: then the digest check still runs */
    }
    if (diffId !== o.diffId)
      throw new SociError('ERR_DIGEST_MISMATCH', `layer ${o.layer.digest}: uncompressed digest ${diffId} does not match diff_id ${o.diffId}`);
    if (o.keep) kept = await o.keep(o.downloadFile, o.layer);
    return { ...stats, requests: dl.requests };
  } catch (e) {
    // A byte changed or lost on the way makes the decoder (a gzip CRC, a bad block), the tar
    // reader or the diff_id check fail before the blob's digest is known, with a message that
    // blames the image; whichever noticed first is a race. The rest of the blob is on its way to
    // disk regardless: read it to its end, and a blob that is not what the manifest names is the
    // error to report, every time.
    if (blobError === undefined)
      try {
        while (!(await next()).done) {
          /* the rest of the blob, hashed */
        }
      } catch {
        /* kept in blobError */
      }
    throw blobError ?? e;
  } finally {
    await bytes.return(undefined).catch(() => undefined);
    if (!kept) await rm(o.downloadFile, { force: true });
  }
}

/** The chunked download of `o.layer` into `o.downloadFile`. */
export function startDownload(o: Pick<LayerPullOptions, 'client' | 'repo' | 'layer' | 'downloadFile' | 'chunkSize' | 'downloads' | 'signal'>): ChunkedDownload {
  return new ChunkedDownload({
    client: o.client,
    repo: o.repo,
    digest: o.layer.digest,
    size: o.layer.size,
    chunkSize: o.chunkSize,
    file: o.downloadFile,
    limits: o.downloads,
    ...(o.signal ? { signal: o.signal } : {}),
  });
}

/** `fn` while holding a permit of every semaphore, taken in order. */
function runWithin<T>(sems: Semaphore[], fn: () => Promise<T>): Promise<T> {
  return sems.reduceRight<() => Promise<T>>((inner, s) => () => s.run(inner), fn)();
}
