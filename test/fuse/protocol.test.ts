/** Pure (no mount) tests of the FUSE encoders, mountinfo parsing and errno mapping. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SociError } from '../../src/errors.js';
import { encodeDirents, direntSize, writeAttr, writeEntryOut, ATTR_SIZE, ENTRY_OUT_SIZE } from '../../src/fuse/protocol.js';
import { parseMountinfo } from '../../src/host/index.js';
import { ErrnoError, Errno, makedev, toErrno, S_IFDIR, S_IFREG, type DirEntry } from '../../src/fuse/index.js';

test('dirents are 8-byte aligned with next-entry cookies and DT types', () => {
  const entries: DirEntry[] = [
    { name: '.', ino: 1, mode: S_IFDIR },
    { name: 'a', ino: 5, mode: S_IFREG | 0o644 },
    { name: 'abcdefgh', ino: 6, mode: S_IFDIR | 0o755 },
  ];
  const { buf, count } = encodeDirents(entries, 0, 4096, null);
  assert.equal(count, 3);
  assert.equal(buf.length, 32 + 32 + 32); // 24+1→32, 24+1→32, 24+8→32
  // second record
  assert.equal(buf.readUInt32LE(32), 5); // ino
  assert.equal(buf.readUInt32LE(40), 2); // off = index+1
  assert.equal(buf.readUInt32LE(48), 1); // namelen
  assert.equal(buf.readUInt32LE(52), 8); // DT_REG
  assert.equal(buf.toString('utf8', 56, 57), 'a');
  assert.equal(buf.readUInt32LE(64 + 20), 4); // DT_DIR
  // resume from a cookie and stop when the buffer is full
  const part = encodeDirents(entries, 1, 40, null);
  assert.equal(part.count, 1);
  assert.equal(part.buf.length, 32);
  assert.equal(direntSize(1, true), 160);
  assert.equal(direntSize(8, true), 160);
  assert.equal(direntSize(9, true), 168);
});

test('readdirplus: `.` gets nodeid 0, others a full entry', () => {
  const entries: DirEntry[] = [
    { name: '.', ino: 1, mode: S_IFDIR },
    { name: 'f', ino: 7, mode: S_IFREG, attr: { ino: 7, mode: S_IFREG | 0o600, size: 3 } },
  ];
  const { buf, count } = encodeDirents(entries, 0, 4096, {
    entry: (e) => (e.name === '.' ? null : { nodeid: e.ino, generation: 0, entryTimeout: 1.5, attrTimeout: 2, attr: e.attr! }),
  });
  assert.equal(count, 2);
  assert.equal(buf.length, 320);
  assert.equal(buf.readUInt32LE(0), 0); // nodeid of '.'
  assert.equal(buf.readUInt32LE(ENTRY_OUT_SIZE), 1); // dirent ino of '.'
  assert.equal(buf.readUInt32LE(160), 7); // nodeid
  assert.equal(buf.readUInt32LE(160 + 16), 1); // entry_valid seconds
  assert.equal(buf.readUInt32LE(160 + 32), 500_000_000); // entry_valid_nsec
  assert.equal(buf.readUInt32LE(160 + 40 + 8), 3); // attr.size
  assert.equal(buf.readUInt32LE(160 + 40 + 60), S_IFREG | 0o600); // attr.mode
});

test('attr defaults: blocks, nlink, blksize, times from mtime', () => {
  const b = Buffer.alloc(ATTR_SIZE);
  writeAttr(b, 0, { ino: 2 ** 40 + 3, mode: S_IFREG | 0o644, size: 5000, mtime: 1700000000, mtimeNsec: 7 });
  assert.equal(b.readBigUInt64LE(0), 2n ** 40n + 3n);
  assert.equal(b.readBigUInt64LE(16), 16n); // ceil(5000/4096)*8
  assert.equal(b.readBigUInt64LE(24), 1700000000n); // atime = mtime
  assert.equal(b.readUInt32LE(48), 7);
  assert.equal(b.readUInt32LE(64), 1); // nlink
  assert.equal(b.readUInt32LE(80), 4096);
  const neg = Buffer.alloc(ENTRY_OUT_SIZE, 0xff);
  writeEntryOut(neg, 0, 0, 0, 10, 0, null);
  assert.equal(neg.readBigUInt64LE(0), 0n);
  assert.equal(neg.readBigUInt64LE(16), 10n);
  assert.ok(neg.subarray(40).every((x) => x === 0));
});

test('makedev matches the kernel encoding', () => {
  assert.equal(makedev(1, 3), 0x103);
  assert.equal(makedev(8, 0x123), 0x100823);
});

test('mountinfo parsing decodes escapes and the device', () => {
  const text =
    '36 35 98:0 /mnt1 /mnt/with\\040space rw,noatime master:1 - ext3 /dev/root rw\n' +
    '42 30 0:39 / /tmp/x ro,nosuid,nodev,relatime shared:5 - fuse.soci soci rw,user_id=0\n';
  const m = parseMountinfo(text);
  assert.equal(m.length, 2);
  assert.equal(m[0]!.mountpoint, '/mnt/with space');
  assert.deepEqual([m[1]!.major, m[1]!.minor, m[1]!.fstype, m[1]!.source], [0, 39, 'fuse.soci', 'soci']);
});

test('errors map to errno', () => {
  assert.equal(toErrno(new ErrnoError(Errno.EACCES)), 13);
  assert.equal(toErrno(new SociError('ERR_NOT_FOUND', 'x')), Errno.ENOENT);
  assert.equal(toErrno(new SociError('ERR_TIMEOUT', 'x')), Errno.EIO);
  assert.equal(toErrno(new SociError('ERR_INTERNAL', 'x')), Errno.EIO);
  assert.equal(toErrno(Object.assign(new Error('x'), { errno: -2, code: 'ENOENT' })), 2);
  assert.equal(toErrno(Object.assign(new Error('x'), { code: 'ENOTDIR' })), 20);
  assert.equal(toErrno(new Error('boom')), Errno.EIO);
  assert.equal(toErrno('string'), Errno.EIO);
});
