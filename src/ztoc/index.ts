/**
 * Public surface of the zTOC module (tar walk → TOC, flatbuffer codec, span math).
 *
 * Byte-compatible with AWS SOCI's Go CLI on a UTC host (golden tests in test/ztoc/golden.test.ts).
 * Deliberate differences from Go archive/tar, all refused with ERR_BAD_TAR where Go would accept:
 * negative entry sizes, GNU sparse entries in PAX form (old-GNU 'S' fails in SOCI too), and
 * mode/devmajor/devminor/size values beyond 2^53. mod_time is always rendered in UTC (`Z`).
 */
export type { EntryType, FileMetadata, PaxRecord, CompressionInfo, Ztoc } from './types.js';
export { buildZtoc, ZTOC_VERSION, type BuildZtocOptions } from './build.js';
export { marshalZtoc } from './marshal.js';
export { unmarshalZtoc } from './unmarshal.js';
export { TarWalker, type TarWalkResult } from './tar-walker.js';
export { goModTime, parseModTime } from './mod-time.js';
export { fileSpans, findEntry, extractFile, fileMode, spanTable, type SpanLookup, type SpanRange } from './spans.js';
export { cleanPath, layerName, whiteoutTarget, quoteName, WHITEOUT_PREFIX, OPAQUE_WHITEOUT, type LayerName, type NamedEntry } from './names.js';
export { ztocInfo, goString, type ZtocInfo, type ZtocFileInfo } from './info.js';
