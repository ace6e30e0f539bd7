/**
 * Cached sequential read through the lazy layer filesystem (target: `dd bs=1M` ≥ 1.5 GB/s): a layer
 * holding one 256 MiB file is mounted over FUSE (blob served from a local file, 4 MiB spans); the file
 * is read once (fetch + verify + inflate into the span cache), the file's page cache is evicted, then
 * `dd bs=1M` reads it again from the span cache. Median of 5. Usage (root):
 *   node --import tsx bench/fs-seq.ts
 */
import { execFile } from 'node:child_process';
import { createReadStream, existsSync, mkdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { fileBlobSource, mountLayer, SpanCache } from '../src/fs/index.js';
import { buildZtoc } from '../src/ztoc/index.js';
import { makeLayerTar, pseudoRandom } from '../harness/images.js';
import { benchArgs } from './lib/args.js';

const exec = promisify(execFile);
const MB = 1 << 20;
const { values: flags } = benchArgs({ options: { 'ra-kb': { type: 'string', default: '1024' }, runs: { type: 'string', default: '5' } } });
const raKb = Number(flags['ra-kb']);
const runs = Number(flags.runs);

async function main() {
  const work = resolve('.bench-work', 'fs-seq');
  mkdirSync(work, { recursive: true });
  const gz = join(work, 'layer.tar.gz');
  if (!existsSync(gz)) {
    const tar = makeLayerTar({ files: { 'data/big.bin': pseudoRandom(256 * MB, 99, 0.5) } });
    await new Promise<void>((res, rej) => {
      const p = execFile('sh', ['-c', `gzip -n -6 > ${gz}`], (e) => (e ? rej(e) : res()));
      p.stdin!.end(tar);
    });
  }
  const ztoc = await buildZtoc(createReadStream(gz) as AsyncIterable<Buffer>, { compression: 'gzip', spanSize: 4 * MB });
  const dir = await mkdtemp(join(tmpdir(), 'soci-seq-'));
  const mnt = join(dir, 'mnt');
  mkdirSync(mnt);
  const cache = new SpanCache({ dir: join(dir, 'cache'), maxBytes: 1024 * MB });
  const blob = await fileBlobSource(gz);
  const m = await mountLayer({
    ztoc,
    layer: { mediaType: '', digest: 'sha256:' + '0'.repeat(64), size: blob.size },
    blob,
    mountpoint: mnt,
    cache,
    options: { readaheadKb: raKb },
  });
  try {
    const file = join(mnt, 'data', 'big.bin');
    const dd = async () => {
      const { stderr } = await exec('dd', [`if=${file}`, 'of=/dev/null', 'bs=1M']);
      return Number(/(\d+) bytes .* s, /.exec(stderr)![1]) / Number(/, ([\d.]+) s,/.exec(stderr)![1]) / 1e9;
    };
    const cold = await dd();
    const warm: number[] = [];
    for (let i = 0; i < runs; i++) {
      // Evict only the FUSE file's pages (the kernel must ask the daemon again); the span cache's own
      // files stay in the page cache, as they would on a running node.
      await exec('python3', ['-c', `import os; fd=os.open(${JSON.stringify(file)}, os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)`]);
      warm.push(await dd());
    }
    warm.sort((a, b) => a - b);
    console.log(
      `256 MiB file, 4 MiB spans: cold (fetch+verify+inflate) ${cold.toFixed(2)} GB/s; spans cached, the file's page cache evicted: median ${warm[Math.floor(runs / 2)]!.toFixed(2)} GB/s (runs ${warm.map((x) => x.toFixed(2)).join(' / ')})`,
    );
  } finally {
    await m.unmount();
    await rm(dir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (e) => (console.error(e), process.exit(1)),
);
