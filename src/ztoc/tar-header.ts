/**
 * Parsing of single tar header blocks and PAX records with Go `archive/tar` semantics
 * (reader.go `readHeader`, strconv.go, format.go). Pure functions over bytes; the streaming state
 * machine lives in tar-walker.ts. Numbers are bigint here because tar fields are int64.
 */
import { goModTime } from './mod-time.js';

export const BLOCK = 512;

/** Thrown inside the parsers; the walker turns it into SociError('ERR_BAD_TAR') naming the entry. */
export class TarFormatError extends Error {}

/** Go `parser.parseString`: bytes up to the first NUL. */
export function cString(b: Buffer): Buffer {
  const i = b.indexOf(0);
  return i >= 0 ? b.subarray(0, i) : b;
}

function isSpaceOrNul(c: number): boolean {
  return c === 0x20 || c === 0;
}

/**
 * Go `parser.parseOctal` over buf[start, end): trim spaces/NULs both ends, cut at NUL,
 * strconv.ParseUint(s, 8, 64). Works on offsets so no Buffer view is made per field.
 */
export function parseOctal(buf: Buffer, start = 0, end = buf.length): bigint {
  let s = start;
  let e = end;
  while (s < e && isSpaceOrNul(buf[s]!)) s++;
  while (e > s && isSpaceOrNul(buf[e - 1]!)) e--;
  if (s === e) return 0n;
  for (let i = s; i < e; i++) {
    if (buf[i] === 0) {
      e = i;
      break;
    }
  }
  // Tar numeric fields are at most 12 bytes, so the value (< 8^12 = 2^36) is exact in a double
  // and far below Go's uint64/int64 limits.
  if (e - s > 12) throw new TarFormatError('octal field too long');
  let x = 0;
  for (let i = s; i < e; i++) {
    const c = buf[i]!;
    if (c < 0x30 || c > 0x37) throw new TarFormatError('invalid octal number');
    x = x * 8 + (c - 0x30);
  }
  return BigInt(x);
}

/** Go `parser.parseNumeric` over buf[start, end): base-256 two's complement when the top bit is set, else octal. */
export function parseNumeric(buf: Buffer, start = 0, end = buf.length): bigint {
  if (end > start && (buf[start]! & 0x80) !== 0) {
    const inv = (buf[start]! & 0x40) !== 0 ? 0xff : 0;
    let x = 0n;
    for (let i = start; i < end; i++) {
      let c = buf[i]! ^ inv;
      if (i === start) c &= 0x7f;
      if (x >> 56n) throw new TarFormatError('base-256 number overflows int64');
      x = (x << 8n) | BigInt(c);
    }
    if (x >> 63n) throw new TarFormatError('base-256 number overflows int64');
    return inv === 0xff ? -x - 1n : x;
  }
  return parseOctal(buf, start, end);
}

const DECIMAL = /^[+-]?[0-9]+$/;
const INT64_MAX = (1n << 63n) - 1n;
const INT64_MIN = -(1n << 63n);

/** Go strconv.ParseInt(s, 10, 64). */
export function parseInt64(s: string): bigint {
  if (!DECIMAL.test(s)) throw new TarFormatError(`invalid decimal number ${JSON.stringify(s.slice(0, 40))}`);
  const v = BigInt(s);
  if (v > INT64_MAX || v < INT64_MIN) throw new TarFormatError('decimal number out of range');
  return v;
}

/** Go `parsePAXTime` followed by time.Unix(...).MarshalText() in UTC. */
export function paxTimeToModTime(s: string): string {
  const dot = s.indexOf('.');
  const ss = dot >= 0 ? s.slice(0, dot) : s;
  let sn = dot >= 0 ? s.slice(dot + 1) : '';
  const secs = parseInt64(ss);
  if (sn.length === 0) return goModTime(secs, 0n);
  if (!/^[0-9]*$/.test(sn)) throw new TarFormatError('invalid PAX time fraction');
  sn = sn.length < 9 ? sn.padEnd(9, '0') : sn.slice(0, 9);
  const nsecs = BigInt(sn);
  return goModTime(secs, ss.startsWith('-') ? -nsecs : nsecs);
}

/** A header block as Go's `readHeader` decodes it (before PAX/GNU overrides). */
export interface RawHeader {
  typeflag: number;
  name: Buffer;
  linkname: Buffer;
  size: bigint;
  mode: bigint;
  uid: bigint;
  gid: bigint;
  mtime: bigint;
  uname: Buffer;
  gname: Buffer;
  devmajor: bigint;
  devminor: bigint;
}

const MAGIC_USTAR = Buffer.from('ustar\0', 'latin1');
const MAGIC_GNU = Buffer.from('ustar ', 'latin1');
const VERSION_GNU = Buffer.from(' \0', 'latin1');
const TRAILER_STAR = Buffer.from('tar\0', 'latin1');

type Format = 'v7' | 'ustar' | 'star' | 'gnu';

function bytesAt(b: Buffer, at: number, want: Buffer): boolean {
  for (let i = 0; i < want.length; i++) if (b[at + i] !== want[i]) return false;
  return true;
}

/** Go `block.getFormat`: checksum (unsigned or signed sum) and magic; throws for FormatUnknown. */
function getFormat(b: Buffer): Format {
  let want: bigint;
  try {
    want = parseOctal(b, 148, 156);
  } catch {
    throw new TarFormatError('invalid header checksum field');
  }
  // Sum of all bytes with the checksum field counted as spaces; the signed sum is 256 less for
  // every byte >= 0x80 outside that field.
  let unsigned = 8 * 0x20;
  let high = 0;
  for (let i = 0; i < BLOCK; i++) {
    if (i === 148) i = 156;
    const c = b[i]!;
    unsigned += c;
    high += c >> 7;
  }
  const signed = unsigned - 256 * high;
  if (want !== BigInt(unsigned) && want !== BigInt(signed)) throw new TarFormatError('header checksum mismatch');
  if (bytesAt(b, 257, MAGIC_USTAR)) return bytesAt(b, 508, TRAILER_STAR) ? 'star' : 'ustar';
  if (bytesAt(b, 257, MAGIC_GNU) && bytesAt(b, 263, VERSION_GNU)) return 'gnu';
  return 'v7';
}

const EMPTY = Buffer.alloc(0);

/** A NUL-terminated header string field, copied out (the block buffer is reused). */
function copyString(block: Buffer, start: number, end: number): Buffer {
  let e = start;
  while (e < end && block[e] !== 0) e++;
  return e === start ? EMPTY : Buffer.from(block.subarray(start, e));
}

/**
 * uname/gname repeat on nearly every entry ("root"): share one Buffer per distinct value so a TOC of
 * 50k+ entries does not hold 100k tiny copies (bounded, so hostile input cannot grow it).
 */
const interned = new Map<string, Buffer>();
function internString(block: Buffer, start: number, end: number): Buffer {
  let e = start;
  while (e < end && block[e] !== 0) e++;
  if (e === start) return EMPTY;
  const key = block.toString('latin1', start, e);
  let b = interned.get(key);
  if (!b) {
    b = Buffer.from(block.subarray(start, e));
    if (interned.size < 1024) interned.set(key, b);
  }
  return b;
}

function isAscii(b: Buffer): boolean {
  for (const c of b) if (c >= 0x80) return false;
  return true;
}

/** Go `Reader.readHeader` for one non-zero block. Copies out every field (the block is reused). */
export function parseHeaderBlock(block: Buffer): RawHeader {
  const format = getFormat(block);
  const h: RawHeader = {
    typeflag: block[156]!,
    name: copyString(block, 0, 100),
    linkname: copyString(block, 157, 257),
    size: parseNumeric(block, 124, 136),
    mode: parseNumeric(block, 100, 108),
    uid: parseNumeric(block, 108, 116),
    gid: parseNumeric(block, 116, 124),
    mtime: parseNumeric(block, 136, 148),
    uname: EMPTY,
    gname: EMPTY,
    devmajor: 0n,
    devminor: 0n,
  };
  if (format === 'v7') return h;
  h.uname = internString(block, 265, 297);
  h.gname = internString(block, 297, 329);
  h.devmajor = parseNumeric(block, 329, 337);
  h.devminor = parseNumeric(block, 337, 345);
  let prefix: Buffer = Buffer.alloc(0);
  if (format === 'ustar') {
    prefix = cString(block.subarray(345, 500));
  } else if (format === 'star') {
    prefix = cString(block.subarray(345, 476));
    parseNumeric(block, 476, 488); // atime/ctime errors fail the header in Go too
    parseNumeric(block, 488, 500);
  } else {
    // GNU has no prefix; Go only falls back to reading one (pre-Go1.8 writer bug) when the
    // atime/ctime fields do not parse and the would-be prefix is ASCII.
    try {
      if (block[345] !== 0) parseNumeric(block, 345, 357);
      if (block[357] !== 0) parseNumeric(block, 357, 369);
    } catch {
      const p = cString(block.subarray(345, 500));
      if (isAscii(p)) prefix = p;
    }
  }
  if (prefix.length > 0) h.name = Buffer.concat([prefix, Buffer.from('/'), h.name]);
  return h;
}

export interface PaxEntry {
  key: Buffer;
  value: Buffer;
}

const NUL_FREE_VALUE_KEYS = new Set(['path', 'linkpath', 'uname', 'gname']);

/**
 * Go `parsePAX` over the whole extended-header payload. Returns the record map keyed by the
 * latin1 spelling of the key (a byte-exact, reversible key), last record winning like Go's map.
 */
export function parsePaxRecords(buf: Buffer): Map<string, PaxEntry> {
  const out = new Map<string, PaxEntry>();
  const sparseMap: string[] = [];
  let s = buf;
  while (s.length > 0) {
    const sp = s.indexOf(0x20);
    if (sp < 0) throw new TarFormatError('PAX record without length');
    const nStr = s.subarray(0, sp).toString('latin1');
    if (!DECIMAL.test(nStr)) throw new TarFormatError('invalid PAX record length');
    const n = Number(nStr);
    if (!(n >= 5) || n > s.length) throw new TarFormatError('invalid PAX record length');
    const rest = s.subarray(sp + 1);
    const m = n - (nStr.length + 1);
    if (m <= 0) throw new TarFormatError('invalid PAX record length');
    if (rest[m - 1] !== 0x0a) throw new TarFormatError('PAX record does not end in newline');
    const rec = rest.subarray(0, m - 1);
    s = rest.subarray(m);
    const eq = rec.indexOf(0x3d);
    if (eq < 0) throw new TarFormatError('PAX record without "="');
    const key = rec.subarray(0, eq);
    const value = rec.subarray(eq + 1);
    const k = key.toString('latin1');
    if (key.length === 0) throw new TarFormatError('empty PAX key');
    if (NUL_FREE_VALUE_KEYS.has(k) ? value.includes(0) : key.includes(0)) {
      throw new TarFormatError(`PAX record ${JSON.stringify(k.slice(0, 60))} contains NUL`);
    }
    if (k === 'GNU.sparse.offset' || k === 'GNU.sparse.numbytes') {
      // GNU sparse 0.0: Go folds these into a GNU.sparse.map record (validating their order)
      const wantOffset = sparseMap.length % 2 === 0;
      if ((k === 'GNU.sparse.offset') !== wantOffset || value.includes(0x2c)) throw new TarFormatError('invalid GNU sparse 0.0 record');
      sparseMap.push(value.toString('latin1'));
      continue;
    }
    out.set(k, { key: Buffer.from(key), value: Buffer.from(value) });
  }
  if (sparseMap.length > 0) {
    out.set('GNU.sparse.map', { key: Buffer.from('GNU.sparse.map'), value: Buffer.from(sparseMap.join(','), 'latin1') });
  }
  return out;
}

/** The entry fields after Go `mergePAX` (which the walker then finishes with GNU long names). */
export interface MergedHeader extends RawHeader {
  modTime: string;
}

/** Go `mergePAX`: empty values keep the USTAR value; numeric/time parse errors fail the header. */
export function mergePax(h: RawHeader, pax: Map<string, PaxEntry> | undefined): MergedHeader {
  const m: MergedHeader = { ...h, modTime: '' };
  let mtime: string | undefined;
  if (pax) {
    for (const [k, { value }] of pax) {
      if (value.length === 0) continue;
      switch (k) {
        case 'path':
          m.name = value;
          break;
        case 'linkpath':
          m.linkname = value;
          break;
        case 'uname':
          m.uname = value;
          break;
        case 'gname':
          m.gname = value;
          break;
        case 'uid':
          m.uid = parseInt64(value.toString('latin1'));
          break;
        case 'gid':
          m.gid = parseInt64(value.toString('latin1'));
          break;
        case 'size':
          m.size = parseInt64(value.toString('latin1'));
          break;
        case 'mtime':
          mtime = paxTimeToModTime(value.toString('latin1'));
          break;
        case 'atime':
        case 'ctime':
          paxTimeToModTime(value.toString('latin1'));
          break; // validated only, like Go
        default:
          break;
      }
    }
  }
  m.modTime = mtime ?? goModTime(h.mtime, 0n);
  return m;
}

/** Go `readGNUSparsePAXHeaders`: whether these PAX records make the entry a GNU sparse file. */
export function isGnuSparse(pax: Map<string, PaxEntry> | undefined): boolean {
  if (!pax) return false;
  const get = (k: string) => pax.get(k)?.value.toString('latin1') ?? '';
  const major = get('GNU.sparse.major');
  const minor = get('GNU.sparse.minor');
  if (major === '0' && (minor === '0' || minor === '1')) return true;
  if (major === '1' && minor === '0') return true;
  if (major !== '' || minor !== '') return false; // unknown version: Go treats it as a plain file
  return get('GNU.sparse.map') !== '';
}
