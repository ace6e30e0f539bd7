/**
 * Readahead decisions: when a miss continues a stream, how windows grow, markers, streams, off;
 * and on a real layer, that a file's tar header check never reads ahead past the file.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Readahead } from '../../src/fs/readahead.js';
import { SpanCache, createLayerFs } from '../../src/fs/index.js';
import { buildZtoc, spanTable } from '../../src/ztoc/index.js';
import { fileBytes, makeLayer } from '../../harness/fixtures.js';
import { pseudoRandom } from '../../harness/images.js';
import { fakeSource } from './span-fixture.js';
import { scratch } from './util.js';

const ROOT_INO = 1;

test('readahead: a second in-order miss starts a window of 2; reaching its marker starts the next, doubling to the cap', () => {
  const ra = new Readahead(8, 100);
  assert.equal(ra.miss(10, 10), undefined, 'one miss is no stream yet');
  assert.deepEqual(ra.miss(11, 11), [12, 13]);
  assert.equal(ra.hit(11, 11), undefined, 'not yet at the marker');
  assert.deepEqual(ra.hit(12, 12), [14, 17], 'marker 12 reached: 4 more');
  assert.equal(ra.hit(13, 13), undefined);
  assert.deepEqual(ra.hit(14, 15), [18, 25], 'window 8');
  assert.deepEqual(ra.hit(18, 18), [26, 33], 'capped at 8');
  assert.deepEqual(ra.hit(26, 26), [34, 41]);
});

test('readahead: a miss at the frontier (reader outran the window) continues the stream; windows stop at the last span', () => {
  const ra = new Readahead(4, 20);
  ra.miss(0, 1);
  assert.deepEqual(ra.miss(2, 2), [3, 4]);
  // The reader skipped the marker and missed at the frontier: the window grows all the same.
  assert.deepEqual(ra.miss(5, 5), [6, 9]);
  assert.deepEqual(ra.hit(6, 6), [10, 13]);
  assert.deepEqual(ra.hit(10, 10), [14, 17]);
  assert.deepEqual(ra.hit(14, 14), [18, 20], 'clipped to the last span');
  assert.equal(ra.hit(18, 18), undefined, 'nothing left');
});

test('readahead: random misses never read ahead; concurrent streams are tracked apart, the oldest dropped', () => {
  const ra = new Readahead(8, 1000, 2);
  for (const s of [500, 20, 730, 41, 300, 999, 5]) assert.equal(ra.miss(s, s), undefined, `random miss ${s}`);
  const b = new Readahead(8, 1000, 2);
  b.miss(100, 100);
  b.miss(500, 500);
  assert.deepEqual(b.miss(101, 101), [102, 103], 'stream A');
  assert.deepEqual(b.miss(501, 501), [502, 503], 'stream B, interleaved');
  b.miss(900, 900); // a third stream pushes out the least recent (A)
  assert.deepEqual(b.hit(502, 502), [504, 507], 'B still tracked');
  assert.equal(b.miss(104, 104), undefined, 'A forgotten');
});

test('readahead: maxSpans 0 turns it off', () => {
  const ra = new Readahead(0, 100);
  assert.equal(ra.miss(0, 0), undefined);
  assert.equal(ra.miss(1, 1), undefined);
  assert.equal(ra.hit(2, 2), undefined);
});

test('readahead: windows stop at the end of the file being read; the next file in tar order keeps the stream', () => {
  const ra = new Readahead(8, 100);
  ra.miss(10, 10, 12);
  assert.deepEqual(ra.miss(11, 11, 12), [12, 12], 'clipped to the span holding the end of the file');
  assert.equal(ra.hit(12, 12, 12), undefined, 'nothing past the file');
  // The next file starts at span 13, where the stream stopped: it continues with a grown window.
  assert.deepEqual(ra.miss(13, 13, 40), [14, 21]);
  assert.equal(ra.miss(5, 5, 5), undefined, 'a file inside one span never reads ahead');
});

test('readahead: the tar header check before a file is served never reads ahead past that file', async (t) => {
  const { dir } = await scratch(t);
  // An uncompressed layer, so spans are exact: a.bin's header and data fill span 0, b.bin's header
  // starts span 1, c.bin fills the spans after.
  const fx = await makeLayer(dir, {
    name: 'headers',
    entries: [
      { type: 'file', name: 'a.bin', data: pseudoRandom(65536 - 512, 61, 0.1) },
      { type: 'file', name: 'b.bin', data: 'b\n' },
      { type: 'file', name: 'c.bin', data: pseudoRandom(300_000, 62, 0.1) },
    ],
  });
  const ztoc = await buildZtoc(fileBytes(fx.tarPath), { compression: 'uncompressed', spanSize: 65536 });
  const src = await fakeSource(fx.tarPath);
  const layer = { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: `sha256:${'c3'.repeat(32)}`, size: src.size };
  const fs = createLayerFs({ ztoc, layer, blob: src, cache: new SpanCache({ dir: join(dir, 'cache') }) });
  const table = spanTable(ztoc);
  const b = ztoc.toc.find((e) => e.name.toString('latin1') === 'b.bin')!;
  assert.equal(table.spanIdForOffset(b.uncompressedOffset - 512), 1, "b.bin's header starts span 1");
  // a.bin read whole (a miss of span 0), then b.bin: its header check misses span 1, in order
  assert.equal((await fs.read((await fs.lookup(ROOT_INO, 'a.bin'))!.ino, 0, 65024)).length, 65024);
  assert.equal((await fs.read((await fs.lookup(ROOT_INO, 'b.bin'))!.ino, 0, 10)).toString(), 'b\n');
  await fs.spans.settled();
  const fetched = table.spans.map((_, id) => id).filter((id) => !fs.spans.isMissing(id));
  assert.deepEqual(fetched, [0, 1], "nothing of c.bin was fetched ahead: b.bin's header is no reason to");
});
