/**
 * Push-based tar walker with Go `archive/tar` Reader semantics.
 * It is fed the uncompressed layer in order (from the compression indexer's onData) and only
 * ever holds header bytes: file data is counted and skipped, never buffered. Every entry becomes a
 * FileMetadata whose uncompressedOffset is the position of its first data byte.
 */
import { SociError } from '../errors.js';
import type { EntryType, FileMetadata, PaxRecord } from './types.js';
import { quoteName } from './names.js';
import { BLOCK, TarFormatError, cString, isGnuSparse, mergePax, parseHeaderBlock, parsePaxRecords, type PaxEntry, type RawHeader } from './tar-header.js';

const NO_PAX: PaxRecord[] = [];

/** Go's maxSpecialFileSize: PAX and GNU long name/link payloads above 1 MiB are rejected. */
const MAX_SPECIAL = 1 << 20;
const ZERO_BLOCK = Buffer.alloc(BLOCK);

const TYPES: Record<number, EntryType> = {
  0x30: 'reg',
  0x31: 'hardlink',
  0x32: 'symlink',
  0x33: 'char',
  0x34: 'block',
  0x35: 'dir',
  0x36: 'fifo',
};
/** Go `isHeaderOnlyType`: these never have a data section, whatever their size field says. */
const HEADER_ONLY = new Set([0x31, 0x32, 0x33, 0x34, 0x35, 0x36]);

type State = 'header' | 'zero2' | 'data' | 'pad' | 'special' | 'specialPad' | 'done';

function describeType(t: number): string {
  const c = t >= 0x20 && t < 0x7f ? `'${String.fromCharCode(t)}'` : `0x${t.toString(16)}`;
  if (t === 0x67) return `${c} (PAX global header)`;
  if (t === 0x53) return `${c} (GNU sparse file)`;
  if (t === 0x37) return `${c} (contiguous file)`;
  return c;
}

function printable(name: Buffer): string {
  return quoteName(name);
}

function toSafe(v: bigint, what: string): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) {
    throw new TarFormatError(`${what} out of range`);
  }
  return Number(v);
}

export interface TarWalkResult {
  /** the Go tar reader's position at end of archive (end of the 2nd zero block, or EOF) */
  uncompressedArchiveSize: number;
  entries: number;
}

export class TarWalker {
  /** bytes of the uncompressed stream consumed so far (the Go reader's position) */
  private pos = 0;
  private state: State = 'header';
  private readonly blk = Buffer.alloc(BLOCK);
  private blkFill = 0;
  private dataLeft = 0;
  private padLeft = 0;
  private special: { type: number; need: number; parts: Buffer[]; got: number } | undefined;
  private pax: Map<string, PaxEntry> | undefined;
  private longName: Buffer | undefined;
  private longLink: Buffer | undefined;
  private count = 0;
  /** offset of the header block being handled, for error messages */
  private headerAt = 0;
  private failed: SociError | undefined;

  constructor(private readonly onEntry: (entry: FileMetadata) => void) {}

  write(chunk: Buffer): void {
    if (this.failed) throw this.failed;
    try {
      this.consume(chunk);
    } catch (e) {
      this.failed = this.wrap(e);
      throw this.failed;
    }
  }

  /** Call at the end of the stream; throws ERR_BAD_TAR for a truncated archive. */
  end(): TarWalkResult {
    if (this.failed) throw this.failed;
    const truncated = (what: string) => new SociError('ERR_BAD_TAR', `tar stream truncated ${what} at offset ${this.pos}`);
    switch (this.state) {
      case 'header':
      case 'zero2':
        // Go: EOF with 0 bytes of a header (or of the 2nd zero block) is a clean end; partial is not.
        if (this.blkFill !== 0) throw truncated('inside a header block');
        break;
      case 'data':
        throw truncated(`inside the data of entry #${this.count}`);
      case 'special':
        throw truncated('inside a PAX/GNU extended header');
      default:
        break; // padding or end marker: Go's tryReadFull treats EOF in the padding as a clean end
    }
    return { uncompressedArchiveSize: this.pos, entries: this.count };
  }

  private wrap(e: unknown): SociError {
    if (e instanceof SociError) return e;
    if (e instanceof TarFormatError) {
      return new SociError('ERR_BAD_TAR', `invalid tar header at offset ${this.headerAt}: ${e.message}`);
    }
    return new SociError('ERR_INTERNAL', `tar walker failed: ${(e as Error)?.message ?? String(e)}`, { cause: e });
  }

  private consume(chunk: Buffer): void {
    let i = 0;
    const n = chunk.length;
    while (i < n) {
      switch (this.state) {
        case 'done':
          return; // Go stops reading after the end-of-archive marker
        case 'data': {
          const take = Math.min(this.dataLeft, n - i);
          this.dataLeft -= take;
          i += take;
          this.pos += take;
          if (this.dataLeft === 0) this.state = this.padLeft > 0 ? 'pad' : 'header';
          break;
        }
        case 'pad':
        case 'specialPad': {
          const take = Math.min(this.padLeft, n - i);
          this.padLeft -= take;
          i += take;
          this.pos += take;
          if (this.padLeft === 0) this.state = 'header';
          break;
        }
        case 'special': {
          const sp = this.special!;
          const take = Math.min(sp.need - sp.got, n - i);
          sp.parts.push(Buffer.from(chunk.subarray(i, i + take)));
          sp.got += take;
          i += take;
          this.pos += take;
          if (sp.got === sp.need) {
            this.special = undefined;
            this.state = this.padLeft > 0 ? 'specialPad' : 'header';
            this.finishSpecial(sp.type, Buffer.concat(sp.parts));
          }
          break;
        }
        case 'header':
        case 'zero2': {
          let block: Buffer;
          if (this.blkFill === 0 && n - i >= BLOCK) {
            block = chunk.subarray(i, i + BLOCK); // fast path: whole block in this chunk
            i += BLOCK;
            this.pos += BLOCK;
          } else {
            const take = Math.min(BLOCK - this.blkFill, n - i);
            chunk.copy(this.blk, this.blkFill, i, i + take);
            this.blkFill += take;
            i += take;
            this.pos += take;
            if (this.blkFill < BLOCK) break;
            this.blkFill = 0;
            block = this.blk;
          }
          this.onBlock(block);
          break;
        }
      }
    }
  }

  private onBlock(block: Buffer): void {
    this.headerAt = this.pos - BLOCK;
    const zero = block.equals(ZERO_BLOCK);
    if (this.state === 'zero2') {
      if (!zero) throw new TarFormatError('zero block followed by a non-zero block');
      this.state = 'done';
      return;
    }
    if (zero) {
      this.state = 'zero2';
      return;
    }
    this.onHeader(parseHeaderBlock(block));
  }

  private onHeader(h: RawHeader): void {
    const t = h.typeflag;
    // Go `handleRegularFile` on the raw header first: negative sizes are invalid.
    if (!HEADER_ONLY.has(t) && h.size < 0n) throw new TarFormatError('negative size');
    if (t === 0x67) {
      throw new SociError('ERR_BAD_TAR', `unsupported tar entry type ${describeType(t)} for ${printable(h.name)} at offset ${this.headerAt}`);
    }
    if (t === 0x78 || t === 0x4c || t === 0x4b) {
      // 'x' PAX extended header, 'L' GNU long name, 'K' GNU long link: payload applies to the next entry
      if (h.size > BigInt(MAX_SPECIAL)) throw new TarFormatError('extended header larger than 1 MiB');
      const need = Number(h.size);
      this.padLeft = (BLOCK - (need % BLOCK)) % BLOCK;
      if (need === 0) {
        this.state = this.padLeft > 0 ? 'specialPad' : 'header';
        this.finishSpecial(t, Buffer.alloc(0));
      } else {
        this.special = { type: t, need, parts: [], got: 0 };
        this.state = 'special';
      }
      return;
    }
    const m = mergePax(h, this.pax);
    if (this.longName && this.longName.length > 0) m.name = this.longName;
    if (this.longLink && this.longLink.length > 0) m.linkname = this.longLink;
    let typeflag = t;
    if (typeflag === 0) typeflag = m.name.length > 0 && m.name[m.name.length - 1] === 0x2f ? 0x35 : 0x30;
    if (isGnuSparse(this.pax)) {
      throw new SociError('ERR_BAD_TAR', `unsupported GNU sparse file ${printable(m.name)} at offset ${this.headerAt}`);
    }
    const type = TYPES[typeflag];
    if (!type) {
      throw new SociError('ERR_BAD_TAR', `unsupported tar entry type ${describeType(typeflag)} for ${printable(m.name)} at offset ${this.headerAt}`);
    }
    // Go accepts a negative size on header-only entries; we refuse it (offset math downstream).
    if (m.size < 0n) throw new TarFormatError('negative size');
    const dataSize = HEADER_ONLY.has(typeflag) ? 0n : m.size;
    // Most entries have no PAX records: they share one empty list (never mutated downstream).
    let pax: PaxRecord[] = NO_PAX;
    if (this.pax) {
      pax = [];
      for (const e of this.pax.values()) pax.push({ key: e.key, value: e.value });
      pax.sort((a, b) => Buffer.compare(a.key, b.key));
    }
    const entry: FileMetadata = {
      name: m.name,
      type,
      uncompressedOffset: this.pos,
      uncompressedSize: toSafe(m.size, 'size'),
      linkname: m.linkname,
      mode: toSafe(m.mode, 'mode'),
      uid: Number(BigInt.asUintN(32, m.uid)), // SOCI stores uint32(hdr.Uid)
      gid: Number(BigInt.asUintN(32, m.gid)),
      uname: m.uname,
      gname: m.gname,
      modTime: m.modTime,
      devmajor: toSafe(m.devmajor, 'devmajor'),
      devminor: toSafe(m.devminor, 'devminor'),
      pax,
    };
    this.pax = undefined;
    this.longName = undefined;
    this.longLink = undefined;
    this.count++;
    this.dataLeft = toSafe(dataSize, 'size');
    this.padLeft = (BLOCK - (this.dataLeft % BLOCK)) % BLOCK;
    this.state = this.dataLeft > 0 ? 'data' : this.padLeft > 0 ? 'pad' : 'header';
    this.onEntry(entry);
  }

  private finishSpecial(type: number, payload: Buffer): void {
    if (type === 0x78)
      this.pax = parsePaxRecords(payload); // a later 'x' replaces an earlier one
    else if (type === 0x4c) this.longName = Buffer.from(cString(payload));
    else this.longLink = Buffer.from(cString(payload));
  }
}
