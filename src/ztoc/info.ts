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

export function ztocInfo(z: Ztoc, artifact: { digest?: string; size: number }): ZtocInfo {
  const table = spanTable(z);
  let multi = 0;
  const files: ZtocFileInfo[] = z.toc.map((e) => {
    const { start, end } = fileSpans(table, e);
    if (start !== end) multi++;
    return {
      // Go json.Marshal of a string replaces invalid UTF-8 with U+FFFD, as Buffer#toString does.
      filename: e.name.toString('utf8'),
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
