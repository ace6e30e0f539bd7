/** Go durations as AWS's CLI reads (--timeout) and prints them (index list's CREATED). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ago, formatGoSeconds, parseGoDuration } from '../../src/cli/duration.js';

test('Go duration text: parse', () => {
  assert.equal(parseGoDuration('timeout', '30s'), 30_000);
  assert.equal(parseGoDuration('timeout', '1m30s'), 90_000);
  assert.equal(parseGoDuration('timeout', '1.5h'), 5_400_000);
  assert.equal(parseGoDuration('timeout', '250ms'), 250);
  assert.equal(parseGoDuration('timeout', '0'), 0);
  for (const bad of ['', '30', 's', '1x', '-', '1m 30s']) assert.throws(() => parseGoDuration('timeout', bad), /invalid value .* for --timeout/);
});

test("Go duration text: Duration.String() of seconds, and index list's CREATED", () => {
  assert.equal(formatGoSeconds(0), '0s');
  assert.equal(formatGoSeconds(45), '45s');
  assert.equal(formatGoSeconds(182), '3m2s');
  assert.equal(formatGoSeconds(3605), '1h0m5s');
  assert.equal(formatGoSeconds(90061), '25h1m1s');
  const now = Date.parse('2026-12-02T12:00:00Z');
  assert.equal(ago('2026-12-02T11:56:58Z', now), '3m2s ago');
  assert.equal(ago('2026-12-02T11:59:59.600Z', now), '0s ago');
  assert.equal(ago('', now), 'n/a');
});
