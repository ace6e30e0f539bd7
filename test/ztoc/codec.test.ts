/**
 * zTOC flatbuffer codec: a tiny zTOC's layout checked by hand against AWS's ztoc flatbuffer schema
 * (vtable sizes, field presence, field order, alignment), validation on decode, and a bounded
 * fixed-seed fuzz of unmarshalZtoc (flips, truncations, splices → only ERR_INVALID_ZTOC).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { goString, marshalZtoc, unmarshalZtoc, type FileMetadata, type Ztoc } from '../../src/ztoc/index.js';
import { isSociError } from '../../src/errors.js';

function entry(over: Partial<FileMetadata> = {}): FileMetadata {
  return {
    name: Buffer.from('a'),
    type: 'reg',
    uncompressedOffset: 512,
    uncompressedSize: 5,
    linkname: Buffer.alloc(0),
    mode: 0o644,
    uid: 0,
    gid: 0,
    uname: Buffer.alloc(0),
    gname: Buffer.alloc(0),
    modTime: '2023-11-14T22:13:20Z',
    devmajor: 0,
    devminor: 0,
    pax: [],
    ...over,
  };
}

function ztoc(over: Partial<Ztoc> = {}, ci: Partial<Ztoc['compression']> = {}): Ztoc {
  return {
    version: '0.9',
    buildToolIdentifier: 'AWS SOCI CLI v0.2',
    compressedArchiveSize: 100,
    uncompressedArchiveSize: 2048,
    toc: [entry()],
    compression: { algorithm: 'gzip', maxSpanId: 0, spanDigests: [`sha256:${'ab'.repeat(32)}`], checkpoints: Buffer.from([1, 2, 3]), ...ci },
    ...over,
  };
}

/** Minimal independent flatbuffer reading for the layout checks. */
function tableAt(buf: Buffer, pos: number) {
  const vt = pos - buf.readInt32LE(pos);
  const vtLen = buf.readUInt16LE(vt);
  const objLen = buf.readUInt16LE(vt + 2);
  const fieldOff = (id: number) => (4 + 2 * id < vtLen ? buf.readUInt16LE(vt + 4 + 2 * id) : 0);
  const ref = (id: number) => pos + fieldOff(id) + buf.readUInt32LE(pos + fieldOff(id));
  const str = (id: number) => {
    const s = ref(id);
    return buf.subarray(s + 4, s + 4 + buf.readUInt32LE(s));
  };
  return { pos, vtLen, objLen, fieldOff, ref, str };
}

test('tiny gzip zTOC: layout checked by hand', () => {
  const z = ztoc({}, {});
  z.toc = [
    entry({
      pax: [
        { key: Buffer.from('k2'), value: Buffer.from([0xff, 0]) },
        { key: Buffer.from('k1'), value: Buffer.alloc(0) },
      ],
    }),
  ];
  const buf = marshalZtoc(z);
  assert.equal(buf.length % 8, 0, 'minalign 8 → length multiple of 8');
  const root = tableAt(buf, buf.readUInt32LE(0));
  assert.equal(root.vtLen, 16, 'Ztoc vtable 4+6*2');
  assert.equal(root.str(0).toString(), '0.9');
  assert.equal(root.str(1).toString(), 'AWS SOCI CLI v0.2');
  assert.equal(buf.readBigInt64LE(root.pos + root.fieldOff(2)), 100n);
  assert.equal(buf.readBigInt64LE(root.pos + root.fieldOff(3)), 2048n);
  // add order 0,1,4,2,3,5: fields are prepended, so later adds sit closer to the table start
  const order = [0, 1, 4, 2, 3, 5].map((id) => root.fieldOff(id));
  for (let i = 1; i < order.length; i++) assert.ok(order[i]! < order[i - 1]!, `Ztoc field add order (${order})`);
  // version/build tool strings were created first → they are the last bytes of the buffer
  const v = root.ref(0);
  assert.ok(v > root.ref(1) && v + 4 + 4 >= buf.length - 8, 'version string at the end');

  const ci = tableAt(buf, root.ref(5));
  assert.equal(ci.vtLen, 12, 'CompressionInfo vtable: fields up to id 3, no trailing slots');
  assert.equal(ci.fieldOff(0), 0, 'gzip algorithm (the default) omitted');
  assert.equal(ci.fieldOff(1), 0, 'max_span_id 0 omitted');
  const cp = ci.ref(3);
  assert.deepEqual([...buf.subarray(cp + 4, cp + 4 + buf.readUInt32LE(cp))], [1, 2, 3]);

  const toc = tableAt(buf, root.ref(4));
  assert.equal(toc.vtLen, 6, 'TOC vtable');
  const vec = toc.ref(0);
  assert.equal(buf.readUInt32LE(vec), 1);
  const fm = tableAt(buf, vec + 4 + buf.readUInt32LE(vec + 4));
  assert.equal(fm.vtLen, 32, 'FileMetadata vtable 4+14*2 (xattrs always present)');
  for (const id of [0, 1, 4, 8, 9, 10, 13]) assert.notEqual(fm.fieldOff(id), 0, `string/vector field ${id} present even when empty`);
  for (const id of [6, 7, 11, 12]) assert.equal(fm.fieldOff(id), 0, `zero scalar ${id} omitted`);
  assert.equal(fm.str(1).toString(), 'reg');
  assert.equal(fm.str(4).length, 0);
  assert.equal(fm.str(10).toString(), '2023-11-14T22:13:20Z');
  // FileMetadata fields are added in id order → offsets strictly decrease with id among present ones
  const present = Array.from({ length: 14 }, (_, id) => fm.fieldOff(id)).filter((o) => o !== 0);
  for (let i = 1; i < present.length; i++) assert.ok(present[i]! < present[i - 1]!, 'FileMetadata add order');
  const xv = fm.ref(13);
  assert.equal(buf.readUInt32LE(xv), 2);
  const x0 = tableAt(buf, xv + 4 + buf.readUInt32LE(xv + 4));
  const x1 = tableAt(buf, xv + 8 + buf.readUInt32LE(xv + 8));
  assert.equal(x0.vtLen, 8, 'Xattr vtable');
  assert.deepEqual([x0.str(0).toString(), x1.str(0).toString()], ['k1', 'k2'], 'xattrs sorted by key bytes');
  assert.ok(x1.str(1).equals(Buffer.from([0xff, 0])), 'raw-byte value');
  // strings are NUL terminated
  const nameRef = fm.ref(0);
  assert.equal(buf[nameRef + 4 + 1], 0);
});

test('field presence: uncompressed algorithm stored as 2, non-zero max_span_id and scalars stored', () => {
  const z = ztoc(
    { toc: [entry({ uid: 0xfffffffe, gid: 7, devmajor: 8, devminor: 1, mode: -1, uncompressedOffset: 0 })] },
    { algorithm: 'uncompressed', maxSpanId: 2, spanDigests: ['a', 'b', 'c'] },
  );
  const buf = marshalZtoc(z);
  const root = tableAt(buf, buf.readUInt32LE(0));
  const ci = tableAt(buf, root.ref(5));
  assert.equal(buf.readInt8(ci.pos + ci.fieldOff(0)), 2);
  assert.equal(buf.readInt32LE(ci.pos + ci.fieldOff(1)), 2);
  const back = unmarshalZtoc(buf);
  assert.deepEqual(back, z);
  assert.ok(marshalZtoc(back).equals(buf));
});

test('unmarshal validation → ERR_INVALID_ZTOC', () => {
  const invalid = (b: Buffer, re: RegExp) =>
    assert.throws(
      () => unmarshalZtoc(b),
      (e: unknown) => isSociError(e, 'ERR_INVALID_ZTOC') && re.test((e as Error).message),
    );
  invalid(Buffer.alloc(0), /too short/);
  invalid(Buffer.alloc(64, 0xff), /outside|vtable|object/);
  // digest count must be max_span_id + 1 (marshal refuses too)
  assert.throws(
    () => marshalZtoc(ztoc({}, { maxSpanId: 1 })),
    (e: unknown) => isSociError(e, 'ERR_INVALID_ZTOC'),
  );
  const good = marshalZtoc(ztoc({}, { maxSpanId: 1, spanDigests: ['a', 'b'] }));
  const root = tableAt(good, good.readUInt32LE(0));
  const ci = tableAt(good, root.ref(5));
  const patched = Buffer.from(good);
  patched.writeInt32LE(5, ci.pos + ci.fieldOff(1));
  invalid(patched, /span digests/);
  // overlapping entries: the recomputed header offset passes the next entry's data offset
  invalid(marshalZtoc(ztoc({ toc: [entry({ uncompressedOffset: 512, uncompressedSize: 4000 }), entry({ uncompressedOffset: 1024 })] })), /overlaps/);
  // entries are re-sorted by offset like Go
  const sorted = unmarshalZtoc(
    marshalZtoc(
      ztoc({ toc: [entry({ name: Buffer.from('second'), uncompressedOffset: 2048 }), entry({ name: Buffer.from('first'), uncompressedOffset: 512 })] }),
    ),
  );
  assert.deepEqual(
    sorted.toc.map((e) => e.name.toString()),
    ['first', 'second'],
  );
  // unknown type string / algorithm value
  const typed = marshalZtoc(ztoc());
  const i = typed.indexOf(Buffer.from('reg\0'));
  const t2 = Buffer.from(typed);
  t2.write('xyz', i);
  invalid(t2, /unknown type/);
  const u = marshalZtoc(ztoc({}, { algorithm: 'uncompressed' }));
  const ur = tableAt(u, u.readUInt32LE(0));
  const uci = tableAt(u, ur.ref(5));
  const u2 = Buffer.from(u);
  u2.writeInt8(3, uci.pos + uci.fieldOff(0));
  invalid(u2, /algorithm/);
});

/** mulberry32: small fixed-seed PRNG so the fuzz is reproducible */
function prng(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

test('fuzz: 2400 mutated zTOCs decode or fail with ERR_INVALID_ZTOC only', { timeout: 60_000 }, (t) => {
  const rnd = prng(0x50c1);
  const bases = [
    marshalZtoc(ztoc()),
    marshalZtoc(
      ztoc(
        {
          toc: Array.from({ length: 12 }, (_, i) =>
            entry({
              name: Buffer.from(`dir/file-${i}`),
              uncompressedOffset: 512 + i * 1024,
              uncompressedSize: 100 + i,
              uid: i,
              pax: i % 3 ? [] : [{ key: Buffer.from('SCHILY.xattr.user.x'), value: Buffer.from([i, 0, 255]) }],
            }),
          ),
        },
        { algorithm: 'uncompressed', maxSpanId: 2, spanDigests: ['sha256:1', 'sha256:2', 'sha256:3'], checkpoints: Buffer.alloc(40, 9) },
      ),
    ),
  ];
  let decoded = 0;
  for (let n = 0; n < 2400; n++) {
    const base = bases[n % bases.length]!;
    let b = Buffer.from(base);
    const mode = n % 4;
    if (mode === 0 || mode === 3) {
      const flips = 1 + Math.floor(rnd() * 8);
      for (let k = 0; k < flips; k++) b[Math.floor(rnd() * b.length)] = Math.floor(rnd() * 256);
    }
    if (mode === 1 || mode === 3) b = b.subarray(0, Math.floor(rnd() * b.length));
    if (mode === 2) {
      // overwrite a random 4-byte word with an extreme or small value (offsets/lengths)
      const vals = [0, 1, 4, 0x7fffffff, 0xffffffff, 0x80000000, b.length, Math.floor(rnd() * 65536)];
      const at = Math.floor(rnd() * (b.length - 4));
      b.writeUInt32LE(vals[Math.floor(rnd() * vals.length)]! >>> 0, at);
    }
    try {
      const z = unmarshalZtoc(b);
      decoded++;
      // whatever decodes must re-encode without crashing
      try {
        marshalZtoc(z);
      } catch (e) {
        assert.ok(isSociError(e), `marshal of a decoded fuzz case threw ${String(e)}`);
      }
    } catch (e) {
      assert.ok(isSociError(e, 'ERR_INVALID_ZTOC'), `case ${n} (mode ${mode}) threw ${String(e)}`);
      // and it was a foreseen check, not a stray RangeError caught by the safety net
      assert.equal((e as Error).cause, undefined, `case ${n}: unforeseen ${String((e as Error).cause)}`);
    }
  }
  assert.ok(decoded > 0 && decoded < 2400, `some mutations decode, most do not (decoded ${decoded})`);
  t.diagnostic(`decoded ${decoded} of 2400`);
});

test('goString: invalid UTF-8 bytes each become U+FFFD like Go', () => {
  assert.equal(goString(Buffer.from('plain/ascii')), 'plain/ascii');
  assert.equal(goString(Buffer.from('caf\u00e9 \u{1f600}')), 'caf\u00e9 \u{1f600}');
  assert.equal(goString(Buffer.from([0x63, 0xe9, 0x2d, 0xff])), 'c\ufffd-\ufffd');
  assert.equal(goString(Buffer.from([0xf0, 0x9f, 0x98])), '\ufffd\ufffd\ufffd', 'truncated 4-byte sequence: one per byte');
  assert.equal(goString(Buffer.from([0xed, 0xa0, 0x80])), '\ufffd\ufffd\ufffd', 'surrogate');
  assert.equal(goString(Buffer.from([0xc0, 0xaf])), '\ufffd\ufffd', 'overlong');
  assert.equal(goString(Buffer.from([0xf4, 0x90, 0x80, 0x80])), '\ufffd\ufffd\ufffd\ufffd', 'above U+10FFFF');
});
