import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setImmediate as tick } from 'node:timers/promises';
import { runBounded, Semaphore, withDeadline } from '../src/concurrency.js';

/** Runs `n` tasks that each wait for a release; returns the most running at once. */
async function most(limit: number, n: number): Promise<{ most: number; order: number[] }> {
  const s = new Semaphore(limit);
  let running = 0;
  let peak = 0;
  const order: number[] = [];
  const gates: Array<() => void> = [];
  const all = Array.from({ length: n }, (_, i) =>
    s
      .run(async () => {
        running++;
        peak = Math.max(peak, running);
        order.push(i);
        await new Promise<void>((r) => gates.push(r));
        running--;
        if (i === 1) throw new Error('a failing task frees its slot too');
      })
      .catch(() => undefined),
  );
  while (order.length < n) {
    await tick();
    gates.shift()?.();
  }
  for (const g of gates) g();
  await Promise.all(all);
  return { most: peak, order };
}

test('Semaphore: at most `limit` run at once, in arrival order; failures free their slot', async () => {
  assert.deepEqual(await most(1, 5), { most: 1, order: [0, 1, 2, 3, 4] });
  assert.equal((await most(3, 10)).most, 3);
});

test('Semaphore: a limit of 0 or less is no bound', async () => {
  assert.equal((await most(0, 6)).most, 6);
  assert.equal((await most(-1, 4)).most, 4);
});

test('runBounded: at most `limit` at once; the first failure is thrown and stops new work', async () => {
  let running = 0;
  let peak = 0;
  const done: number[] = [];
  await runBounded(8, 3, async (i) => {
    running++;
    peak = Math.max(peak, running);
    await tick();
    running--;
    done.push(i);
  });
  assert.equal(peak, 3);
  assert.deepEqual(
    done.sort((a, b) => a - b),
    [0, 1, 2, 3, 4, 5, 6, 7],
  );
  const started: number[] = [];
  await assert.rejects(
    runBounded(10, 2, async (i) => {
      started.push(i);
      await tick();
      if (i === 1) throw new Error('boom');
    }),
    /boom/,
  );
  assert.ok(started.length < 10, `new work stopped after the failure (${started.length} started)`);
});

test('withDeadline: the value in time, else ERR_TIMEOUT naming the work; no deadline at 0', async () => {
  assert.equal(await withDeadline(Promise.resolve(7), 1000, 'x'), 7);
  await assert.rejects(
    withDeadline(new Promise(() => undefined), 20, 'the slow thing'),
    (e: Error & { code?: string }) => e.code === 'ERR_TIMEOUT' && /the slow thing did not finish within 20 ms/.test(e.message),
  );
  await assert.rejects(
    withDeadline(new Promise(() => undefined), 20, () => 'custom words'),
    /custom words/,
  );
  assert.equal(await withDeadline(new Promise((r) => setTimeout(() => r('late'), 30)), 0, 'x'), 'late');
});
