/**
 * The zTOC model. Strings that come from the tar
 * are raw bytes (Buffer): names may be non-UTF-8 and PAX/xattr values binary; they are written to the
 * flatbuffer byte for byte. Integers are JS numbers.
 */
import type { Compression } from '../compression/types.js';

export type EntryType = 'reg' | 'dir' | 'symlink' | 'hardlink' | 'char' | 'block' | 'fifo';

export interface PaxRecord {
  key: Buffer;
  value: Buffer;
}

export interface FileMetadata {
  /** raw tar path as Go archive/tar returns it (e.g. `./usr/bin/x`, dirs keep their `/`) */
  name: Buffer;
  type: EntryType;
  /** offset of the file data in the uncompressed tar stream */
  uncompressedOffset: number;
  uncompressedSize: number;
  linkname: Buffer;
  /** raw tar mode field */
  mode: number;
  uid: number;
  gid: number;
  uname: Buffer;
  gname: Buffer;
  /** Go time.MarshalText() of the mtime (RFC 3339, UTC => `Z`), as stored */
  modTime: string;
  devmajor: number;
  devminor: number;
  /** ALL PAX records of the entry, sorted byte-wise by key (stored as the `xattrs` vector) */
  pax: PaxRecord[];
}

export interface CompressionInfo {
  algorithm: Compression;
  maxSpanId: number;
  spanDigests: string[];
  /** gzip zinfo blob or TarZinfo flatbuffer */
  checkpoints: Buffer;
}

export interface Ztoc {
  version: string; // "0.9"
  buildToolIdentifier: string; // "AWS SOCI CLI v0.2"
  compressedArchiveSize: number;
  uncompressedArchiveSize: number;
  toc: FileMetadata[];
  compression: CompressionInfo;
}
