/**
 * FailureLog: every report is counted, one line per (kind, layer, span or file) per interval, the
 * next line says how many were held back, and the key table stays bounded.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { FailureLog, failureFields, failureLine, type LayerFailure } from '../../src/fs/index.js';

const L = `sha256:${'ab'.repeat(32)}`;

test('failure log: counted always, written once per key per interval, held-back count on the next line', async () => {
  const lines: Array<[LayerFailure, number]> = [];
  let counted = 0;
  const log = new FailureLog({ write: (f, n) => lines.push([f, n]), count: () => counted++, intervalMs: 200 });
  for (let i = 0; i < 5; i++) log.report({ kind: 'span_verification', layer: L, spans: [3, 3], cause: 'bad' });
  log.report({ kind: 'span_verification', layer: L, spans: [4, 4], cause: 'bad' });
  log.report({ kind: 'registry', layer: L, spans: [3, 3], cause: 'HTTP 500' });
  log.report({ kind: 'span_verification', layer: `sha256:${'cd'.repeat(32)}`, spans: [3, 3], cause: 'bad' });
  log.report({ kind: 'toc_mismatch', layer: L, entry: 'etc/passwd', cause: 'size differs' });
  log.report({ kind: 'toc_mismatch', layer: L, entry: 'etc/passwd', cause: 'size differs' });
  assert.equal(counted, 10);
  assert.deepEqual(
    lines.map(([f, n]) => [f.kind, f.spans?.[0], f.entry, n]),
    [
      ['span_verification', 3, undefined, 0],
      ['span_verification', 4, undefined, 0],
      ['registry', 3, undefined, 0],
      ['span_verification', 3, undefined, 0],
      ['toc_mismatch', undefined, 'etc/passwd', 0],
    ],
  );
  await sleep(250);
  log.report({ kind: 'span_verification', layer: L, spans: [3, 3], cause: 'still bad' });
  assert.equal(lines.length, 6);
  assert.equal(lines[5]![1], 4, 'four reports of span 3 were held back');
  assert.deepEqual(failureFields(lines[5]![0], lines[5]![1]), { layer: L, kind: 'span_verification', span: 3, error: 'still bad', suppressed: 4 });
  assert.equal(failureLine(lines[5]![0], 4), `span verification failed (layer ${L}, span 3): still bad (4 more since the last line)`);
  assert.equal(
    failureLine({ kind: 'registry', layer: L, spans: [1, 5], entry: 'a\nb', cause: 'reset' }, 0),
    `registry fetch failed (layer ${L}, spans 1..5, file "a\\nb"): reset`,
  );
});

test('failure log: the key table is bounded (the oldest keys are forgotten)', () => {
  const lines: LayerFailure[] = [];
  const log = new FailureLog({ write: (f) => lines.push(f), maxKeys: 3, intervalMs: 60_000 });
  for (const s of [0, 1, 2, 3]) log.report({ kind: 'read', layer: L, spans: [s, s], cause: 'x' });
  assert.equal(lines.length, 4);
  log.report({ kind: 'read', layer: L, spans: [3, 3], cause: 'x' });
  assert.equal(lines.length, 4, 'span 3 is remembered');
  log.report({ kind: 'read', layer: L, spans: [0, 0], cause: 'x' });
  assert.equal(lines.length, 5, 'span 0 was forgotten, so it is written again');
});
