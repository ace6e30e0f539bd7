/**
 * Public surface of the FUSE layer: a read-only Filesystem (types.ts) served over /dev/fuse.
 *
 *   const server = await FuseServer.mount(myFs, { mountpoint: '/mnt/x', subtype: 'soci', readaheadKb: 1024 });
 *   server.on('close', (info) => ...);          // or: await server.closed
 *   await server.unmount();                     // umount, falling back to umount -l when busy
 *
 * At daemon start, `cleanupStaleMounts('soci', root)` detaches mounts left by a crashed daemon.
 * Root only. Never touch a mount synchronously from the process that serves it.
 */
export { FuseServer, type FuseServerOptions, type CloseInfo, type CloseReason, type FuseStats } from './server.js';
export * from './types.js';
export { toErrno } from './errno.js';
export { cleanupStaleMounts, connectionWaiting, findFuseMount, type StaleMountResult } from './mounts.js';
export { pipeReaderAvailable, type ReaderKind } from './readers.js';
export { ConnectionKeeper, type KeptConnection } from './keeper.js';
