/**
 * Connection lifecycle over real /dev/fuse: unmount idle and busy (lazy), daemon-side abort
 * detection, stale mounts of a killed daemon, and request-level errors mapping — for both readers.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { rmdir } from 'node:fs/promises';
import { needs } from '../../harness/env.js';
import { readFile, readdir, readlink } from 'node:fs/promises';
import { FuseServer, cleanupStaleMounts } from '../../src/fuse/index.js';
import { isMounted, makeMountDir, mountSynthetic, sh, waitFor } from './helpers.js';
import { BIG_SEED, SyntheticFs, generatedMd5 } from '../../harness/synthetic-fs.js';

/** How many fds of this process point at /dev/fuse. */
async function fuseFds(): Promise<number> {
  let n = 0;
  for (const fd of await readdir('/proc/self/fd')) {
    if ((await readlink(`/proc/self/fd/${fd}`).catch(() => '')) === '/dev/fuse') n++;
  }
  return n;
}

const skip = needs({ root: true, tools: ['umount', 'stat', 'md5sum'] });

for (const reader of ['pipe', 'worker'] as const) {
  describe(`FUSE lifecycle with the ${reader} reader`, { skip }, () => {
    it('unmounts cleanly while idle and closes /dev/fuse', async (t) => {
      const fuseFds0 = await fuseFds();
      const m = await mountSynthetic({ reader });
      assert.equal(await fuseFds(), fuseFds0 + 1);
      t.after(() => m.cleanup());
      assert.equal((await sh(`cat '${m.dir}/hello.txt'`)).stdout, 'hello world\n');
      const r = await m.server.unmount();
      assert.deepEqual(r, { lazy: false });
      const c = await m.server.closed;
      assert.equal(c.reason, 'unmounted');
      assert.equal(c.code, 'ENODEV');
      assert.equal(await isMounted(m.dir), false);
      assert.equal(m.fs.destroyed, 1);
      assert.ok(await waitFor(async () => (await fuseFds()) === fuseFds0), '/dev/fuse fd closed');
    });

    it('busy: plain umount fails, lazy unmount detaches and keeps serving the open file', async (t) => {
      const size = 4 * 1024 * 1024;
      const m = await mountSynthetic({ reader }, { bigSize: size });
      t.after(() => m.cleanup());
      // A reader holding big.bin open on fd 3; it hashes it when told to (a line on stdin).
      const child = spawn('sh', ['-c', `exec 3< '${m.dir}/big.bin'; echo ready; read x; md5sum <&3`], { stdio: ['pipe', 'pipe', 'inherit'] });
      t.after(() => child.kill('SIGKILL'));
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      assert.ok(await waitFor(() => out.includes('ready')));
      await assert.rejects(m.server.unmount({ lazy: false }), /busy/);
      assert.equal(await isMounted(m.dir), true);
      assert.deepEqual(await m.server.unmount(), { lazy: true });
      assert.equal(await isMounted(m.dir), false, 'detached from the tree');
      let closed = false;
      void m.server.closed.then(() => (closed = true));
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(closed, false, 'still serving the open file');
      child.stdin.end('go\n');
      await once(child, 'exit');
      assert.equal(out.split('\n')[1]!.split(' ')[0], generatedMd5(BIG_SEED, size));
      const c = await m.server.closed;
      assert.equal(c.reason, 'unmounted');
    });

    it('detects an abort of the connection and unmounts lazily', async (t) => {
      const m = await mountSynthetic({ reader });
      t.after(() => m.cleanup());
      assert.equal((await sh(`stat -c %s '${m.dir}/hello.txt'`)).stdout, '12\n');
      const events: string[] = [];
      m.server.on('close', (c: { reason: string }) => events.push(c.reason));
      const c = await m.server.abort();
      assert.equal(c.reason, 'aborted');
      assert.equal(c.code, 'ECONNABORTED');
      assert.deepEqual(events, ['aborted']);
      assert.equal(await isMounted(m.dir), false, 'umount -l done before closed resolves');
    });

    it('detects an abort without ABORT_ERROR (plain ENODEV while still mounted)', async (t) => {
      const m = await mountSynthetic({ reader, abortError: false });
      t.after(() => m.cleanup());
      assert.equal(m.server.kernel.flags & (1 << 21), 0);
      const c = await m.server.abort();
      assert.deepEqual([c.reason, c.code], ['aborted', 'ENODEV']);
      assert.equal(await isMounted(m.dir), false);
    });
  });
}

describe('FUSE mount errors and reader choice', { skip }, () => {
  it('a failing mount rejects with ERR_FUSE and leaks no fd', async () => {
    const fuseFds0 = await fuseFds();
    await assert.rejects(
      FuseServer.mount(new SyntheticFs(), { mountpoint: '/nonexistent/soci-fuse-test', subtype: 'socitest' }),
      (e: unknown) => (e as { code?: string }).code === 'ERR_FUSE',
    );
    assert.equal(await fuseFds(), fuseFds0);
  });

  it('readaheadKb is written to the bdi of the mount', async (t) => {
    const m = await mountSynthetic({ readaheadKb: 1024 }, { bigSize: 1024 });
    t.after(() => m.cleanup());
    const id = m.server.connectionId;
    assert.equal(typeof id, 'number');
    assert.equal((await readFile(`/sys/class/bdi/0:${id}/read_ahead_kb`, 'utf8')).trim(), '1024');
    await m.server.setReadaheadKb(256);
    assert.equal((await readFile(`/sys/class/bdi/0:${id}/read_ahead_kb`, 'utf8')).trim(), '256');
  });

  it('falls back to the worker reader when pipe_wrap is unavailable', async (t) => {
    const proc = process as unknown as { binding: (name: string) => unknown };
    const saved = proc.binding;
    const savedEnv = process.env.SOCI_FUSE_READER;
    delete process.env.SOCI_FUSE_READER;
    proc.binding = (name: string) => {
      if (name === 'pipe_wrap') throw new Error('No such module: pipe_wrap');
      return saved.call(process, name);
    };
    let m;
    try {
      m = await mountSynthetic({ reader: 'auto' }, { bigSize: 1024 });
    } finally {
      proc.binding = saved;
      if (savedEnv !== undefined) process.env.SOCI_FUSE_READER = savedEnv;
    }
    t.after(() => m.cleanup());
    assert.equal(m.server.readerKind, 'worker');
    assert.equal((await sh(`cat '${m.dir}/hello.txt'`)).stdout, 'hello world\n');
  });

  it('SOCI_FUSE_READER selects the reader when the option is auto', async (t) => {
    for (const want of ['worker', 'pipe'] as const) {
      const saved = process.env.SOCI_FUSE_READER;
      process.env.SOCI_FUSE_READER = want;
      try {
        const m = await mountSynthetic({ reader: 'auto' }, { bigSize: 1024 });
        t.after(() => m.cleanup());
        assert.equal(m.server.readerKind, want);
        assert.equal((await sh(`cat '${m.dir}/hello.txt'`)).stdout, 'hello world\n');
        await m.cleanup();
      } finally {
        if (saved === undefined) delete process.env.SOCI_FUSE_READER;
        else process.env.SOCI_FUSE_READER = saved;
      }
    }
  });
});

describe('stale mounts', { skip }, () => {
  it('cleanupStaleMounts lazily unmounts the mount of a killed daemon and leaves live ones', async (t) => {
    const base = await makeMountDir('soci-stale-');
    const deadDir = `${base}/dead`;
    const liveDir = `${base}/live`;
    await sh(`mkdir '${deadDir}' '${liveDir}'`);
    t.after(async () => {
      for (const d of [deadDir, liveDir]) if (await isMounted(d)) await sh(`umount -l '${d}'`);
      await sh(`rmdir '${deadDir}' '${liveDir}'`);
      await rmdir(base).catch(() => undefined);
    });
    const child = spawn(process.execPath, ['--import', 'tsx', new URL('./stale-child.ts', import.meta.url).pathname, deadDir, 'socistale'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    assert.ok(await waitFor(() => out.includes('ready'), 20_000), 'child mounted');
    // A live mount of the same subtype, served by a second child, must survive the cleanup.
    const live = spawn(process.execPath, ['--import', 'tsx', new URL('./stale-child.ts', import.meta.url).pathname, liveDir, 'socistale'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    t.after(() => live.kill('SIGKILL'));
    let liveOut = '';
    live.stdout.on('data', (d: Buffer) => (liveOut += d.toString()));
    assert.ok(await waitFor(() => liveOut.includes('ready'), 20_000), 'live child mounted');

    child.kill('SIGKILL');
    await once(child, 'exit');
    const probe = await sh(`stat '${deadDir}'`);
    assert.match(probe.stderr, /not connected/);

    const res = await cleanupStaleMounts('socistale', base);
    assert.deepEqual(
      res.sort((a, b) => a.mountpoint.localeCompare(b.mountpoint)),
      [
        { mountpoint: deadDir, state: 'unmounted' },
        { mountpoint: liveDir, state: 'alive' },
      ],
    );
    assert.equal(await isMounted(deadDir), false);
    assert.equal(await isMounted(liveDir), true);
    assert.equal((await sh(`cat '${liveDir}/hello.txt'`)).stdout, 'hello world\n');
    // The live child is unmounted by us (it only serves); its server then sees ENODEV and exits.
    const liveExit = once(live, 'exit'); // attached first: the child may exit before umount(8) returns
    await sh(`umount '${liveDir}'`);
    const [code] = await liveExit;
    assert.equal(code, 0);
  });

  it('cleanupStaleMounts reports a hung daemon without hanging itself', async (t) => {
    const base = await makeMountDir('soci-stale-');
    const dir = `${base}/hung`;
    await sh(`mkdir '${dir}'`);
    const child = spawn(process.execPath, ['--import', 'tsx', new URL('./stale-child.ts', import.meta.url).pathname, dir, 'socihung', 'hang'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    t.after(async () => {
      child.kill('SIGKILL');
      await waitFor(() => child.exitCode !== null || child.signalCode !== null, 5000);
      if (await isMounted(dir)) await sh(`umount -l '${dir}'`);
      await sh(`rmdir '${dir}'`);
      await rmdir(base).catch(() => undefined);
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    assert.ok(await waitFor(() => out.includes('ready'), 20_000), 'child mounted');
    const t0 = Date.now();
    const res = await cleanupStaleMounts('socihung', base, 500);
    assert.ok(Date.now() - t0 < 3000, `took ${Date.now() - t0} ms`);
    assert.deepEqual(res, [{ mountpoint: dir, state: 'hung' }]);
    assert.equal(await isMounted(dir), true, 'a hung mount is left alone');
  });
});
