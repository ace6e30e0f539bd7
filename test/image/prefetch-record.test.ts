/**
 * Prefetch records: files kept once each, in first-read order, with the byte ranges read merged,
 * until the window closes (a quiet period after the last new file, or the maximum); later reads are
 * ignored; the file form parses back to the files in first-read order with their ranges, and
 * anything else is a one-line usage error.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { PrefetchRecorder, encodeRecord, recordTargets, type PrefetchRecord } from '../../src/image/prefetch-record.js';
import { isSociError } from '../../src/errors.js';

test('recorder: first reads once each, in order, across layers; the quiet period closes the window', async () => {
  let done: PrefetchRecord | undefined;
  const r = new PrefetchRecorder({ image: 'img', manifest: 'sha256:m', quietMs: 150, maxMs: 10_000, onDone: (x) => (done = x) });
  const l1 = r.layer('sha256:l1');
  const l2 = r.layer('sha256:l2');
  l1('bin/sh', 0, 4096);
  l2('app/main.js', 100, 50);
  l1('bin/sh', 8192, 4096);
  l1('bin/sh', 4096, 1000); // touches the first range, not the second: [0, 5096) and [8192, 12288)
  l2('app/main.js', 0, 100); // touching: one range [0, 150)
  await sleep(50);
  l1('etc/passwd', 0, 10);
  assert.equal(r.done, false);
  await sleep(400);
  assert.ok(done, 'closed after the quiet period');
  assert.deepEqual(
    done.files.map((f) => [f.layer, f.path]),
    [
      ['sha256:l1', 'bin/sh'],
      ['sha256:l2', 'app/main.js'],
      ['sha256:l1', 'etc/passwd'],
    ],
  );
  assert.deepEqual(
    done.files.map((f) => f.ranges),
    [
      [
        [0, 5096],
        [8192, 4096],
      ],
      [[0, 150]],
      [[0, 10]],
    ],
  );
  assert.ok(done.files[2]!.atMs >= done.files[0]!.atMs);
  l1('late/file', 0, 1);
  assert.equal(r.finish().files.length, 3, 'reads after the window are not recorded');
  assert.equal(r.finish(), done, 'finish is idempotent');
});

test('recorder: the maximum closes a busy window; finish() closes it at once', async () => {
  let n = 0;
  const r = new PrefetchRecorder({ image: 'i', manifest: 'm', quietMs: 1000, maxMs: 200, onDone: () => n++ });
  const l = r.layer('l');
  for (let i = 0; i < 10; i++) {
    l(`f${i}`, 0, 1);
    await sleep(40);
  }
  assert.equal(r.done, true);
  assert.ok(r.finish().files.length < 10, 'files after the maximum are left out');
  assert.equal(n, 1);
  const q = new PrefetchRecorder({ image: 'i', manifest: 'm' });
  q.note('l', 'a');
  assert.deepEqual(
    q.finish().files.map((f) => [f.path, f.ranges]),
    [['a', undefined]],
    'a read without a range: the whole file',
  );
});

test('record file: files in first-read order, each once, with their ranges; bad files are usage errors', () => {
  const rec: PrefetchRecord = {
    version: 1,
    image: 'i',
    manifest: 'm',
    startedAt: new Date(0).toISOString(),
    windowMs: 10,
    files: [
      { layer: 'l2', path: 'b', atMs: 5, ranges: [[0, 10]] },
      { layer: 'l1', path: 'a', atMs: 1 },
      { layer: 'l1', path: 'b', atMs: 7, ranges: [[100, 10]] },
      { layer: 'l1', path: 'c', atMs: 8, ranges: [[0, 1]] },
      { layer: 'l2', path: 'c', atMs: 9 },
    ],
  };
  assert.deepEqual(recordTargets(encodeRecord(rec)), [
    { path: 'a' },
    {
      path: 'b',
      ranges: [
        [0, 10],
        [100, 10],
      ],
    },
    { path: 'c' },
  ]);
  const bads = ['nope', '{"version":2,"files":[]}', '{"version":1,"files":[{"path":1}]}', '{"version":1,"files":[{"path":"a","layer":"l","ranges":[[0,-1]]}]}'];
  for (const bad of bads) {
    assert.throws(
      () => recordTargets(Buffer.from(bad), 'r.json'),
      (e: unknown) => isSociError(e, 'ERR_USAGE') && /^r\.json is not/.test((e as Error).message),
    );
  }
});
