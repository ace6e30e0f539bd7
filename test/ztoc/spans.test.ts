/**
 * Span math and lookups on small uncompressed layers where every offset is known by construction:
 * the exclusive-end quirk of fileSpans, path cleaning, hardlink resolution, extraction errors.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { buildZtoc, extractFile, fileSpans, findEntry, fileMode, ztocInfo } from '../../src/ztoc/index.js';
import { isSociError } from '../../src/errors.js';
import { rawTar } from '../../harness/fixtures.js';

// header 0..512, data [512, 2048) = 1536 bytes: ends exactly on the boundary of span 1/2 at span size 1024
const tar = rawTar([
  { header: { name: './dir/', typeflag: '5' } },
  { header: { name: './dir/exact' }, data: Buffer.alloc(1536 - 512, 0x61) },
  { header: { name: './dir/next' }, data: Buffer.from('next file data') },
  { header: { name: 'link1', typeflag: '1', linkname: './dir/next' } },
  { header: { name: 'link2', typeflag: '1', linkname: 'link1' } },
  { header: { name: 'dangling', typeflag: '1', linkname: 'nowhere' } },
  { header: { name: 'loop-a', typeflag: '1', linkname: 'loop-b' } },
  { header: { name: 'loop-b', typeflag: '1', linkname: 'loop-a' } },
  { header: { name: 'dup' }, data: 'first' },
  { header: { name: 'dup' }, data: 'second' },
]);
const build = (compression: 'gzip' | 'uncompressed') =>
  buildZtoc(Readable.from([compression === 'gzip' ? gzipSync(tar) : tar]), { compression, spanSize: 1024 });
const reader = (blob: Buffer) => async (s: number, e: number) => blob.subarray(s, e);

test('fileSpans: a file ending exactly on a span boundary also reports the next span (AWS quirk)', async () => {
  const z = await build('uncompressed');
  const exact = findEntry(z, 'dir/exact')!;
  assert.deepEqual([exact.uncompressedOffset, exact.uncompressedSize], [1024, 1024]);
  assert.deepEqual(fileSpans(z, exact), { start: 1, end: 2 });
  const info = ztocInfo(z, { size: 1 });
  const row = info.files!.find((f) => f.filename === './dir/exact')!;
  assert.deepEqual([row.start_span, row.end_span], [1, 2]);
  assert.ok(info.num_multi_span_files >= 1);
  // extraction still returns exactly the file's bytes (only span 1 is needed)
  const fetched: Array<[number, number]> = [];
  const data = await extractFile(z, exact, async (s, e) => {
    fetched.push([s, e]);
    return tar.subarray(s, e);
  });
  assert.ok(data.equals(Buffer.alloc(1024, 0x61)));
  assert.deepEqual(fetched, [[1024, 2048]], 'fetches only the span holding the bytes');
});

test('findEntry: cleaned paths, last duplicate wins, hardlink chains resolve', async () => {
  for (const compression of ['uncompressed', 'gzip'] as const) {
    const z = await build(compression);
    const blob = compression === 'gzip' ? gzipSync(tar) : tar;
    for (const p of ['dir/next', '/dir/next', './dir/next', 'dir//next', 'dir/./next', 'x/../dir/next', Buffer.from('dir/next')]) {
      assert.equal(findEntry(z, p)?.name.toString(), './dir/next', `lookup ${p}`);
    }
    assert.equal(findEntry(z, 'dir')!.type, 'dir');
    assert.equal(findEntry(z, 'dir/')!.type, 'dir');
    assert.equal(findEntry(z, 'link2'), findEntry(z, 'dir/next'), 'link2 → link1 → dir/next');
    assert.equal((await extractFile(z, findEntry(z, 'link2')!, reader(blob))).toString(), 'next file data');
    assert.equal(
      (await extractFile(z, z.toc.find((e) => e.name.toString() === 'link1')!, reader(blob))).toString(),
      'next file data',
      'extractFile resolves a hardlink entry',
    );
    assert.equal((await extractFile(z, findEntry(z, 'dup')!, reader(blob))).toString(), 'second', 'last duplicate wins');
    assert.equal(findEntry(z, 'missing'), undefined);
    assert.throws(
      () => findEntry(z, 'dangling'),
      (e: unknown) => isSociError(e, 'ERR_NOT_FOUND'),
    );
    assert.throws(
      () => findEntry(z, 'loop-a'),
      (e: unknown) => isSociError(e, 'ERR_INVALID_ZTOC'),
    );
    await assert.rejects(extractFile(z, findEntry(z, 'dir')!, reader(blob)), (e: unknown) => isSociError(e, 'ERR_UNSUPPORTED'));
    await assert.rejects(
      extractFile(z, findEntry(z, 'dir/next')!, async () => Buffer.alloc(3)),
      (e: unknown) => isSociError(e, 'ERR_IO'),
    );
  }
});

test('fileMode: permission, setuid/setgid/sticky and type bits; tar type bits in mode ignored', async () => {
  const z = await buildZtoc(
    Readable.from([
      rawTar([
        { header: { name: 's', mode: '0107755\0' } },
        { header: { name: 'd/', typeflag: '5', mode: '0041777\0' } },
        { header: { name: 'l', typeflag: '2', linkname: 's', mode: '0000777\0' } },
        { header: { name: 'g', mode: '0002750\0' } },
      ]),
    ]),
    { compression: 'uncompressed', spanSize: 1 << 20 },
  );
  assert.deepEqual(z.toc.map(fileMode), [0o107755, 0o41777, 0o120777, 0o102750]);
});
