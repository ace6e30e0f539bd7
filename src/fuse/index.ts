/** Public surface of the FUSE layer: a read-only Filesystem served over /dev/fuse. */
export { FuseServer, type FuseServerOptions, type CloseInfo, type CloseReason, type FuseStats } from './server.js';
export * from './types.js';
export { toErrno } from './errno.js';
export { cleanupStaleMounts, findFuseMount, readMountinfo, parseMountinfo, umount, type MountInfo, type StaleMountResult } from './mounts.js';
export { pipeReaderAvailable, type ReaderKind } from './readers.js';
