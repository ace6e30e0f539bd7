/**
 * The JSON object `soci ztoc info <digest>` prints (Go `cmd/soci/commands/ztoc/info.go`); key order
 * follows the Go struct: version, build_tool, size, span_size, num_spans, num_files,
 * num_multi_span_files, files[{filename, offset, size, type, start_span, end_span}].
 */
import { fileSpans, spanTable } from './spans.js';
import type { Ztoc } from './types.js';

export interface ZtocFileInfo {
  filename: string;
  offset: number;
  size: number;
  type: string;
  start_span: number;
  end_span: number;
}

export interface ZtocInfo {
  version: string;
  build_tool: string;
  size: number;
  span_size: number;
  num_spans: number;
  num_files: number;
  num_multi_span_files: number;
  /** null when the TOC is empty (Go marshals a nil slice as null) */
  files: ZtocFileInfo[] | null;
}

/**
 * Bytes → string the way Go's encoding/json sees a Go string: valid UTF-8 sequences decode, every
 * byte of an invalid one becomes U+FFFD on its own (utf8.DecodeRune semantics; TextDecoder would
 * merge a truncated sequence into one U+FFFD).
 */
export function goString(b: Buffer): string {
  let out = '';
  let i = 0;
  while (i < b.length) {
    const c = b[i]!;
    if (c < 0x80) {
      out += String.fromCharCode(c);
      i++;
      continue;
    }
    const n = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
    let ok = n > 0 && i + n <= b.length;
    for (let k = 1; ok && k < n; k++) ok = (b[i + k]! & 0xc0) === 0x80;
    if (ok) {
      const c1 = b[i + 1]!;
      // second-byte ranges that exclude overlongs, surrogates and code points above U+10FFFF
      if ((c === 0xe0 && c1 < 0xa0) || (c === 0xed && c1 > 0x9f) || (c === 0xf0 && c1 < 0x90) || (c === 0xf4 && c1 > 0x8f)) ok = false;
    }
    if (!ok) {
      out += '\ufffd';
      i++;
      continue;
    }
    out += b.subarray(i, i + n).toString('utf8');
    i += n;
  }
  return out;
}

export function ztocInfo(z: Ztoc, artifact: { digest?: string; size: number }): ZtocInfo {
  const table = spanTable(z);
  let multi = 0;
  const files: ZtocFileInfo[] = z.toc.map((e) => {
    const { start, end } = fileSpans(table, e);
    if (start !== end) multi++;
    return {
      filename: goString(e.name),
      offset: e.uncompressedOffset,
      size: e.uncompressedSize,
      type: e.type,
      start_span: start,
      end_span: end,
    };
  });
  return {
    version: z.version,
    build_tool: z.buildToolIdentifier,
    size: artifact.size,
    span_size: table.spanSize,
    num_spans: z.compression.maxSpanId + 1,
    num_files: z.toc.length,
    num_multi_span_files: multi,
    files: files.length > 0 ? files : null,
  };
}
