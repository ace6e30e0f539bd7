/**
 * Prefetch artifacts: for each requested path (or byte ranges of it), the spans of the topmost
 * indexed layer holding it; one JSON artifact per layer, in image layer order. The spans of
 * `--prefetch-file` paths are merged and sorted, as AWS's `soci` writes them; those of a prefetch
 * record keep the order the files were read in (a span already listed is not listed again).
 * Written here (buildPrefetchArtifacts) and read here (parsePrefetch).
 */
import { digestOf } from '../oci/digest.js';
import { posix } from 'node:path';
import { ANN, MT } from '../oci/media-types.js';
import type { Descriptor } from '../oci/types.js';
import { fileSpans, spanTable, type SpanRange } from '../ztoc/index.js';
import type { Ztoc } from '../ztoc/types.js';
import { type Logger, silentLogger } from '../logger.js';

/** A file to prefetch: all of it, or only the [offset, length] byte ranges given. */
export interface PrefetchTarget {
  path: string;
  ranges?: ReadonlyArray<readonly [number, number]>;
}

/** The cleaned form a prefetch path is matched with (exact tar name, so `./x` never matches). */
export function prefetchKey(raw: string): string {
  return posix.normalize(`/${raw}`).replace(/^\/+/, '');
}

/**
 * Per layer, right after its zTOC is built: the spans of the requested paths it holds. Computed
 * early so the (large) TOC model need not be kept until the whole index is assembled.
 */
export function prefetchHits(ztoc: Ztoc, targets: readonly PrefetchTarget[]): Map<string, SpanRange[]> {
  const wanted = new Map(targets.map((t) => [Buffer.from(prefetchKey(t.path)).toString('latin1'), t]));
  const hits = new Map<string, SpanRange[]>();
  if (!wanted.size) return hits;
  const table = spanTable(ztoc);
  for (const e of ztoc.toc) {
    const name = e.name.toString('latin1');
    const t = wanted.get(name);
    if (!t || hits.has(name)) continue;
    if (!t.ranges) {
      const { start, end } = fileSpans(table, e);
      hits.set(name, [{ start_span: start, end_span: end }]);
      continue;
    }
    // Only the spans holding the bytes read; ranges past the file's end are cut to it.
    const spans: SpanRange[] = [];
    for (const [off, len] of t.ranges) {
      const end = Math.min(off + len, e.uncompressedSize);
      if (off >= end) continue;
      spans.push({ start_span: table.spanIdForOffset(e.uncompressedOffset + off), end_span: table.spanIdForOffset(e.uncompressedOffset + end - 1) });
    }
    if (spans.length) hits.set(name, spans);
  }
  return hits;
}

export function buildPrefetchArtifacts(
  indexed: Array<{ layer: Descriptor; hits: Map<string, SpanRange[]> }>,
  targets: readonly PrefetchTarget[],
  imageLayers: Descriptor[],
  log: Logger = silentLogger,
  order: 'offset' | 'read' = 'offset',
): Array<{ desc: Descriptor; bytes: Buffer; layer: Descriptor }> {
  const byLayer = new Map<string, SpanRange[]>();
  const topDown = [...indexed].sort((a, b) => imageLayers.indexOf(b.layer) - imageLayers.indexOf(a.layer));
  for (const { path: raw } of targets) {
    const want = prefetchKey(raw);
    const key = Buffer.from(want).toString('latin1');
    const top = topDown.find((x) => x.hits.has(key));
    if (!top) {
      log.warn({ path: want }, `warning: prefetch file ${want} not found in any layer`);
      continue;
    }
    const list = byLayer.get(top.layer.digest) ?? [];
    list.push(...top.hits.get(key)!);
    byLayer.set(top.layer.digest, list);
  }
  const out: Array<{ desc: Descriptor; bytes: Buffer; layer: Descriptor }> = [];
  for (const layer of imageLayers) {
    const spans = byLayer.get(layer.digest);
    if (!spans) continue;
    const bytes = Buffer.from(JSON.stringify({ version: '1.0', prefetch_spans: order === 'read' ? inReadOrder(spans) : mergeSpans(spans) }));
    const digest = digestOf(bytes);
    out.push({ desc: { mediaType: MT.sociPrefetch, digest, size: bytes.length, annotations: { [ANN.layerDigest]: layer.digest } }, bytes, layer });
  }
  return out;
}

/** Sorts and merges overlapping or adjacent ranges. */
/** The ranges in the order given, each cut to the spans no earlier range listed (dropped when none are left). */
function inReadOrder(spans: SpanRange[]): SpanRange[] {
  const listed = new Set<number>();
  const out: SpanRange[] = [];
  for (const r of spans) {
    let run: SpanRange | undefined;
    for (let id = r.start_span; id <= r.end_span; id++) {
      if (listed.has(id)) {
        run = undefined;
        continue;
      }
      listed.add(id);
      if (run && run.end_span === id - 1) run.end_span = id;
      else out.push((run = { start_span: id, end_span: id }));
    }
  }
  return out;
}

export function mergeSpans(spans: SpanRange[]): SpanRange[] {
  const s = [...spans].sort((a, b) => a.start_span - b.start_span || a.end_span - b.end_span);
  const out: SpanRange[] = [];
  for (const r of s) {
    const last = out[out.length - 1];
    if (last && r.start_span <= last.end_span + 1) last.end_span = Math.max(last.end_span, r.end_span);
    else out.push({ ...r });
  }
  return out;
}

/** `{"version":"1.0","prefetch_spans":[…]}`; other versions are ignored (null). */
export function parsePrefetch(bytes: Buffer): SpanRange[] | null {
  let j: unknown;
  try {
    j = JSON.parse(bytes.toString('utf8'));
  } catch {
    return null;
  }
  const o = j as { version?: unknown; prefetch_spans?: unknown };
  if (o.version !== '1.0' || !Array.isArray(o.prefetch_spans)) return null;
  return o.prefetch_spans
    .filter((s): s is SpanRange => Number.isSafeInteger((s as SpanRange)?.start_span) && Number.isSafeInteger((s as SpanRange)?.end_span))
    .map((s) => ({ start_span: s.start_span, end_span: s.end_span }));
}
