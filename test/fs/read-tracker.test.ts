import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Span, SpanTable } from '../../src/compression/types.js';
import { ReadTracker } from '../../src/fs/read-tracker.js';

/** Two 1 MiB spans: span 0 compresses 4:1, span 1 not at all. */
function table(): SpanTable {
  const spans: Span[] = [
    { id: 0, cStart: 0, cEnd: 262_144, uStart: 0, uEnd: 1 << 20 },
    { id: 1, cStart: 262_144, cEnd: 262_144 + (1 << 20), uStart: 1 << 20, uEnd: 2 << 20 },
  ];
  return {
    compression: 'gzip',
    spanSize: 1 << 20,
    spans,
    maxSpanId: 1,
    spanIdForOffset: (u) => (u < 1 << 20 ? 0 : 1),
    checkpoint: () => {
      throw new Error('unused');
    },
  };
}

test('read tracker: distinct pages, per-span compressed estimate, spans touched, first read time', () => {
  const t = new ReadTracker(table());
  assert.deepEqual(t.stats(), { bytesRead: 0, neededCompressed: 0, spansTouched: 0, firstReadAt: 0, bytesServed: 0 });
  const before = Date.now();
  t.record(0, 8192); // 2 pages of span 0
  t.record(100, 5000); // same pages again: nothing new
  assert.equal(t.stats().bytesRead, 8192);
  assert.equal(t.stats().bytesServed, 8192 + 4900, 'served counts every byte given, twice when read twice');
  assert.equal(t.stats().neededCompressed, 2048); // 4:1
  assert.ok(t.stats().firstReadAt >= before);
  t.record((1 << 20) - 1, (1 << 20) + 1); // last page of span 0 + first page of span 1
  const s = t.stats();
  assert.equal(s.spansTouched, 2);
  assert.equal(s.bytesRead, 4 * 4096);
  assert.equal(s.neededCompressed, 3 * 1024 + 4096);
  t.record(0, 2 << 20); // everything
  assert.equal(t.stats().bytesRead, 2 << 20);
  assert.equal(t.stats().neededCompressed, 262_144 + (1 << 20));
});

test('read tracker: empty and zero-length reads record nothing', () => {
  const t = new ReadTracker(table());
  t.record(10, 10);
  assert.equal(t.stats().firstReadAt, 0);
  assert.equal(t.stats().bytesServed, 0);
  assert.equal(t.stats().bytesRead, 0);
});
