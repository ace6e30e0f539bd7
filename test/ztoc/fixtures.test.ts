/**
 * zTOCs of every standard fixture layer (python tarfile / GNU tar writers) in every compression
 * flavour, checked against python tarfile as the independent reference: entries, offsets, sizes,
 * file contents extracted through the zTOC, `ztoc info` spans, codec round trips, determinism and
 * engine equality.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GZIP_VARIANTS, fileBytes, listTar, makeStandardLayers, type LayerFixture, type TarListing } from '../../harness/fixtures.js';
import { buildZtoc, extractFile, fileMode, fileSpans, findEntry, marshalZtoc, spanTable, unmarshalZtoc, ztocInfo, type Ztoc } from '../../src/ztoc/index.js';
import { nativeAvailable } from '../../src/compression/index.js';
import { inCI } from '../../harness/env.js';
import { sha256Hex } from '../../src/oci/digest.js';

const SPAN = 65536;

/** python strips the trailing '/' of directory names; Go (and the zTOC) keep it */
const pyName = (n: Buffer) => (n.length > 1 && n[n.length - 1] === 0x2f ? n.subarray(0, n.length - 1) : n);

function fileReader(path: string) {
  return async (start: number, end: number): Promise<Buffer> => {
    const fh = await open(path, 'r');
    try {
      const buf = Buffer.alloc(end - start);
      const { bytesRead } = await fh.read(buf, 0, buf.length, start);
      return buf.subarray(0, bytesRead);
    } finally {
      await fh.close();
    }
  };
}

function checkAgainstReference(z: Ztoc, ref: TarListing[], label: string): void {
  assert.equal(z.toc.length, ref.length, `${label}: entry count`);
  const typeOf: Record<string, string> = { '0': 'reg', '1': 'hardlink', '2': 'symlink', '3': 'char', '4': 'block', '5': 'dir', '6': 'fifo' };
  ref.forEach((r, i) => {
    const e = z.toc[i]!;
    const what = `${label} #${i} ${JSON.stringify(r.name.toString('latin1'))}`;
    assert.ok(pyName(e.name).equals(r.name), `${what}: name ${JSON.stringify(e.name.toString('latin1'))}`);
    assert.equal(e.type, typeOf[r.type], `${what}: type`);
    assert.equal(e.uncompressedOffset, r.offset, `${what}: data offset`);
    assert.equal(e.uncompressedSize, e.type === 'reg' ? r.size : e.uncompressedSize, `${what}: size`);
    if (e.type === 'symlink' || e.type === 'hardlink') assert.ok(e.linkname.equals(r.linkname), `${what}: linkname`);
  });
  // end of archive = end of the two zero blocks after the last entry's padded data
  const last = z.toc[z.toc.length - 1]!;
  const dataEnd = last.type === 'reg' ? last.uncompressedOffset + last.uncompressedSize : last.uncompressedOffset;
  assert.equal(z.uncompressedArchiveSize, Math.ceil(dataEnd / 512) * 512 + 1024, `${label}: uncompressed_archive_size`);
}

describe('zTOC over the standard fixture layers', () => {
  let layers: LayerFixture[] = [];
  const refs = new Map<string, TarListing[]>();
  let dir = '';
  after(() => rm(dir, { recursive: true, force: true }));

  before(async () => {
    dir = await mkdtemp(join(process.env.SOCI_TEST_TMP ?? tmpdir(), 'soci-ztoc-fx-'));
    layers = await makeStandardLayers(dir);
    for (const l of layers) refs.set(l.name, await listTar(l.tarPath));
  });

  test('every flavour: entries match python tarfile, files extract byte-exact, info spans, round trips', { timeout: 240_000 }, async () => {
    for (const l of layers) {
      const ref = refs.get(l.name)!;
      const blobs: Array<[string, string, 'gzip' | 'uncompressed']> = [
        [`${l.name}.tar`, l.tarPath, 'uncompressed'],
        ...GZIP_VARIANTS.map((v) => [`${l.name}.${v}`, l.variants[v], 'gzip'] as [string, string, 'gzip']),
      ];
      for (const [label, path, compression] of blobs) {
        const z = await buildZtoc(fileBytes(path), { compression, spanSize: SPAN });
        assert.equal(z.compressedArchiveSize, (await readFile(path)).length, `${label}: compressed size`);
        checkAgainstReference(z, ref, label);

        // every regular file (and hardlink) extracted through the zTOC equals the tar's content
        const read = fileReader(path);
        for (const [i, e] of z.toc.entries()) {
          if (e.type !== 'reg' && e.type !== 'hardlink') continue;
          const data = await extractFile(z, e, read);
          const target = e.type === 'hardlink' ? ref.find((r) => r.name.equals(e.linkname)) : ref[i];
          assert.equal(sha256Hex(data), target!.sha256, `${label}: content of ${JSON.stringify(e.name.toString('latin1'))}`);
        }

        // ztoc info: key order, and spans computed independently from the span extents
        const info = ztocInfo(z, { size: 1234 });
        assert.deepEqual(Object.keys(info), ['version', 'build_tool', 'size', 'span_size', 'num_spans', 'num_files', 'num_multi_span_files', 'files']);
        assert.deepEqual(Object.keys(info.files![0]!), ['filename', 'offset', 'size', 'type', 'start_span', 'end_span']);
        assert.equal(info.span_size, SPAN);
        assert.equal(info.num_spans, z.compression.maxSpanId + 1);
        assert.equal(info.num_files, z.toc.length);
        const spans = spanTable(z).spans;
        const idOf = (u: number) => {
          let id = 0;
          for (const s of spans) if (s.uStart <= u) id = s.id;
          return Math.min(id, spans.length - 1);
        };
        let multi = 0;
        info.files!.forEach((f, i) => {
          const e = z.toc[i]!;
          assert.equal(f.start_span, idOf(e.uncompressedOffset), `${label}: start span of #${i}`);
          assert.equal(f.end_span, idOf(e.uncompressedOffset + e.uncompressedSize), `${label}: end span of #${i}`);
          assert.deepEqual(fileSpans(z, e), { start: f.start_span, end: f.end_span });
          // the spans really cover the file's bytes
          assert.ok(spans[f.start_span]!.uStart <= e.uncompressedOffset && spans[f.end_span]!.uEnd >= e.uncompressedOffset + e.uncompressedSize);
          if (f.start_span !== f.end_span) multi++;
        });
        assert.equal(info.num_multi_span_files, multi);

        // decode → encode is byte-identical; building twice is byte-identical
        const bytes = marshalZtoc(z);
        assert.equal(bytes.length % 8, 0);
        assert.ok(marshalZtoc(unmarshalZtoc(bytes)).equals(bytes), `${label}: decode→encode`);
        assert.deepEqual(unmarshalZtoc(bytes), z, `${label}: decoded model equals the built one`);
        assert.ok(
          marshalZtoc(await buildZtoc(fileBytes(path, 7777), { compression, spanSize: SPAN })).equals(bytes),
          `${label}: second build (other chunking)`,
        );
      }
    }
  });

  test('native and js engines produce identical zTOC bytes', {
    timeout: 120_000,
    skip: !nativeAvailable() && !inCI ? 'native zlib addon not built' : false,
  }, async () => {
    assert.ok(nativeAvailable(), 'native addon must be available in CI');
    for (const l of layers) {
      for (const v of GZIP_VARIANTS) {
        const path = l.variants[v];
        const a = marshalZtoc(await buildZtoc(fileBytes(path), { compression: 'gzip', spanSize: SPAN, engine: 'native' }));
        const b = marshalZtoc(await buildZtoc(fileBytes(path), { compression: 'gzip', spanSize: SPAN, engine: 'js' }));
        assert.ok(a.equals(b), `${l.name}.${v}: engines differ`);
      }
    }
  });

  test('entry metadata: PAX records, xattrs, times, ids, devices, modes, lookup', async () => {
    const l = layers.find((x) => x.name === 'pax-features')!;
    const z = await buildZtoc(fileBytes(l.gzPath), { compression: 'gzip', spanSize: SPAN });
    const ping = findEntry(z, 'usr/bin/ping')!;
    assert.deepEqual(
      ping.pax.map((p) => p.key.toString()),
      ['LIBARCHIVE.xattr.user.other', 'SCHILY.xattr.security.capability', 'SCHILY.xattr.user.note', 'comment'],
    );
    assert.ok(ping.pax[1]!.value.equals(Buffer.from('0100000200200000000000000000000000000000', 'hex')), 'binary xattr kept byte-exact');
    assert.equal(ping.pax[3]!.value.length, 0, 'empty PAX value kept');
    assert.equal(fileMode(ping), 0o104755);
    assert.equal(findEntry(z, '/usr/bin/ping6'), ping, 'hardlink resolves to its target');
    assert.equal(findEntry(z, './usr/bin/')!.type, 'dir');
    assert.equal(fileMode(findEntry(z, 'usr/bin')!), 0o40755);
    assert.equal(findEntry(z, 'usr/bin/sh')!.linkname.toString(), 'bash');
    assert.equal(fileMode(findEntry(z, 'usr/bin/sh')!), 0o120644);
    assert.equal(findEntry(z, 'no/such/file'), undefined);
    const nonUtf8 = findEntry(z, Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x2d, 0xff, 0x2e, 0x74, 0x78, 0x74]))!;
    assert.equal(nonUtf8.uncompressedSize, 1000);
    assert.ok(nonUtf8.pax.some((p) => p.key.toString() === 'hdrcharset' && p.value.toString() === 'BINARY'));
    const big1 = findEntry(z, 'big1')!;
    assert.deepEqual([big1.uid, big1.gid, big1.uname.toString(), big1.gname.toString()], [3_000_000, 4_000_000, 'someone', 'group']);
    assert.equal(findEntry(z, 'frac-mtime')!.modTime, '2023-11-14T22:13:20.25Z');
    assert.equal(findEntry(z, 'neg-mtime')!.modTime, '1969-12-31T23:59:58.5Z');
    assert.equal(findEntry(z, 'big2')!.modTime, '2023-11-14T22:13:20Z');
    const nul = findEntry(z, 'dev-null')!;
    assert.deepEqual([nul.type, nul.devmajor, nul.devminor, fileMode(nul)], ['char', 1, 3, 0o20666]);
    const sda = findEntry(z, 'dev-sda')!;
    assert.deepEqual([sda.type, sda.devmajor, sda.devminor, fileMode(sda)], ['block', 8, 0, 0o60660]);
    assert.equal(fileMode(findEntry(z, 'fifo')!), 0o10644);
    assert.equal(findEntry(z, 'opaque/.wh..wh..opq')!.type, 'reg');
    assert.equal(findEntry(z, `.wh.removed`)!.uncompressedSize, 0);

    const g = layers.find((x) => x.name === 'gnu-features')!;
    const zg = await buildZtoc(fileBytes(g.tarPath), { compression: 'uncompressed', spanSize: SPAN });
    const b256 = findEntry(zg, 'base256-uid')!;
    assert.deepEqual([b256.uid, b256.gid], [0o77777777, 0o100000000], 'base-256 uid/gid');
    assert.equal(b256.pax.length, 0, 'GNU format has no PAX records');
    const longName = zg.toc.find((e) => e.name.toString().endsWith('/gnu-long-name.txt'))!;
    assert.ok(longName.name.length > 250, 'GNU long name (L) applied');
    assert.ok(findEntry(zg, 'gnu-long-link')!.linkname.length > 150, 'GNU long link (K) applied');
    assert.equal(findEntry(zg, 'hosts-link'), findEntry(zg, 'etc/hosts'));
  });
});
