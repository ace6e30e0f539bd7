/**
 * The streaming tar walker against hand-made tars: Go archive/tar semantics for every header
 * feature, unsupported entry types, corrupt and truncated archives, and chunking independence.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { TarWalker, goModTime } from '../../src/ztoc/index.js';
import type { FileMetadata } from '../../src/ztoc/index.js';
import { isSociError } from '../../src/errors.js';
import { tempDir } from '../../harness/env.js';
import { makeLayer, paxPayload, rawHeader, rawTar, STANDARD_LAYER_SPECS } from '../../harness/fixtures.js';

function walk(tar: Buffer, chunk = tar.length || 1): { entries: FileMetadata[]; size: number } {
  const entries: FileMetadata[] = [];
  const w = new TarWalker((e) => entries.push(e));
  for (let i = 0; i < tar.length; i += chunk) w.write(tar.subarray(i, i + chunk));
  return { entries, size: w.end().uncompressedArchiveSize };
}

function badTar(tar: Buffer, re?: RegExp): void {
  assert.throws(
    () => walk(tar),
    (e: unknown) => isSociError(e, 'ERR_BAD_TAR') && (!re || re.test((e as Error).message)),
  );
}

const octal = (n: number, width = 12) => n.toString(8).padStart(width - 1, '0') + '\0';

test('chunking does not change the result (1 byte, odd sizes, whole)', async (t) => {
  const dir = await tempDir(t);
  const l = await makeLayer(dir, STANDARD_LAYER_SPECS[0]!);
  const tar = await readFile(l.tarPath);
  const whole = walk(tar);
  assert.equal(whole.entries.length, STANDARD_LAYER_SPECS[0]!.entries.length);
  for (const chunk of [1, 7, 511, 513, 4096, 65537]) assert.deepEqual(walk(tar, chunk), whole, `chunk ${chunk}`);
});

test('data offsets, end position, trailing bytes after the end marker ignored', () => {
  const tar = rawTar([
    { header: { name: 'a' }, data: 'hello' },
    { header: { name: 'b' }, data: Buffer.alloc(600, 1) },
  ]);
  const withJunk = Buffer.concat([tar, Buffer.alloc(10240 - tar.length), Buffer.from('junk after the end')]);
  const r = walk(withJunk);
  assert.deepEqual(
    r.entries.map((e) => [e.name.toString(), e.uncompressedOffset, e.uncompressedSize]),
    [
      ['a', 512, 5],
      ['b', 1536, 600],
    ],
  );
  assert.equal(r.size, 1536 + 1024 + 1024, 'position at the end of the second zero block');
});

test('clean ends: EOF at a header, after one zero block, or inside final padding', () => {
  const one = rawTar([{ header: { name: 'a' }, data: 'x' }], 0);
  assert.equal(walk(one).size, 1024);
  assert.equal(walk(rawTar([{ header: { name: 'a' }, data: 'x' }], 1)).size, 1536);
  const noPad = one.subarray(0, 512 + 1);
  const r = walk(noPad);
  assert.equal(r.entries.length, 1);
  assert.equal(r.size, 513);
  assert.equal(walk(Buffer.alloc(0)).size, 0);
});

test('truncated or corrupt archives are ERR_BAD_TAR', () => {
  const tar = rawTar([{ header: { name: 'a' }, data: Buffer.alloc(2000, 7) }]);
  badTar(tar.subarray(0, 300), /truncated inside a header/);
  badTar(tar.subarray(0, 512 + 1000), /truncated inside the data/);
  badTar(Buffer.concat([tar.subarray(0, 512 * 5), Buffer.alloc(512), Buffer.alloc(100)]), /truncated/);
  badTar(rawTar([{ header: { name: 'a', chksum: '0000000\0' } }]), /checksum/);
  badTar(rawTar([{ header: { name: 'a', mode: '07x7\0\0\0\0' } }]), /octal/);
  badTar(Buffer.concat([Buffer.alloc(512), rawHeader({ name: 'late' }), Buffer.alloc(1024)]), /zero block followed/);
  const pax = paxPayload([['path', 'x'.repeat(50)]]);
  badTar(Buffer.concat([rawHeader({ name: 'p', typeflag: 'x', size: octal(pax.length) }), pax.subarray(0, 20)]), /extended header/);
  // once failed, the walker keeps failing
  const w = new TarWalker(() => {});
  assert.throws(() => w.write(rawTar([{ header: { name: 'a', chksum: '1\0' } }])));
  assert.throws(
    () => w.write(Buffer.alloc(512)),
    (e: unknown) => isSociError(e, 'ERR_BAD_TAR'),
  );
});

test('unsupported entry types abort with ERR_BAD_TAR naming the entry', () => {
  for (const [type, what] of [
    ['g', 'PAX global'],
    ['S', 'GNU sparse'],
    ['7', 'contiguous'],
    ['V', "'V'"],
    ['A', "'A'"],
  ] as const) {
    const data = type === 'g' ? paxPayload([['comment', 'global']]) : 'abc';
    badTar(rawTar([{ header: { name: 'ok' } }, { header: { name: `weird-${type}`, typeflag: type }, data }]), new RegExp(`${what}.*weird-${type}`));
  }
  const sparse = (records: Array<[string, string]>) =>
    rawTar([{ header: { name: 'sparse', typeflag: 'x' }, data: paxPayload(records) }, { header: { name: 's' } }]);
  badTar(
    sparse([
      ['GNU.sparse.major', '1'],
      ['GNU.sparse.minor', '0'],
    ]),
    /sparse/,
  );
  badTar(
    sparse([
      ['GNU.sparse.offset', '0'],
      ['GNU.sparse.numbytes', '5'],
    ]),
    /sparse/,
  );
  badTar(sparse([['GNU.sparse.numbytes', '5']]), /sparse/);
  // an unknown sparse version is a plain file to Go; the records are kept like any other
  assert.deepEqual(
    walk(
      sparse([
        ['GNU.sparse.major', '7'],
        ['GNU.sparse.minor', '1'],
      ]),
    ).entries[0]!.pax.map((p) => p.key.toString()),
    ['GNU.sparse.major', 'GNU.sparse.minor'],
  );
});

test('type mapping and legacy NUL type', () => {
  const tar = rawTar([
    { header: { name: 'r', typeflag: '0' } },
    { header: { name: 'h', typeflag: '1', linkname: 'r' } },
    { header: { name: 's', typeflag: '2', linkname: 'r' } },
    { header: { name: 'c', typeflag: '3' } },
    { header: { name: 'b', typeflag: '4' } },
    { header: { name: 'd/', typeflag: '5' } },
    { header: { name: 'f', typeflag: '6' } },
    { header: { name: 'legacy-dir/', typeflag: '\0' } },
    { header: { name: 'legacy-file', typeflag: '\0' }, data: 'data' },
  ]);
  assert.deepEqual(
    walk(tar).entries.map((e) => e.type),
    ['reg', 'hardlink', 'symlink', 'char', 'block', 'dir', 'fifo', 'dir', 'reg'],
  );
});

test('header-only types skip no data even with a size field', () => {
  const tar = Buffer.concat([rawHeader({ name: 'd/', typeflag: '5', size: octal(1000) }), rawHeader({ name: 'next' }), Buffer.alloc(1024)]);
  const r = walk(tar);
  assert.deepEqual(
    r.entries.map((e) => [e.name.toString(), e.uncompressedOffset, e.uncompressedSize]),
    [
      ['d/', 512, 1000],
      ['next', 1024, 0],
    ],
  );
});

test('numbers: base-256 size and uid, negative uid wraps to uint32, spaces/NULs trimmed', () => {
  const size256 = Buffer.alloc(12);
  size256[0] = 0x80;
  size256.writeUInt32BE(1000, 8);
  const uidNeg = Buffer.alloc(8, 0xff); // base-256 -1
  const tar = Buffer.concat([
    rawHeader({ name: 'big', size: size256, uid: uidNeg, magic: 'gnu' }),
    Buffer.alloc(1024, 0x41),
    rawHeader({ name: 'after', mode: ' 644 \0\0\0', gid: '  17\0   ' }),
    Buffer.alloc(1024),
  ]);
  const r = walk(tar);
  assert.deepEqual([r.entries[0]!.uncompressedSize, r.entries[0]!.uid], [1000, 0xffffffff]);
  assert.deepEqual(
    [r.entries[1]!.name.toString(), r.entries[1]!.uncompressedOffset, r.entries[1]!.mode, r.entries[1]!.gid],
    ['after', 512 + 1024 + 512, 0o644, 0o17],
  );
});

test('names: USTAR prefix joined, GNU and V7 without prefix', () => {
  const tar = rawTar([
    { header: { name: 'name', prefix: 'pre/fix' } },
    { header: { name: 'gnu', prefix: '00000000000\0', magic: 'gnu' } },
    { header: { name: 'v7', prefix: 'ignored', magic: 'v7', uname: 'x' } },
  ]);
  const e = walk(tar).entries;
  assert.deepEqual(
    e.map((x) => x.name.toString()),
    ['pre/fix/name', 'gnu', 'v7'],
  );
  assert.equal(e[2]!.uname.length, 0, 'V7 headers have no uname');
  assert.equal(e[0]!.uname.toString(), 'root');
});

test('PAX: overrides, complete record map, empty values, replacement, GNU long name precedence', () => {
  const pax = paxPayload([
    ['path', 'pax/path/name'],
    ['linkpath', 'pax-target'],
    ['size', '700'],
    ['uid', '4294967297'],
    ['gid', '-1'],
    ['uname', 'alice'],
    ['gname', ''],
    ['mtime', '1700000000.123456789999'],
    ['atime', '1.5'],
    ['SCHILY.xattr.user.bin', Buffer.from([0, 1, 2, 0xff])],
    ['zz', 'last'],
  ]);
  const tar = Buffer.concat([
    rawHeader({ name: 'PaxHeaders/x', typeflag: 'x', size: octal(pax.length) }),
    pax,
    Buffer.alloc((512 - (pax.length % 512)) % 512),
    rawHeader({ name: 'ustar-name', typeflag: '2', gname: 'staff' }),
    rawHeader({ name: 'file', size: octal(10) }), // PAX size applies only to the entry it precedes
    Buffer.alloc(512, 1),
    Buffer.alloc(1024),
  ]);
  const [a, b] = walk(tar).entries;
  assert.equal(a!.name.toString(), 'pax/path/name');
  assert.equal(a!.linkname.toString(), 'pax-target');
  assert.equal(a!.uncompressedSize, 700, 'PAX size is reported (symlinks skip no data)');
  assert.deepEqual([a!.uid, a!.gid, a!.uname.toString(), a!.gname.toString()], [1, 0xffffffff, 'alice', 'staff']);
  assert.equal(a!.modTime, '2023-11-14T22:13:20.123456789Z');
  assert.deepEqual(
    a!.pax.map((p) => p.key.toString()),
    ['SCHILY.xattr.user.bin', 'atime', 'gid', 'gname', 'linkpath', 'mtime', 'path', 'size', 'uid', 'uname', 'zz'],
  );
  assert.ok(a!.pax[0]!.value.equals(Buffer.from([0, 1, 2, 0xff])));
  assert.deepEqual([b!.name.toString(), b!.pax.length, b!.uncompressedOffset], ['file', 0, 512 + Math.ceil(pax.length / 512) * 512 + 1024]);

  const p1 = paxPayload([
    ['path', 'first'],
    ['comment', 'one'],
  ]);
  const p2 = paxPayload([['uname', 'second']]);
  const longName = Buffer.from('gnu/long/name\0junk');
  const two = rawTar([
    { header: { name: 'x1', typeflag: 'x' }, data: p1 },
    { header: { name: 'x2', typeflag: 'x' }, data: p2 },
    { header: { name: '././@LongLink', typeflag: 'L' }, data: longName },
    { header: { name: 'short' }, data: 'z' },
  ]);
  const [c] = walk(two).entries;
  assert.equal(c!.name.toString(), 'gnu/long/name', 'GNU long name wins, cut at NUL');
  assert.deepEqual(
    c!.pax.map((p) => `${p.key}=${p.value}`),
    ['uname=second'],
    'a later x header replaces the earlier map',
  );
  assert.equal(c!.uncompressedOffset, 512 * 7);
});

test('PAX: malformed records and bad numeric values are ERR_BAD_TAR', () => {
  const bad = (payload: Buffer) => badTar(rawTar([{ header: { name: 'x', typeflag: 'x' }, data: payload }, { header: { name: 'f' } }]));
  bad(Buffer.from('8 path=x\n'));
  bad(Buffer.from('11 path=x\n'.replace('\n', '!')));
  bad(Buffer.from('4 a=\n'));
  bad(Buffer.from('10 noequal\n'));
  bad(paxPayload([['size', '12x']]));
  bad(paxPayload([['uid', '99999999999999999999']]));
  bad(paxPayload([['mtime', '1.5e3']]));
  bad(paxPayload([['path', 'a\0b']]));
  bad(Buffer.from('abc'));
});

test('mod_time: Go MarshalText in UTC', () => {
  assert.equal(goModTime(0n), '1970-01-01T00:00:00Z');
  assert.equal(goModTime(1700000000n, 120000000n), '2023-11-14T22:13:20.12Z');
  assert.equal(goModTime(-1n, 500000000n), '1969-12-31T23:59:59.5Z');
  assert.equal(goModTime(-2n, -500000000n + 1n), '1969-12-31T23:59:57.500000001Z');
  assert.equal(goModTime(253402300799n), '9999-12-31T23:59:59Z');
  assert.equal(goModTime(253402300800n), '', 'year 10000');
  assert.equal(goModTime(-62167219200n), '0000-01-01T00:00:00Z');
  assert.equal(goModTime(-62167219201n), '', 'year -1');
  assert.equal(goModTime(1n << 62n), '');
  const mt = Buffer.alloc(12);
  mt[0] = 0x80;
  mt.writeBigUInt64BE(253402300800n, 4);
  assert.equal(walk(rawTar([{ header: { name: 'future', mtime: mt } }])).entries[0]!.modTime, '');
});
