/**
 * WorkerPool with the real unpack job module: many layers share a bounded number of threads, a job
 * whose source fails stops without disturbing the others on its thread, and idle threads exit.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { SociError } from '../src/errors.js';
import type { UnpackJob, UnpackResult } from '../src/fs/unpack.js';
import { digestOf } from '../src/oci/digest.js';
import { WorkerPool } from '../src/worker-pool.js';
import { tempDir, waitFor } from '../harness/env.js';

const WORKER = new URL('../src/fs/unpack-worker.ts', import.meta.url).href;

/** A tar of `files` files of 64 KiB each under dir `name`. */
function layerTar(name: string, files: number): Buffer {
  const src = execFileSync('mktemp', ['-d']).toString().trim();
  try {
    execFileSync('sh', ['-c', `mkdir -p ${src}/${name} && for i in $(seq 1 ${files}); do head -c 65536 /dev/urandom > ${src}/${name}/f$i; done`]);
    return execFileSync('tar', ['-C', src, '-cf', '-', name], { maxBuffer: 1 << 28 });
  } finally {
    execFileSync('rm', ['-rf', src]);
  }
}

async function* chunks(b: Buffer, size = 65536): AsyncGenerator<Buffer> {
  for (let i = 0; i < b.length; i += size) {
    yield b.subarray(i, i + size);
    await new Promise((r) => setImmediate(r));
  }
}

test('WorkerPool: six layers at once on two threads, each applied and hashed right', async (t) => {
  const pool = new WorkerPool(WORKER, { threads: 2, idleMs: 100 });
  const dir = await tempDir(t);
  const tars = Array.from({ length: 6 }, (_, i) => layerTar(`l${i}`, 40 + i));
  for (let i = 0; i < tars.length; i++) await mkdir(join(dir, String(i)));
  const results = await Promise.all(
    tars.map((tar, i) => pool.run<UnpackResult>({ unpackRoot: join(dir, String(i)), compression: 'gzip' } satisfies UnpackJob, chunks(gzipSync(tar)))),
  );
  for (const [i, r] of results.entries()) {
    assert.equal(r.diffId, digestOf(tars[i]!));
    assert.equal((await readdir(join(dir, String(i), `l${i}`))).length, 40 + i);
  }
  assert.equal(pool.peakThreads, 2, 'no more threads than the pool allows, however many jobs');
  assert.ok(await waitFor(() => pool.threadCount === 0, 5000), 'idle threads exit');
});

test('WorkerPool: a job whose source fails stops at once; the job beside it on the thread completes', async (t) => {
  const pool = new WorkerPool(WORKER, { threads: 1, idleMs: 60_000 });
  const dir = await tempDir(t);
  const big = layerTar('big', 200);
  const other = layerTar('other', 30);
  for (const d of ['bad', 'good', 'again']) await mkdir(join(dir, d));
  async function* failing(): AsyncGenerator<Buffer> {
    yield* chunks(big.subarray(0, big.length >> 1));
    throw new SociError('ERR_NETWORK', 'blob sha256:abc: connection reset');
  }
  const [bad, good] = await Promise.allSettled([
    pool.run<UnpackResult>({ unpackRoot: join(dir, 'bad') } satisfies UnpackJob, failing()),
    pool.run<UnpackResult>({ unpackRoot: join(dir, 'good') } satisfies UnpackJob, chunks(other)),
  ]);
  assert.equal(bad.status, 'rejected');
  assert.match(String((bad as PromiseRejectedResult).reason.message), /connection reset/);
  assert.equal(good.status, 'fulfilled', String((good as PromiseRejectedResult).reason));
  assert.equal((good as PromiseFulfilledResult<UnpackResult>).value.diffId, digestOf(other));
  // Nothing is written for the failed job once run() has settled.
  const before = (await readdir(join(dir, 'bad', 'big'))).length;
  assert.ok(before < 200);
  await new Promise((r) => setTimeout(r, 200));
  assert.equal((await readdir(join(dir, 'bad', 'big'))).length, before);
  // …and the job has ended on its thread: no file of it is still open (a job left waiting for
  // input would hold the file it was writing).
  const open = await Promise.all((await readdir('/proc/self/fd')).map((fd) => readlink(`/proc/self/fd/${fd}`).catch(() => '')));
  assert.deepEqual(
    open.filter((p) => p.startsWith(join(dir, 'bad'))),
    [],
  );
  assert.equal(pool.peakThreads, 1);
  // the thread is still usable
  const again = await pool.run<UnpackResult>({ unpackRoot: join(dir, 'again') } satisfies UnpackJob, chunks(other));
  assert.equal(again.diffId, digestOf(other));
});
