/**
 * Layer tar names, cleaned and classified in one place for every consumer: the local unpacker
 * (../fs/unpack-worker.ts), the FUSE inode tree (../fs/tree.ts) and zTOC lookups (./spans.ts).
 *
 * The rules follow containerd's archive package (pkg/archive/tar.go), which refuses breakout:
 * - a name is cleaned as `path.Clean("/" + name)` without the leading slash, so it never climbs above
 *   the layer root: `/abs/path` → `abs/path`, `../../escape` → `escape`, `a/../../b` → `b`;
 * - a name that cleans to the root (`.`, `./`, `/`, `..`, `a/..`) never creates, replaces or whites
 *   out anything: a directory entry only sets the root's own attributes (as `./` does in the output
 *   of `tar -C dir .`), any other entry is skipped and counted;
 * - a whiteout `.wh.X` removes X inside the whiteout's own directory, so X must be a plain name: `.wh.`,
 *   `.wh..` and `.wh...` (X empty, `.` or `..`) would remove the directory itself or its parent, and
 *   fail the layer with ERR_BAD_TAR (containerd: "invalid whiteout name"); so does a NUL byte;
 * - a hardlink must name an entry of the layer (not the root, not a whiteout marker);
 * - an entry inside a directory named like a whiteout (`.wh.x/y`) is skipped and counted.
 * Symlinked parents depend on what the layer has created so far: the consumers check them (a parent
 * that is not a directory fails the layer in both the unpacker and the tree).
 */
import { posix } from 'node:path';
import { SociError } from '../errors.js';
import type { EntryType } from './types.js';

export const WHITEOUT_PREFIX = '.wh.';
export const OPAQUE_WHITEOUT = '.wh..wh..opq';

/**
 * Go `strings.TrimPrefix(filepath.Clean("/"+name), "/")` on raw bytes (latin1 is byte-exact):
 * the layer-relative path, `''` for the root; never contains `.`/`..` components.
 */
export function cleanPath(name: string | Buffer): string {
  const s = typeof name === 'string' ? Buffer.from(name, 'utf8').toString('latin1') : name.toString('latin1');
  return posix
    .normalize('/' + s)
    .replace(/^\/+/, '')
    .replace(/\/+$/, '');
}

/** What a layer entry does, from its name (and, for hardlinks, its link name). Paths are latin1. */
export type LayerName =
  /** a directory entry for the layer root: only the root's attributes change */
  | { kind: 'root' }
  /** nothing to do; `reason` says why (counted by the consumer) */
  | { kind: 'skip'; reason: string }
  /** `.wh..wh..opq`: `parent` is opaque */
  | { kind: 'opaque'; path: string; parent: string }
  /** `.wh.X`: X (a plain name) is removed from `parent` */
  | { kind: 'whiteout'; path: string; parent: string; target: string }
  /** an ordinary entry at `path` = `parent/base`; hardlinks carry their cleaned target */
  | { kind: 'entry'; path: string; parent: string; base: string; linkTarget?: string };

export interface NamedEntry {
  name: Buffer | string;
  type: EntryType;
  linkname: Buffer | string;
}

/** The target of a whiteout base name `.wh.X`, or `null` when `base` is not a usable whiteout. */
export function whiteoutTarget(base: string): string | null {
  if (!base.startsWith(WHITEOUT_PREFIX) || base === OPAQUE_WHITEOUT) return null;
  const t = base.slice(WHITEOUT_PREFIX.length);
  return t === '' || t === '.' || t === '..' || t.includes('/') || t.includes('\0') ? null : t;
}

/**
 * The one classification of a layer entry's name every unpacker and the FUSE tree use (see the
 * module comment for the rules). Throws SociError('ERR_BAD_TAR') for names no layer may carry.
 */
export function layerName(e: NamedEntry): LayerName {
  const path = cleanPath(e.name);
  if (path.includes('\0')) throw bad(path, 'has a NUL byte in its name');
  if (path === '') return e.type === 'dir' ? { kind: 'root' } : { kind: 'skip', reason: `a ${e.type} entry names the layer root` };
  const slash = path.lastIndexOf('/');
  const parent = slash < 0 ? '' : path.slice(0, slash);
  const base = path.slice(slash + 1);
  // A directory named like a whiteout holds nothing a layer can show (docker's AUFS `.wh..wh.plnk`).
  if (parent.split('/').some((c) => c.startsWith(WHITEOUT_PREFIX))) return { kind: 'skip', reason: 'it lies inside a whiteout-named directory' };
  if (base === OPAQUE_WHITEOUT) return { kind: 'opaque', path, parent };
  if (base.startsWith(WHITEOUT_PREFIX)) {
    const target = whiteoutTarget(base);
    if (target === null) {
      const what = base === WHITEOUT_PREFIX || base === `${WHITEOUT_PREFIX}.` ? 'its own directory' : 'the parent of its directory';
      throw bad(path, `is an invalid whiteout name: it would remove ${what}`);
    }
    return { kind: 'whiteout', path, parent, target };
  }
  if (e.type !== 'hardlink') return { kind: 'entry', path, parent, base };
  const linkTarget = cleanPath(e.linkname);
  if (linkTarget === '') throw bad(path, 'is a hardlink to the layer root');
  if (linkTarget.includes('\0')) throw bad(path, 'is a hardlink whose target has a NUL byte');
  const tbase = linkTarget.slice(linkTarget.lastIndexOf('/') + 1);
  if (tbase.startsWith(WHITEOUT_PREFIX)) throw bad(path, `is a hardlink to the whiteout marker ${quoteName(linkTarget)}`);
  return { kind: 'entry', path, parent, base, linkTarget };
}

/**
 * A name (latin1 bytes or text) quoted for an error message: JSON string syntax, with DEL, the C1
 * controls and the Unicode line separators escaped too, so the message stays on one line.
 * Valid UTF-8 is shown decoded; other bytes show as U+FFFD. Long names are cut at 200 characters.
 */
export function quoteName(name: string | Buffer): string {
  let s = typeof name === 'string' ? Buffer.from(name, 'latin1').toString('utf8') : name.toString('utf8');
  if (typeof name === 'string' && /[^\x00-\xff]/.test(name)) s = name; // already text, not latin1 bytes
  if (s.length > 200) s = `${s.slice(0, 200)}…`;
  return JSON.stringify(s).replace(/[\u007f-\u009f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

function bad(path: string, why: string): SociError {
  return new SociError('ERR_BAD_TAR', `layer entry ${quoteName(path)} ${why}`);
}
