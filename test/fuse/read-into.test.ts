/**
 * Filesystem.readInto: the server lends each READ a pooled scratch buffer. Concurrent READs never
 * share one, and a buffer still held by a request that was answered by timeout is not lent again
 * until that request's readInto settles (a late fill must not corrupt another reply).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { needs } from '../../harness/env.js';
import { FuseServer } from '../../src/fuse/index.js';
import { BIG_SEED, SyntheticFs, generatedMd5 } from '../../harness/synthetic-fs.js';
import { isMounted, makeMountDir, sh } from './helpers.js';
import { rmdir } from 'node:fs/promises';

const MiB = 1024 * 1024;
const BIG = 16 * MiB;

class ScratchFs extends SyntheticFs {
  readonly inUse = new Set<ArrayBufferLike>();
  overlaps = 0;
  readIntos = 0;
  lateFills = 0;

  async readInto(ino: number, offset: number, size: number, _fh: number, scratch: Buffer): Promise<Buffer> {
    this.readIntos++;
    assert.ok(scratch.length >= size);
    if (this.inUse.has(scratch.buffer)) this.overlaps++;
    this.inUse.add(scratch.buffer);
    try {
      if (ino === this.nodes.get(1)!.children!.get('slow.txt')) {
        // Outlives the request timeout, then scribbles over the scratch buffer.
        await new Promise((r) => setTimeout(r, 800));
        scratch.fill(0xee);
        this.lateFills++;
        return scratch.subarray(0, 1);
      }
      await new Promise((r) => setTimeout(r, Math.floor(Math.random() * 3)));
      const data = await super.read(ino, offset, size);
      data.copy(scratch);
      return scratch.subarray(0, data.length);
    } finally {
      this.inUse.delete(scratch.buffer);
    }
  }
}

describe('FUSE readInto scratch buffers', { skip: needs({ root: true, tools: ['dd', 'md5sum'] }) }, () => {
  let server: FuseServer;
  let fsys: ScratchFs;
  let dir = '';
  before(async () => {
    fsys = new ScratchFs({ bigSize: BIG });
    dir = await makeMountDir();
    server = await FuseServer.mount(fsys, { mountpoint: dir, subtype: 'socitest', requestTimeoutMs: 300 });
  });
  after(async () => {
    await server?.unmount().catch(() => undefined);
    if (dir && (await isMounted(dir))) await sh(`umount -l '${dir}'`);
    if (dir) await rmdir(dir).catch(() => undefined);
  });

  it('concurrent READs get distinct buffers; a timed-out READ keeps its buffer until it settles', async () => {
    const want = generatedMd5(BIG_SEED, BIG);
    const slow = sh(`cat '${dir}/slow.txt'`);
    // O_DIRECT: every read(2) is a READ to the daemon; 3 readers at once, 1 MiB and 128 KiB requests.
    const loop = (bs: string) => sh(`for i in 1 2 3 4 5 6; do dd if='${dir}/big.bin' iflag=direct bs=${bs} status=none | md5sum; done`);
    const [s, ...rs] = await Promise.all([slow, loop('1M'), loop('128k'), loop('1M')]);
    assert.notEqual(s.code, 0);
    assert.match(s.stderr, /Input\/output error/);
    for (const r of rs) {
      assert.equal(r.code, 0, r.stderr);
      for (const line of r.stdout.trim().split('\n')) assert.equal(line.split(' ')[0], want);
    }
    while (fsys.lateFills === 0) await new Promise((r) => setTimeout(r, 50));
    // And after the late fill: still right.
    const again = await sh(`dd if='${dir}/big.bin' iflag=direct bs=1M status=none | md5sum`);
    assert.equal(again.stdout.split(' ')[0], want);
    assert.equal(fsys.overlaps, 0, 'a scratch buffer was lent to two READs at once');
    assert.ok(fsys.readIntos >= 3 * 6 * 16, `readInto served the READs (${fsys.readIntos})`);
    assert.ok(server.stats.timeouts >= 1);
  });
});
