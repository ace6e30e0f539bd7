/**
 * A small implementation of containerd's filter syntax for List (`filters` in ListSnapshotsRequest):
 * `sel[,sel...]` where sel = fieldpath [op value], op one of == != ~=, fieldpath `name`, `parent`,
 * `kind`, `labels.<key>` (key may be "quoted"). A list of filters matches if ANY filter matches;
 * within a filter all selectors must match. containerd 1.6 sends none from its GC walk, but
 * `ctr snapshots ls` style clients may.
 */
import { invalidArgument } from './errors.js';
import type { Info } from './metastore.js';

interface Selector {
  path: string[];
  op?: '==' | '!=' | '~=';
  value?: string;
}

type Matcher = (info: Info) => boolean;

function readQuoted(s: string, i: number): [string, number] {
  const q = s[i]!;
  let out = '';
  i++;
  while (i < s.length && s[i] !== q) {
    if (s[i] === '\\' && i + 1 < s.length) {
      const c = s[i + 1]!;
      out += c === 'n' ? '\n' : c === 't' ? '\t' : c;
      i += 2;
    } else {
      out += s[i++];
    }
  }
  if (i >= s.length) throw invalidArgument(`filter: unterminated quoted string in "${s}"`);
  return [out, i + 1];
}

function parseSelectors(s: string): Selector[] {
  const sels: Selector[] = [];
  let i = 0;
  const skipWs = () => {
    while (i < s.length && /\s/.test(s[i]!)) i++;
  };
  while (i < s.length) {
    skipWs();
    const path: string[] = [];
    for (;;) {
      if (s[i] === '"' || s[i] === '/') {
        const [v, j] = readQuoted(s, i);
        path.push(v);
        i = j;
      } else {
        const m = /^[A-Za-z0-9_\-/:]+/.exec(s.slice(i)) ?? /^[^.=!~,\s]+/.exec(s.slice(i));
        if (!m) throw invalidArgument(`filter: bad field in "${s}"`);
        path.push(m[0]);
        i += m[0].length;
      }
      if (s[i] === '.') {
        i++;
        continue;
      }
      break;
    }
    skipWs();
    const sel: Selector = { path };
    const op = s.slice(i, i + 2);
    if (op === '==' || op === '!=' || op === '~=') {
      i += 2;
      skipWs();
      sel.op = op;
      if (s[i] === '"' || s[i] === '/') {
        const [v, j] = readQuoted(s, i);
        sel.value = v;
        i = j;
      } else {
        const m = /^[^,]*/.exec(s.slice(i))!;
        sel.value = m[0].trim();
        i += m[0].length;
      }
    }
    sels.push(sel);
    skipWs();
    if (i < s.length) {
      if (s[i] !== ',') throw invalidArgument(`filter: expected "," at ${i} in "${s}"`);
      i++;
    }
  }
  return sels;
}

function fieldOf(info: Info, path: string[]): string | undefined {
  const [head, ...rest] = path;
  switch (head) {
    case 'name':
      return info.name;
    case 'parent':
      return info.parent;
    case 'kind':
      return info.kind;
    case 'labels':
      return rest.length ? info.labels[rest.join('.')] : undefined;
    default:
      return undefined;
  }
}

function compile(filter: string): Matcher {
  const sels = parseSelectors(filter);
  const tests = sels.map((sel): Matcher => {
    if (!sel.op) return (info) => fieldOf(info, sel.path) !== undefined && fieldOf(info, sel.path) !== '';
    const v = sel.value ?? '';
    if (sel.op === '==') return (info) => fieldOf(info, sel.path) === v;
    if (sel.op === '!=') return (info) => fieldOf(info, sel.path) !== v;
    let re: RegExp;
    try {
      re = new RegExp(v);
    } catch {
      throw invalidArgument(`filter: bad regular expression "${v}"`);
    }
    return (info) => {
      const f = fieldOf(info, sel.path);
      return f !== undefined && re.test(f);
    };
  });
  return (info) => tests.every((t) => t(info));
}

/** Matcher for a ListSnapshotsRequest.filters list (empty list matches everything). */
export function compileFilters(filters: string[]): Matcher {
  const ms = filters.filter((f) => f.trim() !== '').map(compile);
  if (ms.length === 0) return () => true;
  return (info) => ms.some((m) => m(info));
}
