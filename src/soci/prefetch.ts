/**
 * Prefetch artifacts (soci-reference.md §3.4): for each requested path, the spans of the topmost
 * indexed layer holding it; merged per layer, one JSON artifact per layer, in image layer order.
 */
import { createHash } from 'node:crypto';
import { posix } from 'node:path';
import { ANN, MT } from '../oci/media-types.js';
import type { Descriptor } from '../oci/types.js';
import { fileSpans } from '../ztoc/index.js';
import type { Ztoc } from '../ztoc/types.js';

export interface SpanRange {
  start_span: number;
  end_span: number;
}

export function buildPrefetchArtifacts(
  indexed: Array<{ layer: Descriptor; ztoc: Ztoc }>,
  paths: string[],
  imageLayers: Descriptor[],
  log: (line: string) => void = () => {},
): Array<{ desc: Descriptor; bytes: Buffer; layer: Descriptor }> {
  const byLayer = new Map<string, SpanRange[]>();
  const topDown = [...indexed].sort((a, b) => imageLayers.indexOf(b.layer) - imageLayers.indexOf(a.layer));
  for (const raw of paths) {
    const want = posix.normalize(`/${raw}`).replace(/^\/+/, '');
    let found = false;
    for (const { layer, ztoc } of topDown) {
      const entry = ztoc.toc.find((e) => e.name.toString('latin1') === Buffer.from(want).toString('latin1'));
      if (!entry) continue;
      const { start, end } = fileSpans(ztoc, entry);
      const list = byLayer.get(layer.digest) ?? [];
      list.push({ start_span: start, end_span: end });
      byLayer.set(layer.digest, list);
      found = true;
      break;
    }
    if (!found) log(`warning: prefetch file ${want} not found in any layer`);
  }
  const out: Array<{ desc: Descriptor; bytes: Buffer; layer: Descriptor }> = [];
  for (const layer of imageLayers) {
    const spans = byLayer.get(layer.digest);
    if (!spans) continue;
    const bytes = Buffer.from(JSON.stringify({ version: '1.0', prefetch_spans: mergeSpans(spans) }));
    const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    out.push({ desc: { mediaType: MT.sociPrefetch, digest, size: bytes.length, annotations: { [ANN.layerDigest]: layer.digest } }, bytes, layer });
  }
  return out;
}

/** Sorts and merges overlapping or adjacent ranges. */
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
