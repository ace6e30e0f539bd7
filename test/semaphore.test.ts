import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setImmediate as tick } from 'node:timers/promises';
import { Semaphore } from '../src/semaphore.js';

/** Runs `n` tasks that each wait for a release; returns the most running at once. */
async function most(limit: number, n: number): Promise<{ most: number; order: number[] }> {
  const s = new Semaphore(limit);
  let running = 0;
  let peak = 0;
  const order: number[] = [];
  const gates: Array<() => void> = [];
  const all = Array.from({ length: n }, (_, i) =>
    s.run(async () => {
      running++;
      peak = Math.max(peak, running);
      order.push(i);
      await new Promise<void>((r) => gates.push(r));
      running--;
      if (i === 1) throw new Error('a failing task frees its slot too');
    }).catch(() => undefined),
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
