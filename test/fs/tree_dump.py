#!/usr/bin/env python3
"""Dumps a directory tree or a tar (as overlayfs would see the layer) as comparable JSON.

  tree_dump.py walk DIR            -> what a mount shows (lstat, readlink, xattrs, sha256)
  tree_dump.py tar FILE            -> what the layer should show: last entry wins, hardlinks share an
                                      inode, implicit parent dirs 0755, `.wh.X` -> char 0:0 named X,
                                      `.wh..wh..opq` hidden + trusted.overlay.opaque=y on its dir

Names and values are base64 of raw bytes. Keys: path -> {type, mode, uid, gid, size, mtime_ns,
target, sha256, xattrs, rdev, ino, nlink}. `ino` is only meaningful for grouping hardlinks.
"""
import base64, hashlib, json, os, stat, sys, tarfile

b64 = lambda b: base64.b64encode(b).decode()


def walk(root):
    out = {}
    root_b = os.fsencode(root)
    for dirpath, dirnames, filenames in os.walk(root_b):
        for name in dirnames + filenames + ([b''] if dirpath == root_b else []):
            p = os.path.join(dirpath, name) if name else dirpath
            rel = os.path.relpath(p, root_b)
            rel = b'' if rel == b'.' else rel
            st = os.lstat(p)
            e = {'mode': st.st_mode, 'uid': st.st_uid, 'gid': st.st_gid, 'mtime_ns': st.st_mtime_ns,
                 'ino': st.st_ino, 'nlink': st.st_nlink, 'rdev': [os.major(st.st_rdev), os.minor(st.st_rdev)]}
            if stat.S_ISREG(st.st_mode):
                e['size'] = st.st_size
                with open(p, 'rb') as f:
                    e['sha256'] = hashlib.sha256(f.read()).hexdigest()
            if stat.S_ISLNK(st.st_mode):
                e['size'] = st.st_size
                e['target'] = b64(os.readlink(p))
            xa = {}
            for k in os.listxattr(p, follow_symlinks=False):
                xa[k] = b64(os.getxattr(p, k, follow_symlinks=False))
            e['xattrs'] = xa
            out[b64(rel)] = e
    return out


def clean(name):
    p = os.path.normpath(b'/' + name).lstrip(b'/')
    return b'' if p == b'.' else p


def from_tar(path):
    entries = {}  # cleaned path -> dict
    inode = {}  # cleaned path -> inode key (hardlinks)
    data = {}
    next_ino = [1]

    def implicit(p):
        if p in entries or p == b'':
            return
        implicit(os.path.dirname(p))
        entries[p] = {'mode': stat.S_IFDIR | 0o755, 'uid': 0, 'gid': 0, 'mtime_ns': 0, 'xattrs': {}, 'rdev': [0, 0]}

    entries[b''] = {'mode': stat.S_IFDIR | 0o755, 'uid': 0, 'gid': 0, 'mtime_ns': 0, 'xattrs': {}, 'rdev': [0, 0]}
    with tarfile.open(path, 'r:*', encoding='utf-8', errors='surrogateescape') as tf:
        for m in tf:
            name = clean(m.name.encode('utf-8', 'surrogateescape'))
            implicit(os.path.dirname(name))
            if m.islnk():
                tgt = clean(m.linkname.encode('utf-8', 'surrogateescape'))
                entries[name] = entries[tgt]
                inode[name] = inode[tgt]
                continue
            xa = {}
            for k, v in m.pax_headers.items():
                if k.startswith('SCHILY.xattr.'):
                    xa[k[len('SCHILY.xattr.'):]] = b64(v.encode('utf-8', 'surrogateescape'))
            t = {tarfile.DIRTYPE: stat.S_IFDIR, tarfile.SYMTYPE: stat.S_IFLNK, tarfile.CHRTYPE: stat.S_IFCHR,
                 tarfile.BLKTYPE: stat.S_IFBLK, tarfile.FIFOTYPE: stat.S_IFIFO}.get(m.type, stat.S_IFREG)
            e = {'mode': t | (m.mode & 0o7777), 'uid': m.uid, 'gid': m.gid,
                 'mtime_ns': round(float(m.pax_headers.get('mtime', m.mtime)) * 1e9), 'xattrs': xa,
                 'rdev': [m.devmajor, m.devminor] if t in (stat.S_IFCHR, stat.S_IFBLK) else [0, 0]}
            if t == stat.S_IFDIR and name in entries and stat.S_ISDIR(entries[name]['mode']):
                entries[name].update(e)
                continue
            if t == stat.S_IFREG:
                e['size'] = m.size
                e['sha256'] = hashlib.sha256(tf.extractfile(m).read()).hexdigest()
            if t == stat.S_IFLNK:
                lb = m.linkname.encode('utf-8', 'surrogateescape')
                e['size'] = len(lb)
                e['target'] = b64(lb)
            entries[name] = e
            inode[name] = next_ino[0]
            next_ino[0] += 1
    # overlay view of whiteouts
    out = {}
    for p, e in entries.items():
        d, base = os.path.dirname(p), os.path.basename(p)
        if base == b'.wh..wh..opq':
            entries[d]['xattrs']['trusted.overlay.opaque'] = b64(b'y')
    for p, e in entries.items():
        d, base = os.path.dirname(p), os.path.basename(p)
        if base.startswith(b'.wh.'):
            if base == b'.wh..wh..opq':
                continue
            real = os.path.join(d, base[4:])
            if real in entries:
                continue
            out[b64(real)] = {'mode': stat.S_IFCHR, 'uid': 0, 'gid': 0, 'xattrs': {}, 'rdev': [0, 0], 'whiteout': True}
            continue
        o = dict(e)
        if p in inode:
            o['link_group'] = inode[p]
        out[b64(p)] = o
    # nlink: dirs 2 + child dirs; files: number of names
    for p, e in entries.items():
        if stat.S_ISDIR(e['mode']) and not os.path.basename(p).startswith(b'.wh.'):
            kids = sum(1 for q, f in entries.items() if q != p and q != b'' and os.path.dirname(q) == p and stat.S_ISDIR(f['mode']))
            out[b64(p)]['nlink'] = 2 + kids
    groups = {}
    for p, e in out.items():
        if 'link_group' in e:
            groups.setdefault(e['link_group'], []).append(p)
    for g, ps in groups.items():
        for p in ps:
            if not stat.S_ISDIR(out[p]['mode']):
                out[p]['nlink'] = len(ps)
    return out


if __name__ == '__main__':
    res = walk(sys.argv[2]) if sys.argv[1] == 'walk' else from_tar(sys.argv[2])
    json.dump(res, sys.stdout, sort_keys=True)
