/** Public surface of the zTOC module (tar walk → TOC, flatbuffer codec, span math). */
export type { EntryType, FileMetadata, PaxRecord, CompressionInfo, Ztoc } from './types.js';
export { buildZtoc, ZTOC_VERSION, type BuildZtocOptions } from './build.js';
export { marshalZtoc } from './marshal.js';
export { unmarshalZtoc } from './unmarshal.js';
export { TarWalker, type TarWalkResult } from './tar-walker.js';
export { goModTime } from './mod-time.js';
export { fileSpans, findEntry, extractFile, fileMode, cleanPath, spanTable, type SpanLookup } from './spans.js';
export { ztocInfo, goString, type ZtocInfo, type ZtocFileInfo } from './info.js';
