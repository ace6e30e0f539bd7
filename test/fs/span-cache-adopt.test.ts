/**
 * SpanCache across processes: a new cache on the same dir takes over the spans an earlier one left
 * for a layer (adopt), within its byte cap, and removes what nobody claims (prune).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, readdir, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { SpanCache } from '../../src/fs/span-cache.js';
import { tempDir } from '../../harness/env.js';
import { pseudoRandom } from '../../harness/images.js';

test('SpanCache.adopt: an earlier cache spans are read back; prune removes unclaimed layers and old temp files', async (t) => {
  const dir = await tempDir(t);
  const a = new SpanCache({ dir });
  const spans = [0, 1, 5].map((i) => pseudoRandom(100_000 + i, 7 + i, 0));
  for (const [n, i] of [0, 1, 5].entries()) await a.put('sha256:aa-mnt1', i, spans[n]!);
  await a.put('sha256:bb-mnt2', 0, Buffer.from('other layer'));
  // a temp file left by a write cut short, an hour old, and one just started
  await mkdir(join(dir, 'wip'), { recursive: true });
  await writeFile(join(dir, 'wip', 'old'), 'x');
  await utimes(join(dir, 'wip', 'old'), new Date(Date.now() - 7200_000), new Date(Date.now() - 7200_000));
  await writeFile(join(dir, 'wip', 'new'), 'y');

  // "the next process": a fresh cache on the same dir knows nothing until it adopts
  const b = new SpanCache({ dir, hotMaxBytes: 0 });
  assert.equal(b.has('sha256:aa-mnt1', 0), false);
  assert.equal(await b.adopt('sha256:aa-mnt1'), 3);
  assert.equal(await b.adopt('sha256:aa-mnt1'), 0, 'adopting twice takes nothing more');
  assert.equal(await b.adopt('sha256:never-cached'), 0);
  for (const [n, i] of [0, 1, 5].entries()) assert.deepEqual(await b.read('sha256:aa-mnt1', i, 0, 200_000), spans[n]);
  assert.equal(b.has('sha256:aa-mnt1', 2), false);
  assert.equal(
    b.stats().bytes,
    spans.reduce((s, x) => s + x.length, 0),
  );

  await b.prune();
  assert.ok(!existsSync(join(dir, 'sha256_bb-mnt2')), 'a layer nobody adopted is removed');
  assert.ok(existsSync(join(dir, 'sha256_aa-mnt1')));
  assert.deepEqual(await readdir(join(dir, 'wip')), ['new']);

  // the byte cap holds for adopted spans too
  const small = new SpanCache({ dir, maxBytes: 150_000, hotMaxBytes: 0 });
  await small.adopt('sha256:aa-mnt1');
  assert.ok(small.stats().bytes <= 150_000, `${small.stats().bytes} bytes kept`);
});
