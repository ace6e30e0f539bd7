/**
 * LayerFs: the read-only FUSE Filesystem of one lazily loaded layer.
 * Metadata comes from the zTOC tree; file bytes from the SpanManager. Whiteouts are presented the
 * way overlayfs wants them: `.wh.X` → char device 0:0 named X (unless a real X exists), a dir
 * holding `.wh..wh..opq` reports `trusted.overlay.opaque=y`; `.wh.*` names themselves are hidden.
 * The hidden `/.soci-snapshotter/<layer digest>.json` state file reports fetch progress and errors.
 * Before a file's first byte is served, its tar header is checked against its zTOC entry
 * (../ztoc/entry-check.ts): a zTOC that lies about where a file's bytes are gets EIO, never wrong bytes.
 */
import { Errno, ErrnoError, ROOT_INO, S_IFCHR, S_IFDIR, S_IFMT, S_IFREG, makedev } from '../fuse/types.js';
import type { Attr, DirEntry, Entry, Filesystem, OpenResult, StatfsResult } from '../fuse/types.js';
import type { SpanManager } from './span-manager.js';
import { WHITEOUT_PREFIX, type LayerTree, type Node } from './tree.js';
import { SociError, isSociError } from '../errors.js';
import { TocHeaders, checkHeader } from '../ztoc/entry-check.js';
import { cleanPath } from '../ztoc/spans.js';
import { whiteoutTarget } from '../ztoc/names.js';
import type { FileMetadata } from '../ztoc/types.js';
import type { FailureReport } from './failure-log.js';

export const STATE_DIR = '.soci-snapshotter';

export interface LayerFsOptions {
  /** layer digest (names the state file) */
  digest: string;
  /** the opaque xattr overlayfs reads: trusted (default) or user (overlay mounted with userxattr) */
  opaqueXattr?: 'trusted.overlay.opaque' | 'user.overlay.opaque';
  /** zTOC annotation com.amazon.soci.disable-xattrs: report no xattrs at all */
  disableXattrs?: boolean;
  /** told of each read answered with an error and each header that disagrees with its zTOC entry */
  onFailure?: (r: FailureReport) => void;
  /**
   * The zTOC's TOC: each file's tar header is checked against its entry before its data is served
   * the first time (a mismatch is EIO for that file). Left out only by tests of synthetic trees.
   */
  toc?: { entries: readonly FileMetadata[]; uncompressedArchiveSize: number };
  /** told of every read of a file's data: its path (UTF-8, no leading slash) and the byte range served */
  onRead?: (path: string, offset: number, length: number) => void;
}

export class LayerFs implements Filesystem {
  readonly tree: LayerTree;
  readonly spans: SpanManager;
  readonly digest: string;
  /** the last error served to a reader, reported in the state file */
  lastError: string | undefined;
  private readonly stateDirIno: number;
  private readonly stateFileIno: number;
  private readonly stateFileName: string;
  /** whiteout node id → the name it hides (for its char-device attrs) */
  private readonly whiteouts = new Set<number>();
  private readonly listings = new Map<number, DirEntry[]>();
  private readonly opts: LayerFsOptions;
  private readonly headers: TocHeaders | undefined;
  /** data offset → the check of that file's header: running, or failed for good */
  private readonly checked = new Map<number, Promise<void>>();
  /** data offsets whose header check passed */
  private readonly passed = new Set<number>();
  /** files whose tar header did not match their zTOC entry */
  headerMismatches = 0;
  /** paths of the files read so far (only kept when onRead is set) */
  private readonly readPaths = new Map<number, string>();
  /** `<parent ino>/<name>` of hardlink entries → the offset their header ends at */
  private readonly links = new Map<string, number>();

  constructor(tree: LayerTree, spans: SpanManager, opts: LayerFsOptions) {
    this.tree = tree;
    this.spans = spans;
    this.digest = opts.digest;
    this.opts = opts;
    if (opts.toc) {
      this.headers = new TocHeaders(opts.toc.entries, opts.toc.uncompressedArchiveSize, opts.digest);
      // A hardlink's name shows its target's inode, so the link's own header is checked when the
      // name is looked up (the target's when its data is read).
      for (const e of opts.toc.entries) {
        if (e.type !== 'hardlink') continue;
        const parts = cleanPath(e.name).split('/');
        const base = parts.pop()!;
        let dir: Node | undefined = tree.root;
        for (const p of parts) dir = dir?.children?.get(p) !== undefined ? tree.node(dir.children.get(p)!) : undefined;
        if (dir) this.links.set(`${dir.id}/${base}`, e.uncompressedOffset);
      }
    }
    this.stateDirIno = tree.maxId + 1;
    this.stateFileIno = tree.maxId + 2;
    this.stateFileName = `${opts.digest}.json`;
    for (const n of tree.nodes) {
      if (!n?.children) continue;
      for (const [name, id] of n.children) {
        // Only a usable whiteout (`.wh.X`, X a plain name) shows as X; `.wh..` and the like stay hidden.
        const hides = whiteoutTarget(name);
        if (hides !== null && !n.children.has(hides)) this.whiteouts.add(id);
      }
    }
  }

  /** The state file's JSON, with its trailing newline. */
  stateJson(): Buffer {
    const st = this.spans.stats();
    const size = this.spans.size;
    const o: Record<string, unknown> = {};
    if (this.lastError) o.error = this.lastError;
    o.digest = this.digest;
    o.size = size;
    o.fetchedSize = st.fetchedSize;
    o.fetchedPercent = size > 0 ? (st.fetchedSize / size) * 100 : 100;
    // Not part of AWS's state file format: the span manager counters, for tests and operators.
    o.stats = { ...st, headerMismatches: this.headerMismatches };
    return Buffer.from(`${JSON.stringify(o)}\n`);
  }

  async lookup(parent: number, name: string): Promise<Entry | null> {
    if (parent === ROOT_INO && name === STATE_DIR) return { ino: this.stateDirIno, attr: this.stateDirAttr() };
    if (parent === this.stateDirIno) {
      if (name !== this.stateFileName) return null;
      return { ino: this.stateFileIno, attr: this.stateFileAttr(), attrTimeout: 0, entryTimeout: 0 };
    }
    const dir = this.dirNode(parent);
    if (name.startsWith(WHITEOUT_PREFIX)) return null;
    const link = this.links.get(`${parent}/${name}`);
    if (link !== undefined) await this.checkAt(link);
    let id = dir.children!.get(name);
    if (id === undefined) {
      const wh = dir.children!.get(WHITEOUT_PREFIX + name);
      if (wh === undefined || !this.whiteouts.has(wh)) return null;
      id = wh;
    }
    return { ino: id, attr: this.attr(id) };
  }

  async getattr(ino: number): Promise<Attr> {
    if (ino === this.stateDirIno) return this.stateDirAttr();
    if (ino === this.stateFileIno) return this.stateFileAttr();
    return this.attr(ino);
  }

  async readdir(ino: number): Promise<DirEntry[]> {
    if (ino === this.stateDirIno) return [{ name: this.stateFileName, ino: this.stateFileIno, mode: S_IFREG | 0o400 }];
    const cached = this.listings.get(ino);
    if (cached) return cached;
    const dir = this.dirNode(ino);
    const out: DirEntry[] = [];
    for (const [name, id] of dir.children!) {
      if (name.startsWith(WHITEOUT_PREFIX)) {
        if (!this.whiteouts.has(id)) continue;
        const shown = name.slice(WHITEOUT_PREFIX.length);
        const attr = this.attr(id);
        out.push({ name: shown, ino: id, mode: attr.mode, attr });
        continue;
      }
      const attr = this.attr(id);
      out.push({ name, ino: id, mode: attr.mode, attr });
    }
    // Sorted by (byte-wise) name like AWS's; latin1 strings compare byte-wise.
    out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    this.listings.set(ino, out);
    return out;
  }

  async open(ino: number): Promise<OpenResult> {
    // The state file changes while mounted: bypass the page cache for it.
    if (ino === this.stateFileIno) return { directIo: true, keepCache: false };
    const n = this.fileNode(ino);
    if ((n.mode & S_IFMT) === S_IFDIR) throw new ErrnoError(Errno.EISDIR);
    // An empty file is never read, so its header is checked here: a zTOC must not be able to hide a
    // file's bytes by calling it empty.
    if ((n.mode & S_IFMT) === S_IFREG && n.size === 0 && !this.whiteouts.has(ino)) await this.checkAt(n.dataOffset);
    return { keepCache: true };
  }

  read(ino: number, offset: number, size: number): Promise<Buffer> {
    return this.readInto(ino, offset, size, 0, null);
  }

  /** read() into the server's scratch buffer when given (cached spans are read straight into it). */
  async readInto(ino: number, offset: number, size: number, _fh: number, dst: Buffer | null): Promise<Buffer> {
    if (ino === this.stateFileIno) return this.stateJson().subarray(offset, offset + size);
    const n = this.fileNode(ino);
    if ((n.mode & S_IFMT) !== S_IFREG || this.whiteouts.has(ino)) throw new ErrnoError(Errno.EINVAL);
    if (offset >= n.size || size <= 0) return Buffer.alloc(0);
    const len = Math.min(size, n.size - offset);
    if (this.opts.onRead) {
      let path = this.readPaths.get(ino);
      if (path === undefined) {
        path = Buffer.from(this.tree.pathOf(ino) ?? '', 'latin1').toString('utf8');
        this.readPaths.set(ino, path);
      }
      this.opts.onRead(path, offset, len);
    }
    try {
      // Checked once per file; afterwards no await on the read path.
      if (!this.passed.has(n.dataOffset)) await this.checkAt(n.dataOffset);
      const fileEnd = n.dataOffset + n.size; // readahead stays inside the file
      const buf = dst ? await this.spans.readInto(n.dataOffset + offset, len, dst, fileEnd) : await this.spans.read(n.dataOffset + offset, len, fileEnd);
      if (buf.length !== len) throw new ErrnoError(Errno.EIO, `short read: ${buf.length} of ${len} bytes`);
      return buf;
    } catch (e) {
      // A header mismatch was reported once, when it was found; later reads just fail.
      if (!isSociError(e, 'ERR_INVALID_ZTOC')) {
        this.lastError = (e as Error).message ?? String(e);
        const entry = this.entryName(n.dataOffset);
        this.opts.onFailure?.({ kind: 'read', ...(entry !== undefined ? { entry } : {}), cause: this.lastError });
      }
      throw e;
    }
  }

  /** Once per entry, before it is served: its tar header must be its zTOC entry. */
  private checkAt(dataOffset: number): Promise<void> {
    if (!this.headers) return Promise.resolve();
    let p = this.checked.get(dataOffset);
    if (!p) {
      const region = this.headers.region(dataOffset);
      p = (async () => {
        if (!region) throw new SociError('ERR_INVALID_ZTOC', `layer ${this.digest}: no zTOC entry has its data at ${dataOffset}`);
        // Readahead stays within the header: it says nothing about what is read after it.
        const bytes = await this.spans.read(region.start, region.end - region.start, region.end);
        try {
          checkHeader(region, bytes, this.digest);
          this.passed.add(dataOffset);
        } catch (e) {
          this.headerMismatches++;
          this.lastError = (e as Error).message;
          this.opts.onFailure?.({ kind: 'toc_mismatch', entry: region.entry.name.toString('utf8'), cause: this.lastError });
          throw e;
        }
      })();
      this.checked.set(dataOffset, p);
      // A fetch that failed may work next time; a mismatch stays a mismatch.
      p.catch((e: unknown) => {
        if (!isSociError(e, 'ERR_INVALID_ZTOC')) this.checked.delete(dataOffset);
      });
    }
    return p;
  }

  /** The zTOC name of the file whose data starts at `dataOffset` (for failure reports). */
  private entryName(dataOffset: number): string | undefined {
    return this.headers?.region(dataOffset)?.entry.name.toString('utf8');
  }

  async readlink(ino: number): Promise<Buffer> {
    const n = this.fileNode(ino);
    if ((n.mode & S_IFMT) !== 0o120000) throw new ErrnoError(Errno.EINVAL);
    return n.linkname;
  }

  async getxattr(ino: number, name: string): Promise<Buffer | null> {
    if (ino === this.stateDirIno || ino === this.stateFileIno || this.whiteouts.has(ino)) return null;
    if (this.opts.disableXattrs) return null;
    const n = this.fileNode(ino);
    if (n.opaque && name === this.opaqueName()) return Buffer.from('y');
    return n.xattrs.get(name) ?? null;
  }

  async listxattr(ino: number): Promise<string[]> {
    if (ino === this.stateDirIno || ino === this.stateFileIno || this.whiteouts.has(ino)) return [];
    if (this.opts.disableXattrs) return [];
    const n = this.fileNode(ino);
    const names = [...n.xattrs.keys()];
    if (n.opaque && !n.xattrs.has(this.opaqueName())) names.push(this.opaqueName());
    return names;
  }

  async statfs(): Promise<StatfsResult> {
    return { bsize: 4096, namelen: 255, files: this.tree.maxId, ffree: 0, blocks: 0, bfree: 0, bavail: 0 };
  }

  private opaqueName(): string {
    return this.opts.opaqueXattr ?? 'trusted.overlay.opaque';
  }

  private attr(id: number): Attr {
    if (this.whiteouts.has(id)) return { ino: id, mode: S_IFCHR, nlink: 1, uid: 0, gid: 0, size: 0, rdev: makedev(0, 0) };
    const n = this.fileNode(id);
    return {
      ino: id,
      mode: n.mode,
      nlink: n.nlink || 1,
      uid: n.uid,
      gid: n.gid,
      size: n.size,
      blocks: Math.ceil(n.size / 4096) * 8,
      blksize: 4096,
      rdev: makedev(n.devmajor, n.devminor),
      mtime: n.mtime,
      mtimeNsec: n.mtimeNsec,
    };
  }

  private stateDirAttr(): Attr {
    return { ino: this.stateDirIno, mode: S_IFDIR | 0o500, nlink: 2 };
  }

  private stateFileAttr(): Attr {
    return { ino: this.stateFileIno, mode: S_IFREG | 0o400, nlink: 1, size: this.stateJson().length };
  }

  private fileNode(id: number): Node {
    const n = this.tree.node(id);
    if (!n) throw new ErrnoError(Errno.ENOENT, `no inode ${id}`);
    return n;
  }

  private dirNode(id: number): Node {
    const n = this.fileNode(id);
    if (!n.children) throw new ErrnoError(Errno.ENOTDIR);
    return n;
  }
}
