/**
 * The inode tree of one layer, built from its zTOC's TOC: node ids from 1 (root), implicit parent
 * dirs (0755), dir re-definition keeps nlink and children, hardlinks share their target's node
 * (nlink++), repeated names: last wins. Every name goes through ../ztoc/names.ts `layerName`, the
 * same rules as the local unpacker: nothing lands outside the root, invalid whiteouts (`.wh..`) and
 * a symlink or file on the way to a name fail the layer. Names are raw tar bytes kept as latin1
 * strings (byte-preserving), which is also how FUSE names reach us.
 */
import { SociError } from '../errors.js';
import { fileMode, layerName, parseModTime, quoteName, OPAQUE_WHITEOUT, WHITEOUT_PREFIX } from '../ztoc/index.js';
import type { FileMetadata, Ztoc } from '../ztoc/index.js';
import { S_IFDIR } from '../fuse/types.js';

export interface Node {
  id: number;
  /** type bits | permissions incl. suid/sgid/sticky */
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  mtimeNsec: number;
  devmajor: number;
  devminor: number;
  /** symlink target (raw bytes) */
  linkname: Buffer;
  /** offset of the file data in the uncompressed archive */
  dataOffset: number;
  /** xattr name (latin1) → value, from PAX SCHILY.xattr.* */
  xattrs: Map<string, Buffer>;
  /** dirs only: child name (latin1) → node id */
  children?: Map<string, number>;
  /** dirs: holds `.wh..wh..opq` */
  opaque?: boolean;
}

export { OPAQUE_WHITEOUT, WHITEOUT_PREFIX };
const XATTR_PREFIX = 'SCHILY.xattr.';

export class LayerTree {
  /** nodes[id]; index 0 unused */
  readonly nodes: Node[] = [];
  /** entries left out (a non-directory naming the layer root; see ../ztoc/names.ts) */
  skipped = 0;

  static fromZtoc(z: Ztoc): LayerTree {
    const t = new LayerTree();
    t.build(z.toc);
    return t;
  }

  get root(): Node {
    return this.nodes[1]!;
  }

  get maxId(): number {
    return this.nodes.length - 1;
  }

  node(id: number): Node | undefined {
    return id > 0 ? this.nodes[id] : undefined;
  }

  private paths: string[] | undefined;

  /** A path of node `id` ("" for the root; a hard link's first name), for traces; built on first use. */
  pathOf(id: number): string | undefined {
    if (!this.paths) {
      const paths: string[] = [];
      paths[1] = '';
      const dirs = [1];
      while (dirs.length) {
        const d = dirs.pop()!;
        for (const [name, c] of this.nodes[d]!.children ?? []) {
          if (paths[c] !== undefined) continue;
          paths[c] = paths[d] ? `${paths[d]}/${name}` : name;
          if (this.nodes[c]!.children) dirs.push(c);
        }
      }
      this.paths = paths;
    }
    return this.paths[id];
  }

  private build(toc: FileMetadata[]): void {
    this.nodes.push(undefined as unknown as Node);
    const byPath = new Map<string, number>();
    const root = this.newNode(implicitDir());
    byPath.set('', root.id);

    /** The dir at a cleaned path, created on demand; a non-dir on the way fails the layer (as the unpacker). */
    const dirOf = (path: string): Node => {
      const existing = byPath.get(path);
      if (existing !== undefined) {
        const n = this.nodes[existing]!;
        if (n.children) return n;
        throw new SociError('ERR_BAD_TAR', `layer path ${quoteName(path)} is not a directory (a symlink or file is in the way)`);
      }
      const slash = path.lastIndexOf('/');
      const parent = dirOf(slash < 0 ? '' : path.slice(0, slash));
      const d = this.newNode(implicitDir());
      parent.children!.set(path.slice(slash + 1), d.id);
      parent.nlink++;
      byPath.set(path, d.id);
      return d;
    };
    /** A dir replaced by a non-dir: the paths under it are gone (a later hardlink cannot reach them). */
    const forgetUnder = (path: string, old: number | undefined): void => {
      if (old === undefined || !this.nodes[old]!.children) return;
      for (const p of byPath.keys()) if (p.startsWith(`${path}/`)) byPath.delete(p);
    };

    for (const e of toc) {
      const name = layerName(e);
      if (name.kind === 'root') {
        Object.assign(root, attrsOf(e, root.nlink));
        continue;
      }
      if (name.kind === 'skip') {
        this.skipped++;
        continue;
      }
      const { path, parent: parentPath } = name;
      const parent = dirOf(parentPath);
      const base = path.slice(parentPath === '' ? 0 : parentPath.length + 1);
      const old = byPath.get(path);
      if (name.kind === 'entry' && name.linkTarget !== undefined) {
        const target = byPath.get(name.linkTarget);
        if (target === undefined) {
          // The target must precede the link (tar order), as the unpacker needs it to exist.
          throw new SociError('ERR_BAD_TAR', `hardlink ${quoteName(path)} to missing ${quoteName(name.linkTarget)}`);
        }
        const n = this.nodes[target]!;
        if (n.children) throw new SociError('ERR_BAD_TAR', `hardlink ${quoteName(path)} to missing ${quoteName(name.linkTarget)}`);
        if (old === target) continue;
        forgetUnder(path, old);
        n.nlink++;
        parent.children!.set(base, target);
        byPath.set(path, target);
        continue;
      }
      if (e.type === 'dir' && name.kind === 'entry') {
        const n = old === undefined ? undefined : this.nodes[old];
        if (n?.children) {
          Object.assign(n, attrsOf(e, n.nlink));
          continue;
        }
        const d = this.newNode({ ...attrsOf(e, 2), children: new Map() });
        parent.children!.set(base, d.id);
        parent.nlink++;
        byPath.set(path, d.id);
        continue;
      }
      // Files, and the whiteout markers (`.wh.X`, `.wh..wh..opq`) whatever their tar type.
      forgetUnder(path, old);
      const n = this.newNode(attrsOf(e, 1));
      parent.children!.set(base, n.id);
      byPath.set(path, n.id);
      if (name.kind === 'opaque') parent.opaque = true;
    }
  }

  private newNode(fields: Omit<Node, 'id'>): Node {
    const n = { ...fields, id: this.nodes.length } as Node;
    this.nodes.push(n);
    return n;
  }
}

function implicitDir(): Omit<Node, 'id'> {
  return {
    mode: S_IFDIR | 0o755,
    nlink: 2,
    uid: 0,
    gid: 0,
    size: 0,
    mtime: 0,
    mtimeNsec: 0,
    devmajor: 0,
    devminor: 0,
    linkname: Buffer.alloc(0),
    dataOffset: 0,
    xattrs: new Map(),
    children: new Map(),
  };
}

function attrsOf(e: FileMetadata, nlink: number): Omit<Node, 'id' | 'children' | 'opaque'> {
  const { sec, nsec } = parseModTime(e.modTime);
  const xattrs = new Map<string, Buffer>();
  for (const r of e.pax) {
    const k = r.key.toString('latin1');
    if (k.startsWith(XATTR_PREFIX) && k.length > XATTR_PREFIX.length) xattrs.set(k.slice(XATTR_PREFIX.length), r.value);
  }
  return {
    mode: fileMode(e),
    nlink,
    uid: e.uid,
    gid: e.gid,
    size: e.type === 'symlink' ? e.linkname.length : e.type === 'reg' ? e.uncompressedSize : 0,
    mtime: sec,
    mtimeNsec: nsec,
    devmajor: e.devmajor,
    devminor: e.devminor,
    linkname: e.linkname,
    dataOffset: e.uncompressedOffset,
    xattrs,
  };
}
