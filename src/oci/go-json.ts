/**
 * Go `encoding/json` compatible output for the structures SOCI writes. The bytes decide digests, so we
 * mirror Go exactly: struct field order, omitempty rules, map keys sorted byte-wise, HTML escaping
 * (`<`, `>`, `&` → \u003c…), U+2028/2029 escaped, invalid UTF-8 → U+FFFD, no whitespace.
 */

const HEX = '0123456789abcdef';

/** Go's encodeState.string with escapeHTML=true (Go ≥ 1.22: \b and \f as short escapes). */
export function goString(s: string): string {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (c === 0x22) out += '\\"';
    else if (c === 0x5c) out += '\\\\';
    else if (c === 0x0a) out += '\\n';
    else if (c === 0x0d) out += '\\r';
    else if (c === 0x09) out += '\\t';
    else if (c === 0x08) out += '\\b';
    else if (c === 0x0c) out += '\\f';
    else if (c < 0x20 || c === 0x3c || c === 0x3e || c === 0x26) out += `\\u00${HEX[c >> 4]}${HEX[c & 15]}`;
    else if (c === 0x2028 || c === 0x2029) out += `\\u${c.toString(16)}`;
    else if (c >= 0xd800 && c <= 0xdfff)
      out += '\ufffd'; // lone surrogate: Go sees invalid UTF-8
    else out += ch;
  }
  return `${out}"`;
}

/** Byte-wise (UTF-8) key order, as Go's sort of map keys. */
export function goKeyCompare(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** map[string]string; `undefined` when empty so omitempty callers can drop it. */
export function goStringMap(m: Record<string, string> | undefined): string | undefined {
  if (!m) return undefined;
  const keys = Object.keys(m).sort(goKeyCompare);
  if (keys.length === 0) return undefined;
  return `{${keys.map((k) => `${goString(k)}:${goString(m[k]!)}`).join(',')}}`;
}

/** An object from ordered [key, encodedValue|undefined] pairs; undefined values are omitted. */
export function goObject(fields: Array<[string, string | undefined]>): string {
  const parts: string[] = [];
  for (const [k, v] of fields) if (v !== undefined) parts.push(`${goString(k)}:${v}`);
  return `{${parts.join(',')}}`;
}

export function goInt(n: number): string {
  if (!Number.isSafeInteger(n)) throw new RangeError(`not an integer: ${n}`);
  return String(n);
}

export function goArray<T>(items: T[] | undefined, enc: (t: T) => string): string {
  if (items === undefined || items === null) return 'null';
  return `[${items.map(enc).join(',')}]`;
}

/** omitempty string */
export function optString(s: string | undefined): string | undefined {
  return s ? goString(s) : undefined;
}
