/**
 * Parallel pull and unpack: layers that are not lazily loaded, downloaded in concurrent chunks and
 * unpacked as they arrive, off the event loop.
 */
export { ChunkedDownload, type ChunkedDownloadOptions } from './chunked-download.js';
export { decompressTools, type DecompressTools } from './decompressors.js';
export { ImagePuller, type ImagePullerOptions, type ParallelPullSettings, type PullTarget } from './image-puller.js';
export { pullLayer, type KeepBlob, type LayerPullOptions } from './layer-pull.js';
