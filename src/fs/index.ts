/** Public surface of the lazy layer filesystem. */
export { SpanCache, DEFAULT_CACHE_MAX_BYTES, type SpanCacheStats } from './span-cache.js';
export { SpanManager, type SpanManagerOptions, type SpanManagerStats } from './span-manager.js';
export { BackgroundFetcher, type BackgroundFetcherOptions } from './background-fetcher.js';
export { LayerTree, type Node, WHITEOUT_PREFIX, OPAQUE_WHITEOUT } from './tree.js';
export { LayerFs, STATE_DIR, type LayerFsOptions } from './layer-fs.js';
export { mountLayer, createLayerFs, type LayerMount, type LayerMountOptions, type LayerMountStats, type MountLayerParams } from './mount-layer.js';
export { fileBlobSource } from './file-blob-source.js';
export { unpackLayer, type ImpliedDir, type UnpackCompression, type UnpackStats } from './unpack.js';
export { inheritImpliedDirs } from './implied-dirs.js';
export { FailureLog, FAILURE_MESSAGES, failureFields, failureLine, type FailureKind, type FailureReport, type LayerFailure } from './failure-log.js';
