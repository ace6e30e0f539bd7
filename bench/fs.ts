/**
 * Lazy layer filesystem benchmark (root): a ~64 MB gzip layer is pushed to a local docker-registry
 * and mounted with mountLayer over FUSE (zTOC built locally, 4 MiB spans). Measures:
 *  - registry RTT (1-byte Range GET) and one whole-span Range GET, vs the first-byte latency of a
 *    file in an unfetched span (open + read 1 byte, timed inside a child process);
 *  - sequential `dd bs=1M` of a big file once its spans are in the span cache, with the file's page
 *    cache dropped (fadvise DONTNEED) so every byte goes through the layer fs;
 *  - amplification = compressed bytes fetched ÷ bytes read, for several read patterns (fresh mount
 *    and empty cache per pattern, background fetch off).
 * Usage: node --import tsx bench/fs.ts [--mb 64] [--json]
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RegistryClient } from '../src/registry/index.js';
import { buildZtoc, findEntry, type Ztoc } from '../src/ztoc/index.js';
import { SpanCache, mountLayer, type LayerMount } from '../src/fs/index.js';
import { fileBytes, fixtureCacheDir, makeBigLayer } from '../harness/fixtures.js';
import { startRegistry } from '../harness/registry.js';

const { values: flags } = benchArgs({ options: { mb: { type: 'string', default: '64' }, json: { type: 'boolean', default: false } } });
const mb = Number(flags.mb) || 64;
const json = flags.json;
const MiB = 1024 * 1024;

function run(cmd: string, argv: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, argv, { maxBuffer: 64 * MiB }, (err, stdout, stderr) =>
      err ? reject(new Error(`${cmd}: ${String(stderr) || err.message}`)) : resolve(String(stdout) + String(stderr)),
    );
  });
}

const PY_FIRST_BYTE = `
import sys, time
t = time.perf_counter()
with open(sys.argv[1], 'rb') as f:
    f.read(1)
print((time.perf_counter() - t) * 1000)
`;
/** Drops each file's page cache, then reads all with 1 MiB reads; prints MB/s. */
const PY_SEQ = `
import os, sys, time
for p in sys.argv[1:]:
    fd = os.open(p, os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED); os.close(fd)
n = 0
t = time.perf_counter()
for p in sys.argv[1:]:
    with open(p, 'rb', buffering=0) as f:
        while True:
            b = f.read(1 << 20)
            if not b: break
            n += len(b)
print(n / (1 << 20) / (time.perf_counter() - t))
`;
const PY_PATTERN = `
import sys, os
n = 0
for spec in sys.argv[1:]:
    p, off, ln = spec.rsplit(':', 2)
    with open(p, 'rb') as f:
        f.seek(int(off))
        n += len(f.read(int(ln)))
print(n)
`;
import { digestOf } from '../src/oci/digest.js';
import { benchArgs } from './lib/args.js';
import { median } from './lib/stats.js';

async function main(): Promise<void> {
  const cleanups: Array<() => unknown> = [];
  const t = { after: (fn: () => unknown) => cleanups.push(fn) };
  const work = await mkdtemp(join(tmpdir(), 'soci-bench-fs-'));
  const mounts: LayerMount[] = [];
  try {
    const reg = await startRegistry(t);
    const big = await makeBigLayer(fixtureCacheDir(), mb);
    const gz = await readFile(big.gzPath);
    const digest = digestOf(gz);
    const client = new RegistryClient({ registry: reg.host, plainHttp: true });
    cleanups.push(() => client.close());
    await client.pushBlob('bench/fs', digest, gz.length, gz);
    const ztoc: Ztoc = await buildZtoc(fileBytes(big.gzPath), { compression: 'gzip', spanSize: 4 * MiB });
    const spans = ztoc.compression.maxSpanId + 1;
    const layer = { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest, size: gz.length };

    const mount = async (name: string) => {
      const mnt = join(work, name);
      await mkdir(mnt);
      const cache = new SpanCache({ dir: join(work, `${name}-cache`), maxBytes: 1024 * MiB });
      const m = await mountLayer({
        ztoc,
        layer,
        blob: client.blobSource('bench/fs', digest, gz.length),
        mountpoint: mnt,
        cache,
        options: { readaheadKb: 1024 },
      });
      mounts.push(m);
      return { m, mnt };
    };

    // 1. Registry RTT and span fetch time.
    const rtt: number[] = [];
    for (let i = 0; i < 30; i++) {
      const t0 = performance.now();
      await client.fetchBlobRange('bench/fs', digest, i, i + 1);
      rtt.push(performance.now() - t0);
    }
    const spanT: number[] = [];
    const sp0 = ztoc.compression.spanDigests.length > 2 ? 1 : 0;
    for (let i = 0; i < 10; i++) {
      const t0 = performance.now();
      await client.fetchBlobRange('bench/fs', digest, 0, Math.min(gz.length, Math.ceil(gz.length / spans)));
      spanT.push(performance.now() - t0);
    }
    void sp0;

    // 2. First-byte latency: the first file of each span (fresh mount, nothing fetched).
    const { m: m1, mnt: mnt1 } = await mount('fb');
    const firstOfSpan = new Map<number, string>();
    const table = m1.fs.spans.table;
    for (const f of big.files) {
      const e = findEntry(ztoc, f.name)!;
      const s = table.spanIdForOffset(e.uncompressedOffset);
      if (!firstOfSpan.has(s) && table.spanIdForOffset(e.uncompressedOffset + 1) === s) firstOfSpan.set(s, f.name);
    }
    const fb: number[] = [];
    for (const name of [...firstOfSpan.values()].slice(0, 12)) {
      fb.push(Number((await run('python3', ['-c', PY_FIRST_BYTE, join(mnt1, name)])).trim()));
    }
    const fbCached: number[] = [];
    for (const name of [...firstOfSpan.values()].slice(0, 12)) {
      await run('python3', ['-c', 'import os,sys; fd=os.open(sys.argv[1], os.O_RDONLY); os.posix_fadvise(fd,0,0,os.POSIX_FADV_DONTNEED)', join(mnt1, name)]);
      fbCached.push(Number((await run('python3', ['-c', PY_FIRST_BYTE, join(mnt1, name)])).trim()));
    }

    // 3. Sequential dd of the biggest file: cold (fresh mount: fetch + verify + inflate), then with
    // its spans cached and its page cache dropped; then 1 MiB reads of every file (whole layer).
    const biggest = [...big.files].sort((a, b) => b.size - a.size)[0]!;
    const { mnt: mnt2 } = await mount('dd');
    const path = join(mnt2, biggest.name);
    const dd = async () => {
      const out = await run('dd', [`if=${path}`, 'of=/dev/null', 'bs=1M']);
      const m = /copied, ([0-9.e+-]+) s/.exec(out);
      return biggest.size / MiB / Number(m![1]);
    };
    const ddCold = await dd();
    const ddWarm: number[] = [];
    for (let i = 0; i < 5; i++) {
      await run('python3', ['-c', 'import os,sys; fd=os.open(sys.argv[1], os.O_RDONLY); os.posix_fadvise(fd,0,0,os.POSIX_FADV_DONTNEED)', path]);
      ddWarm.push(await dd());
    }

    const allPaths = big.files.map((f) => join(mnt2, f.name));
    await run('python3', ['-c', PY_SEQ, ...allPaths]); // fetch everything once
    const seqAll: number[] = [];
    for (let i = 0; i < 3; i++) seqAll.push(Number((await run('python3', ['-c', PY_SEQ, ...allPaths])).trim()));

    // 4. Amplification per read pattern, each on a fresh mount with an empty cache.
    const sorted = [...big.files].sort((a, b) => a.size - b.size);
    const patterns: Array<{ name: string; reads: (mnt: string) => string[] }> = [
      { name: 'one small file, whole', reads: (mnt) => [`${join(mnt, sorted[0]!.name)}:0:${sorted[0]!.size}`] },
      {
        name: '4 KiB head of 20 files',
        reads: (mnt) =>
          big.files
            .filter((_, i) => i % Math.max(1, Math.floor(big.files.length / 20)) === 0)
            .slice(0, 20)
            .map((f) => `${join(mnt, f.name)}:0:4096`),
      },
      { name: 'biggest file, whole', reads: (mnt) => [`${join(mnt, biggest.name)}:0:${biggest.size}`] },
      {
        name: '64 KiB at 50 random offsets',
        reads: (mnt) =>
          Array.from({ length: 50 }, (_, i) => {
            const f = big.files[(i * 7919) % big.files.length]!;
            return `${join(mnt, f.name)}:${(i * 104729) % Math.max(1, f.size - 65536)}:65536`;
          }),
      },
    ];
    const amp: Array<{ pattern: string; readBytes: number; fetchedBytes: number; rangeRequests: number; amplification: number }> = [];
    for (const [i, p] of patterns.entries()) {
      const { m, mnt } = await mount(`amp${i}`);
      const readBytes = Number((await run('python3', ['-c', PY_PATTERN, ...p.reads(mnt)])).trim());
      const st = m.stats();
      amp.push({ pattern: p.name, readBytes, fetchedBytes: st.bytesFetched, rangeRequests: st.rangeRequests, amplification: st.bytesFetched / readBytes });
      await m.unmount();
    }

    const result = {
      layer: { compressedBytes: gz.length, uncompressedBytes: ztoc.uncompressedArchiveSize, spans, spanSize: 4 * MiB, files: big.files.length },
      registryRttMs: { median: median(rtt), min: Math.min(...rtt) },
      spanRangeGetMs: { median: median(spanT), bytes: Math.ceil(gz.length / spans) },
      firstByteUnfetchedMs: { median: median(fb), min: Math.min(...fb), max: Math.max(...fb), n: fb.length },
      firstByteCachedSpanMs: { median: median(fbCached), n: fbCached.length },
      ddBiggestFile: { bytes: biggest.size, coldMBps: ddCold, cachedSpansMBps: median(ddWarm) },
      allFilesSequentialCachedSpansMBps: median(seqAll),
      amplification: amp,
    };
    if (json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    else {
      const f = (n: number) => n.toFixed(2);
      process.stdout.write(
        `layer: ${result.layer.compressedBytes} B gzip, ${result.layer.uncompressedBytes} B tar, ${spans} spans of 4 MiB, ${big.files.length} files\n`,
      );
      process.stdout.write(
        `registry RTT (1-byte Range GET): median ${f(result.registryRttMs.median)} ms; whole-span Range GET (${result.spanRangeGetMs.bytes} B): median ${f(result.spanRangeGetMs.median)} ms\n`,
      );
      process.stdout.write(
        `first byte, unfetched span: median ${f(result.firstByteUnfetchedMs.median)} ms (min ${f(result.firstByteUnfetchedMs.min)}, max ${f(result.firstByteUnfetchedMs.max)}, n ${fb.length}); cached span: median ${f(result.firstByteCachedSpanMs.median)} ms\n`,
      );
      process.stdout.write(`dd bs=1M of ${biggest.size} B file: cold ${f(ddCold)} MB/s; cached spans (page cache dropped) ${f(median(ddWarm))} MB/s\n`);
      process.stdout.write(
        `1 MiB sequential reads of all ${big.files.length} files (${result.layer.uncompressedBytes} B; spans cached, page cache dropped): ${f(median(seqAll))} MB/s\n`,
      );
      for (const a of amp)
        process.stdout.write(
          `amplification [${a.pattern}]: read ${a.readBytes} B, fetched ${a.fetchedBytes} B in ${a.rangeRequests} requests → ${f(a.amplification)}x\n`,
        );
    }
  } finally {
    for (const m of mounts.reverse()) await m.unmount().catch(() => undefined);
    for (const fn of cleanups.reverse()) await fn();
    await rm(work, { recursive: true, force: true });
  }
}

await main();
