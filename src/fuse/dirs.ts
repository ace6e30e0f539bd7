/**
 * Directory handles: the listing of a directory is fetched from the Filesystem once per OPENDIR and
 * paged out to READDIR / READDIRPLUS by offset cookie (entry i has cookie i+1).
 */
import { direntSize, encodeDirents, type NameEncoding } from './protocol.js';
import { S_IFDIR, type Attr, type DirEntry, type Filesystem } from './types.js';

interface DirHandle {
  ino: number;
  entries: DirEntry[] | null;
  loading: Promise<DirEntry[]> | null;
}

export class DirHandles {
  private readonly handles = new Map<number, DirHandle>();
  /**
   * Handles start at a value of this process's own (ms since the epoch × 1000): a server that
   * resumes a connection from a previous process gets READDIRs for that process's handles, and a
   * new handle must not collide with one the kernel still holds (an unknown handle is re-listed).
   */
  private next = Date.now() * 1000 + 1;

  constructor(
    private readonly fsys: Filesystem,
    private readonly enc: NameEncoding = 'utf8',
  ) {}

  open(ino: number): number {
    const fh = this.next++;
    this.handles.set(fh, { ino, entries: null, loading: null });
    return fh;
  }

  release(fh: number): void {
    this.handles.delete(fh);
  }

  clear(): void {
    this.handles.clear();
  }

  /** The full listing with `.` and `..` first (added when the filesystem omits them). */
  private async listing(fh: number, ino: number): Promise<DirEntry[]> {
    let h = this.handles.get(fh);
    if (!h || h.ino !== ino) {
      h = { ino, entries: null, loading: null };
      this.handles.set(fh, h);
    }
    if (h.entries) return h.entries;
    // Concurrent READDIRs of one handle share one fetch.
    const loading = (h.loading ??= this.fsys.readdir(ino).then((list) => {
      const head: DirEntry[] = [];
      if (!list.some((e) => e.name === '.')) head.push({ name: '.', ino, mode: S_IFDIR });
      if (!list.some((e) => e.name === '..')) head.push({ name: '..', ino, mode: S_IFDIR });
      return head.length ? head.concat(list) : list;
    }));
    const d = h;
    try {
      const list = await loading;
      d.entries = list;
      return list;
    } finally {
      d.loading = null;
    }
  }

  /**
   * Encoded dirents from cookie `offset`, at most `size` bytes. `plus` (READDIRPLUS) adds an entry
   * per name, which counts as a kernel lookup; `.`/`..` carry nodeid 0 so they do not.
   */
  async page(fh: number, ino: number, offset: number, size: number, plus: { entryTimeout: number; attrTimeout: number } | null): Promise<Buffer> {
    const entries = await this.listing(fh, ino);
    if (!plus) return encodeDirents(entries, offset, size, null, this.enc).buf;
    // Fetch missing attributes only for the entries that can fit in this reply.
    const end = Math.min(entries.length, offset + Math.ceil(size / direntSize(1, true)));
    const attrs = new Map<number, Attr>();
    const missing: Promise<void>[] = [];
    for (let i = offset; i < end; i++) {
      const e = entries[i]!;
      if (!e.attr && e.name !== '.' && e.name !== '..') missing.push(this.fsys.getattr(e.ino).then((a) => void attrs.set(i, a)));
    }
    if (missing.length) await Promise.all(missing);
    const { entryTimeout, attrTimeout } = plus;
    return encodeDirents(
      entries,
      offset,
      size,
      {
        entry: (e, i) => {
          if (e.name === '.' || e.name === '..') return null;
          const attr = e.attr ?? attrs.get(i);
          return attr ? { nodeid: e.ino, generation: 0, entryTimeout, attrTimeout, attr } : null;
        },
      },
      this.enc,
    ).buf;
  }
}
