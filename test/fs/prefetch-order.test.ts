/**
 * Prefetch replay against a real gzip layer and a counting blob source: ranges merged and fetched in
 * record order, requests bounded in size, readers never queued behind prefetch requests, and a
 * failing source ending the replay with one error while reads still work.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { SpanCache } from '../../src/fs/index.js';
import { mergeRanges, replayPrefetch } from '../../src/fs/prefetch-replay.js';
import { spanTable } from '../../src/ztoc/index.js';
import { fakeSource, fixture, manager } from './span-fixture.js';

const r = (start_span: number, end_span: number) => ({ start_span, end_span });

test('mergeRanges: overlapping and touching ranges become one run, runs keep the order of their earliest range', () => {
  assert.deepEqual(mergeRanges([r(5, 6), r(1, 2), r(3, 3), r(10, 12), r(6, 8)]), [r(5, 8), r(1, 3), r(10, 12)]);
  assert.deepEqual(mergeRanges([r(4, 4), r(4, 4), r(2, 2)]), [r(4, 4), r(2, 2)]);
  assert.deepEqual(mergeRanges([]), []);
});

test('replay: runs in record order, each request at most requestBytes of missing spans, cached spans skipped', async (t) => {
  const f = await fixture(t);
  const src = await fakeSource(f.gz);
  const table = spanTable(f.ztoc);
  const m = manager(f, src, new SpanCache({ dir: join(f.dir, 'cache') }), { readaheadMaxSpans: 0 });
  await m.read(table.spans[7]!.uStart, 10); // span 7 cached before the replay
  src.calls.length = 0;
  const twoSpans = Math.max(...table.spans.map((s) => s.cEnd - s.cStart)) * 2;
  await replayPrefetch(m, [r(6, 9), r(1, 2), r(2, 3)], { concurrency: 1, requestBytes: twoSpans });
  const spansOf = ([a, b]: [number, number]) => [table.spans.findIndex((s) => s.cStart === a), table.spans.findIndex((s) => s.cEnd === b)];
  assert.deepEqual(src.calls.map(spansOf), [
    [6, 6],
    [8, 9],
    [1, 2],
    [3, 3],
  ]);
  for (const id of [1, 2, 3, 6, 7, 8, 9]) assert.equal(m.isMissing(id), false, `span ${id}`);
});

test('replay yields to readers: no prefetch request starts while a read waits on a miss', async (t) => {
  const f = await fixture(t);
  const src = await fakeSource(f.gz);
  src.delayMs = 150;
  const table = spanTable(f.ztoc);
  assert.ok(table.spans.length > 20);
  const m = manager(f, src, new SpanCache({ dir: join(f.dir, 'cache') }), { readaheadMaxSpans: 0 });
  const oneSpan = Math.max(...table.spans.map((s) => s.cEnd - s.cStart));
  // The order in which the source's requests start and end.
  const events: string[] = [];
  const read = src.read.bind(src);
  src.read = (a, b) => {
    events.push(`start ${a}`);
    return read(a, b).finally(() => events.push(`end ${a}`));
  };
  const replay = replayPrefetch(m, [r(0, 9)], { concurrency: 1, requestBytes: oneSpan });
  while (src.calls.length === 0) await new Promise((res) => setTimeout(res, 5));
  const sp = table.spans[20]!;
  const got = await m.read(sp.uStart, 100);
  assert.ok(got.equals(f.tar.subarray(sp.uStart, sp.uStart + 100)));
  const during = events.slice(events.indexOf(`start ${sp.cStart}`) + 1, events.indexOf(`end ${sp.cStart}`));
  assert.deepEqual(
    during.filter((e) => e.startsWith('start')),
    [],
    `no prefetch request started while the read waited: ${events.join(', ')}`,
  );
  await replay;
  assert.equal(src.calls.length, 11, 'then the replay went on: 10 prefetch requests and the read');
});

test('replay: a failing source ends it with one error, and reads still work afterwards', async (t) => {
  const f = await fixture(t);
  const src = await fakeSource(f.gz);
  src.fail = 1000;
  const table = spanTable(f.ztoc);
  const m = manager(f, src, new SpanCache({ dir: join(f.dir, 'cache') }), { readaheadMaxSpans: 0, retries: 0 });
  const errors: string[] = [];
  await replayPrefetch(m, [r(0, 3), r(5, 8), r(10, 12)], { requestBytes: 1, onError: (e) => errors.push(e.message) });
  assert.equal(errors.length, 1, errors.join('\n'));
  assert.ok(src.calls.length <= 4, `the replay stopped at the first failure (${src.calls.length} requests)`);
  src.fail = 0;
  const sp = table.spans[5]!;
  assert.ok((await m.read(sp.uStart, 50)).equals(f.tar.subarray(sp.uStart, sp.uStart + 50)));
});
