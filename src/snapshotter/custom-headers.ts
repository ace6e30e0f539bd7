/**
 * AWS's custom request headers: a snapshot label `containerd.io/snapshot/remote/soci.header.<name>`
 * on Prepare asks for header `<name>: <value>` on the registry requests made for that layer (index,
 * zTOCs, Range reads, checks). Any image can carry such labels, so only names in [resolver]
 * custom_headers are forwarded; reserved names, empty or invalid names and values are dropped with a
 * warning, as AWS does.
 */

import { LABELS } from './labels.js';

/** Headers a label may never set (AWS's list), and what a header name may be (RFC 9110 token). */
export const RESERVED_HEADERS = ['authorization', 'range', 'accept', 'accept-encoding', 'content-type', 'content-length', 'user-agent', 'referer'];
export const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** A field value: visible ASCII, spaces, tabs and obs-text; no control characters (RFC 9110). */
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

/** The headers to send, and the labels dropped with the reason (for the caller to warn about). */
export function customHeadersFromLabels(
  labels: Record<string, string>,
  allowed: readonly string[],
): { headers: Record<string, string>; dropped: Array<{ header: string; reason: string }> } {
  const allow = new Set(allowed.map((n) => n.toLowerCase()));
  const out: Record<string, string> = {};
  const dropped: Array<{ header: string; reason: string }> = [];
  const warn = (reason: string, header: string) => dropped.push({ header, reason });
  for (const [k, v] of Object.entries(labels)) {
    if (!k.startsWith(LABELS.customHeaderPrefix)) continue;
    const name = k.slice(LABELS.customHeaderPrefix.length);
    const lower = name.toLowerCase();
    if (name === '') warn('ignoring custom header from snapshot label with an empty name', name);
    else if (v === '') warn('ignoring custom header from snapshot label with an empty value', name);
    else if (RESERVED_HEADERS.includes(lower)) warn('ignoring reserved custom header from snapshot label', name);
    else if (!HEADER_NAME.test(name)) warn('ignoring custom header with an invalid name from snapshot label', name);
    else if (!HEADER_VALUE.test(v)) warn('ignoring custom header with an invalid value from snapshot label', name);
    else if (!allow.has(lower)) warn('ignoring custom header not listed in resolver.custom_headers', name);
    else out[lower] = v;
  }
  return { headers: out, dropped };
}
