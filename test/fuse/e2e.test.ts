/**
 * End-to-end: a SyntheticFs mounted through FuseServer on a real /dev/fuse, exercised by ordinary
 * tools in child processes, once per reader (pipe, worker).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { needs } from '../../harness/env.js';
import { sh, mountSynthetic, waitFor, type Mounted } from './helpers.js';
import { BIG_SEED, MTIME, generated, generatedMd5 } from '../../harness/synthetic-fs.js';
import { createHash } from 'node:crypto';

const skip = needs({ root: true, tools: ['python3', 'getfattr', 'find', 'stat', 'dd'] });
const MiB = 1024 * 1024;
const BIG = 64 * MiB;
const TIMEOUT_MS = 1000;
const SLOW_LOOKUP_MS = 600; // < TIMEOUT_MS
const bigMd5 = generatedMd5(BIG_SEED, BIG);

for (const reader of ['pipe', 'worker'] as const) {
  describe(`FUSE e2e with the ${reader} reader`, { skip }, () => {
    let m: Mounted;
    let M = '';
    before(async () => {
      m = await mountSynthetic({ reader, requestTimeoutMs: TIMEOUT_MS }, { slowReadMs: 5000, slowLookupMs: SLOW_LOOKUP_MS });
      M = m.dir;
      assert.equal(m.server.readerKind, reader);
    });
    after(async () => {
      await m?.cleanup();
    });

    it('negotiates INIT flags and reports the connection in mountinfo', () => {
      assert.equal(m.server.kernel.major, 7);
      assert.ok(m.server.kernel.minor >= 26);
      assert.ok(m.server.kernel.flags & (1 << 22), 'MAX_PAGES negotiated');
      assert.ok(m.server.mountInfo, 'mountinfo entry');
      assert.equal(m.server.mountInfo!.fstype, 'fuse.socitest');
      assert.match(m.server.mountInfo!.options, /\bro\b/);
    });

    it('ls -la lists every type with the right mode letters', async () => {
      const r = await sh(`ls -lan '${M}'`);
      assert.equal(r.code, 0, r.stderr);
      const lines = new Map(
        r.stdout
          .trim()
          .split('\n')
          .slice(1)
          .map((l) => [/ (\S+)(?: -> \S+)?$/.exec(l)![1]!, l.replace(/\s+/g, ' ')]),
      );
      for (const n of ['.', '..', 'hello.txt', 'dir', 'many', 'big.bin', 'fifo', 'null-dev', 'hard1', 'true', 'xattr.txt'])
        assert.ok(lines.has(n), `${n} listed`);
      assert.match(lines.get('hello.txt')!, /^-rw-r----- 1 1000 100 12 Nov 14 2023 hello.txt$/);
      assert.match(lines.get('dir')!, /^drwxr-xr-x 3 /);
      assert.match(lines.get('fifo')!, /^prw-r--r-- /);
      assert.match(lines.get('null-dev')!, /^crw-rw-rw- 1 0 0 1, 3 /);
      assert.match(lines.get('true')!, /^-rwxr-xr-x /);
      assert.match(lines.get('link')!, /^lrwxrwxrwx 1 0 0 9 .* link -> hello.txt$/);
    });

    it('stat shows mode, uid, gid, size, mtime (ns), nlink and ino', async () => {
      const r = await sh(`stat -c '%f %u %g %s %Y %h %i %y' '${M}/hello.txt'`);
      assert.equal(r.code, 0, r.stderr);
      const [mode, uid, gid, size, mtime, nlink, ino] = r.stdout.trim().split(' ');
      assert.deepEqual([mode, uid, gid, size, mtime, nlink], ['81a0', '1000', '100', '12', String(MTIME), '1']);
      assert.equal(Number(ino), m.fs.nodes.get(1)!.children!.get('hello.txt'));
      assert.match(r.stdout, /\.123456789 /);
      const d = await sh(`stat -c '%F %t %T' '${M}/null-dev' '${M}/fifo'`);
      assert.equal(d.stdout, 'character special file 1 3\nfifo 0 0\n');
    });

    it('readdirplus without attributes from the filesystem (dir/ listing)', async () => {
      const before = m.fs.calls.getattr ?? 0;
      const r = await sh(`ls -lan '${M}/dir'`);
      assert.equal(r.code, 0, r.stderr);
      const lines = r.stdout.split('\n').map((l) => l.replace(/\s+/g, ' '));
      assert.ok(
        lines.some((l) => /^-rw-r--r-- 2 0 0 13 .* hard2$/.test(l)),
        r.stdout,
      );
      assert.ok(
        lines.some((l) => /^drwxr-xr-x 2 0 0 0 .* sub$/.test(l)),
        r.stdout,
      );
      assert.ok(
        lines.some((l) => /^lrwxrwxrwx 1 0 0 12 .* up-link -> \.\.\/hello\.txt$/.test(l)),
        r.stdout,
      );
      assert.ok((m.fs.calls.getattr ?? 0) > before, 'server fetched attributes itself');
    });

    it('hardlinks share one inode with nlink 2', async () => {
      const r = await sh(`stat -c '%i %h' '${M}/hard1' '${M}/dir/hard2' && cat '${M}/dir/hard2'`);
      assert.equal(r.code, 0, r.stderr);
      const [a, b, text] = r.stdout.split('\n');
      assert.equal(a, b);
      assert.match(a!, / 2$/);
      assert.equal(text, 'shared inode');
    });

    it('find walks the whole tree, 2000-entry directory included', async () => {
      const r = await sh(`cd '${M}' && find . | sort`);
      assert.equal(r.code, 0, r.stderr);
      const got = r.stdout.trim().split('\n');
      const want: string[] = ['.'];
      const walk = (ino: number, path: string): void => {
        for (const [name, child] of m.fs.nodes.get(ino)!.children ?? []) {
          want.push(`${path}/${name}`);
          if (m.fs.nodes.get(child)!.children) walk(child, `${path}/${name}`);
        }
      };
      walk(1, '.');
      assert.deepEqual(got, want.sort());
      const many = await sh(`ls '${M}/many' | wc -l && ls -f '${M}/many' | sort | head -3`);
      assert.equal(many.stdout, '2000\n.\n..\nf0000\n');
    });

    it('symlinks: readlink, relative and absolute targets, follow', async () => {
      const r = await sh(`readlink '${M}/link' '${M}/dir/abs-link' '${M}/dir/up-link'; readlink -f '${M}/dir/up-link'; cat '${M}/link'`);
      assert.equal(r.stdout, `hello.txt\n/etc/hostname\n../hello.txt\n${M}/hello.txt\nhello world\n`);
    });

    it('xattrs: dump incl. binary, missing → ENODATA, small buffer → ERANGE', async () => {
      const r = await sh(`getfattr --absolute-names -d -m - -e hex '${M}/xattr.txt'`);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /user\.bin=0x000102fffe00/);
      assert.match(r.stdout, /user\.text=0x68656c6c6f/);
      assert.match(r.stdout, /user\.big=0x(61){3000}\n/);
      const d = await sh(`getfattr --absolute-names -n trusted.overlay.opaque --only-values '${M}/dir'`);
      assert.equal(d.stdout, 'y');
      const missing = await sh(`getfattr -n user.missing '${M}/xattr.txt'`);
      assert.notEqual(missing.code, 0);
      assert.match(missing.stderr, /No such attribute/);
      // Raw syscalls with a too-small buffer: ERANGE for both getxattr and listxattr.
      const py = `
import ctypes, os, errno
libc = ctypes.CDLL(None, use_errno=True)
p = b'${M}/xattr.txt'
buf = ctypes.create_string_buffer(4)
print(libc.getxattr(p, b'user.text', buf, 2), errno.errorcode[ctypes.get_errno()])
print(libc.getxattr(p, b'user.text', None, 0))
print(libc.listxattr(p, buf, 2), errno.errorcode[ctypes.get_errno()])
print(sorted(os.listxattr(p)))
`;
      const e = await sh(`python3 -c "${py}"`);
      assert.equal(e.stdout, "-1 ERANGE\n5\n-1 ERANGE\n['user.big', 'user.bin', 'user.text']\n", e.stderr);
    });

    it('md5 of the 64 MiB generated file matches', async () => {
      const r = await sh(`md5sum '${M}/big.bin'`);
      assert.equal(r.stdout.split(' ')[0], bigMd5);
    });

    it('python mmap (MAP_SHARED and MAP_PRIVATE) reads the same bytes', async () => {
      const py = `
import mmap, hashlib, sys
for flags in (mmap.MAP_SHARED, mmap.MAP_PRIVATE):
    with open(sys.argv[1], 'rb') as f:
        mm = mmap.mmap(f.fileno(), 0, flags=flags, prot=mmap.PROT_READ)
        print(hashlib.md5(mm).hexdigest(), mm[12345:12349].hex())
        mm.close()
`;
      const r = await sh(`python3 -c "${py}" '${M}/big.bin'`);
      assert.equal(r.code, 0, r.stderr);
      const probe = generated(BIG_SEED, 12345, 4).toString('hex');
      assert.equal(r.stdout, `${bigMd5} ${probe}\n${bigMd5} ${probe}\n`);
    });

    it('FOPEN_DIRECT_IO files bypass the page cache (every read reaches the daemon)', async () => {
      const want = createHash('md5')
        .update(generated(BIG_SEED, 0, 4 * MiB))
        .digest('hex');
      const r1 = await sh(`md5sum < '${M}/direct.bin'`);
      const reads1 = m.fs.calls.read ?? 0;
      const r2 = await sh(`md5sum < '${M}/direct.bin'`);
      assert.equal(r1.stdout + r2.stdout, `${want}  -\n${want}  -\n`);
      assert.ok((m.fs.calls.read ?? 0) - reads1 >= 4, 'second pass served by the daemon again');
    });

    it('executes a binary from the mount', async () => {
      const r = await sh(`'${M}/true' && echo ran`);
      assert.equal(r.stdout, 'ran\n', r.stderr);
    });

    it('8 parallel O_DIRECT readers get the right bytes', async () => {
      const parts = Array.from({ length: 8 }, (_, i) => i);
      // each line's output order is nondeterministic: compare as sets
      const r = await sh(
        `( ${parts.map((i) => `(dd if='${M}/big.bin' iflag=direct bs=256k skip=${i * 32} count=32 status=none | md5sum | sed 's/-/${i}/') &`).join(' ')} wait )`,
      );
      assert.equal(r.code, 0, r.stderr);
      const got = r.stdout.trim().split('\n').sort();
      const want = parts
        .map(
          (i) =>
            `${createHash('md5')
              .update(generated(BIG_SEED, i * 8 * MiB, 8 * MiB))
              .digest('hex')}  ${i}`,
        )
        .sort();
      assert.deepEqual(got, want);
    });

    it('serves lookups concurrently (8 slow lookups take about as long as one)', async () => {
      const r = await sh(`for i in 1 2 3 4 5 6 7 8; do stat -c %s '${M}/slow-lookup/c'$i > /dev/null & done; wait`);
      assert.equal(r.code, 0, r.stderr);
      assert.ok(r.ms < 3 * SLOW_LOOKUP_MS, `took ${r.ms} ms`);
      assert.ok(r.ms >= SLOW_LOOKUP_MS - 20, `took ${r.ms} ms: lookups were not slow?`);
    });

    it('negative lookups are cached by the kernel', async () => {
      const r = await sh(`stat '${M}/nope'; stat '${M}/nope'; cat '${M}/dir/nope2'`);
      assert.match(r.stderr, /No such file or directory/);
      assert.equal(m.fs.lookedUp.get('nope'), 1);
    });

    it('a read slower than the request timeout fails with EIO in time', async () => {
      const r = await sh(`cat '${M}/slow.txt'`);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /Input\/output error/);
      assert.ok(r.ms >= TIMEOUT_MS - 50 && r.ms < TIMEOUT_MS + 1500, `took ${r.ms} ms`);
      assert.ok(m.server.stats.timeouts >= 1);
    });

    it('a killed client interrupts its pending request (EINTR), not waiting for the handler', async () => {
      const before = m.server.stats.interrupts;
      const r = await sh(`timeout -s KILL 0.1 stat '${M}/slow-lookup/interrupted'; echo rc=$?`);
      assert.match(r.stdout, /rc=137/);
      assert.ok(r.ms < SLOW_LOOKUP_MS - 150, `client took ${r.ms} ms`);
      assert.ok(m.server.stats.interrupts > before, 'INTERRUPT seen');
      // The lookup finishes later; its reference was never taken by the kernel and is handed back.
      const slowDir = m.fs.nodes.get(1)!.children!.get('slow-lookup')!;
      assert.ok(await waitFor(() => m.fs.nodes.get(slowDir)!.children!.has('interrupted'), 2000));
      const ino = m.fs.nodes.get(slowDir)!.children!.get('interrupted')!;
      assert.ok(await waitFor(() => m.fs.forgotten.get(ino) === 1, 1000), 'late lookup forgotten');
    });

    it('errors thrown by the filesystem map to errno', async () => {
      const r = await sh(`cat '${M}/gone.txt'; cat '${M}/eacces.txt'`);
      assert.match(r.stderr, /gone.txt: No such file or directory/);
      assert.match(r.stderr, /eacces.txt: Permission denied/);
      assert.ok(m.server.stats.errors >= 2, 'failures counted');
    });

    it('writes fail with EROFS; statfs answers', async () => {
      const r = await sh(`touch '${M}/new' ; echo x >> '${M}/hello.txt'; mkdir '${M}/d2'`);
      assert.equal((r.stderr.match(/Read-only file system/g) ?? []).length, 3, r.stderr);
      const s = await sh(`stat -f -c '%b %l %S' '${M}'`);
      assert.equal(s.stdout, '1000 255 4096\n');
    });

    it('soak: 4 concurrent mixed clients for 2 s, no errors, bytes right', async () => {
      const failures0 = m.server.stats.replyFailures;
      const timeouts0 = m.server.stats.timeouts;
      const errors0 = m.server.stats.errors;
      const errorReplies0 = m.server.stats.errorReplies;
      const part = createHash('md5')
        .update(generated(BIG_SEED, 3 * MiB, MiB))
        .digest('hex');
      const loop = `end=$(( $(date +%s) + 2 )); n=0; while [ $(date +%s) -lt $end ]; do
        dd if='${M}/big.bin' iflag=direct bs=64k skip=48 count=16 status=none | md5sum;
        ls -la '${M}/many' > /dev/null; stat '${M}/dir/sub/deep.txt' > /dev/null;
        getfattr --absolute-names -d '${M}/xattr.txt' > /dev/null; cat '${M}/link' > /dev/null; n=$((n+1)); done; echo loops=$n`;
      const r = await sh(`for c in 1 2 3 4; do ( ${loop} ) & done; wait`, 30_000);
      assert.equal(r.stderr, '');
      const sums = r.stdout.split('\n').filter((l) => l.endsWith('  -'));
      // Every client ran at least one full loop; how many is the machine's speed, not correctness.
      assert.ok(sums.length >= 4, `only ${sums.length} loops`);
      assert.ok(
        sums.every((l) => l === `${part}  -`),
        'every region md5 right',
      );
      assert.equal(m.server.stats.replyFailures, failures0);
      assert.equal(m.server.stats.timeouts, timeouts0);
      assert.equal(m.server.stats.errors, errors0, 'no filesystem failures');
      assert.ok(m.server.stats.errorReplies > errorReplies0, 'ls -la asks for absent xattrs (ENODATA)');
    });

    it('FORGETs reach the filesystem after the kernel drops its inodes', async () => {
      await sh(`ls -la '${M}/many' > /dev/null; sync; echo 2 > /proc/sys/vm/drop_caches`);
      const manyDir = m.fs.nodes.get(1)!.children!.get('many')!;
      const manyInos = new Set(m.fs.nodes.get(manyDir)!.children!.values());
      assert.ok(
        [...m.fs.forgotten.keys()].some((ino) => manyInos.has(ino)),
        'inodes of many/ forgotten',
      );
      assert.equal(m.server.stats.replyFailures, 0);
    });
  });
}
