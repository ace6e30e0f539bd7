/**
 * A FUSE connection outlives the process serving it: the server is SIGKILLed while a read is in
 * flight and others wait; a new process takes the connection from its holder and serves it. The
 * read in flight is answered (FUSE_NOTIFY_RESEND), nothing fails, and data never read before is
 * served right. Without the fdpass addon the keeper says so in one line.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { needs, tempDir } from '../../harness/env.js';
import { ConnectionKeeper } from '../../src/fuse/index.js';
import { BIG_SEED, generatedMd5 } from '../../harness/synthetic-fs.js';
import { isMounted, makeMountDir, sh, waitFor } from './helpers.js';

const skip = needs({ root: true, tools: ['umount', 'md5sum'] });
const CHILD = join(import.meta.dirname, 'keeper-child.ts');

function startChild(
  dir: string,
  state: string,
  mode: 'mount' | 'resume' | 'resume-noresend',
  env: NodeJS.ProcessEnv = {},
): Promise<{ p: ChildProcess; line: string }> {
  const p = spawn(process.execPath, ['--import', 'tsx', CHILD, dir, state, mode], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  let err = '';
  p.stderr!.on('data', (d) => (err += d));
  return new Promise((res, rej) => {
    p.stdout!.once('data', (d: Buffer) => res({ p, line: d.toString().trim() }));
    p.once('exit', (code) => rej(new Error(`keeper child (${mode}) exited ${code}: ${err}`)));
  });
}

/** A SyntheticFs mounted by a child process that keeps its connection; all of it undone after the test. */
async function mountKept(t: TestContext, env: NodeJS.ProcessEnv = {}): Promise<{ dir: string; state: string; a: { p: ChildProcess; line: string } }> {
  const dir = await makeMountDir();
  const state = await tempDir(t);
  const a = await startChild(dir, state, 'mount', env);
  t.after(async () => {
    a.p.kill('SIGKILL');
    await new ConnectionKeeper(state).release(dir);
    if (await isMounted(dir)) await sh(`umount -l ${dir}`);
    await rmdir(dir).catch(() => undefined);
  });
  assert.equal(a.line, 'ready');
  return { dir, state, a };
}

test('a kept FUSE connection survives SIGKILL of its server: the read in flight is answered, later reads are right', { skip, timeout: 120_000 }, async (t) => {
  assert.equal(ConnectionKeeper.unavailable(), null, 'the fdpass addon is built (npm install)');
  const { dir, state, a } = await mountKept(t);
  // Read before the crash, and a read in flight at the crash (slow.txt answers after 1.5 s).
  assert.equal((await sh(`cat ${dir}/hello.txt`)).stdout, 'hello world\n');
  const inFlight = sh(`cat ${dir}/slow.txt`, 30_000);
  await new Promise((r) => setTimeout(r, 300));
  a.p.kill('SIGKILL');
  await new Promise((r) => a.p.once('exit', r));
  assert.ok(await isMounted(dir), 'the mount stays while its connection is kept');
  // Requests made with no server wait in the kernel, not fail.
  const waiting = sh(`md5sum ${dir}/big.bin && ls ${dir}/many | wc -l`, 30_000);
  await new Promise((r) => setTimeout(r, 500));

  const b = await startChild(dir, state, 'resume');
  t.after(async () => {
    b.p.kill('SIGTERM');
    await waitFor(() => b.p.exitCode !== null, 5000);
    b.p.kill('SIGKILL');
  });
  assert.equal(b.line, 'resumed true 0', 'FUSE_NOTIFY_RESEND accepted (Linux >= 6.9)');
  const slow = await inFlight;
  assert.equal(slow.code, 0, slow.stderr);
  assert.equal(slow.stdout, 'slow\n');
  const w = await waiting;
  assert.equal(w.code, 0, w.stderr);
  assert.equal(w.stdout.split(/\s+/)[0], generatedMd5(BIG_SEED, 8 << 20));
  assert.match(w.stdout, /\n2000\n$/);
  assert.equal((await sh(`cat ${dir}/dir/sub/deep.txt`)).stdout, 'deep\n');

  // A deliberate unmount releases the holder: nothing is kept any more.
  b.p.kill('SIGTERM');
  await waitFor(() => b.p.exitCode !== null, 10_000);
  assert.ok(!(await isMounted(dir)));
  assert.deepEqual(await new ConnectionKeeper(state).live(), []);
});

test('without FUSE_NOTIFY_RESEND (kernels < 6.9) a read in flight at the crash is answered EINTR, and the reader retries it', {
  skip,
  timeout: 120_000,
}, async (t) => {
  const { dir, state, a } = await mountKept(t);
  const inFlight = sh(`cat ${dir}/slow.txt`, 30_000);
  await new Promise((r) => setTimeout(r, 300));
  a.p.kill('SIGKILL');
  await new Promise((r) => a.p.once('exit', r));
  const b = await startChild(dir, state, 'resume-noresend');
  t.after(async () => {
    b.p.kill('SIGTERM');
    await waitFor(() => b.p.exitCode !== null, 5000);
    b.p.kill('SIGKILL');
  });
  const [, resent, answered] = b.line.split(' ');
  assert.equal(resent, 'false');
  assert.ok(Number(answered) >= 1, `the lost read was answered: ${b.line}`);
  // coreutils' cat retries a read that returned EINTR: the new server answers it.
  const slow = await inFlight;
  assert.equal(slow.code, 0, slow.stderr);
  assert.equal(slow.stdout, 'slow\n');
  assert.equal((await sh(`cat ${dir}/hello.txt`)).stdout, 'hello world\n');
});

test('a holder ends by itself once its mount is gone while no server runs (no holder leaks)', { skip, timeout: 60_000 }, async (t) => {
  const { dir, state, a } = await mountKept(t);
  const [rec] = await new ConnectionKeeper(state).live();
  assert.ok(rec, 'the connection is recorded');
  a.p.kill('SIGKILL');
  await new Promise((r) => a.p.once('exit', r));
  assert.ok(existsSync(`/proc/${rec.holder!.pid}`), 'the holder outlives its server');
  await sh(`umount -l ${dir}`);
  assert.ok(await waitFor(() => !existsSync(`/proc/${rec.holder!.pid}`), 25_000, 200), 'the holder exits once the mount is gone');
});

test('a kept connection no server takes back within its lease is aborted: readers get an error, not a wait forever', { skip, timeout: 60_000 }, async (t) => {
  const { dir, state, a } = await mountKept(t, { SOCI_FUSE_KEEP_SEC: '3' });
  const [rec] = await new ConnectionKeeper(state).live();
  a.p.kill('SIGKILL');
  await new Promise((r) => a.p.once('exit', r));
  const started = Date.now();
  const r = await sh(`cat ${dir}/hello.txt`, 30_000);
  assert.notEqual(r.code, 0, 'the read fails');
  assert.match(r.stderr, /Software caused connection abort|Transport endpoint is not connected/);
  assert.ok(Date.now() - started < 20_000, `bounded: ${Date.now() - started} ms`);
  assert.ok(await waitFor(() => !existsSync(`/proc/${rec!.holder!.pid}`), 5000, 100), 'the holder ended');
});

test('without the fdpass addon, keeping connections is unavailable and says why in one line', () => {
  const r = spawn(
    process.execPath,
    ['--import', 'tsx', '-e', "import('./src/fuse/index.ts').then((m) => process.stdout.write(String(m.ConnectionKeeper.unavailable())))"],
    { env: { ...process.env, SOCI_FDPASS_ADDON: '/nonexistent/fdpass.node' } },
  );
  let out = '';
  r.stdout.on('data', (d) => (out += d));
  return new Promise<void>((res) =>
    r.on('exit', () => {
      assert.match(out, /^the fdpass addon \(\/nonexistent\/fdpass\.node\) is unavailable: not built$/);
      res();
    }),
  );
});
