/**
 * WWW-Authenticate parsing: `Bearer realm="…",service="…",scope="…"` and `Basic realm="…"`.
 * Registries send one challenge; we take the first Bearer or Basic one.
 */

export interface Challenge {
  scheme: 'basic' | 'bearer';
  params: Record<string, string>;
}

export function parseChallenge(header: string | string[] | undefined): Challenge | undefined {
  const values = Array.isArray(header) ? header : header ? [header] : [];
  for (const value of values) {
    const m = /^\s*(\w+)\s*(.*)$/s.exec(value);
    if (!m) continue;
    const scheme = m[1]!.toLowerCase();
    if (scheme !== 'basic' && scheme !== 'bearer') continue;
    const params: Record<string, string> = {};
    const re = /([\w-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?\s*/g;
    let p: RegExpExecArray | null;
    while ((p = re.exec(m[2]!)) !== null) {
      if (p[0].length === 0) break;
      params[p[1]!.toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, '$1') : p[3]!;
    }
    return { scheme, params };
  }
  return undefined;
}
