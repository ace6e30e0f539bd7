/**
 * What checking a zTOC costs when a layer is mounted: decoding it and building the inode tree (as
 * before) against the structure check and header map (`TocHeaders`, src/ztoc/entry-check.ts). A
 * synthetic TOC of N regular files, so the cost is measured where it is largest: many small
 * entries. Median of 9 runs each. Usage: node --import tsx bench/ztoc-load.ts [--entries 100000]
 */
import { benchArgs } from './lib/args.js';
import { LayerTree } from '../src/fs/index.js';
import { marshalZtoc, unmarshalZtoc, type FileMetadata, type Ztoc } from '../src/ztoc/index.js';
import { TocHeaders } from '../src/ztoc/entry-check.js';
import { median } from './lib/stats.js';

const { values } = benchArgs({ options: { entries: { type: 'string', default: '100000' }, runs: { type: 'string', default: '9' } } });
const n = Number(values.entries);
const runs = Number(values.runs);

function synthetic(count: number): Ztoc {
  const toc: FileMetadata[] = [];
  let off = 0;
  for (let i = 0; i < count; i++) {
    const size = 100 + ((i * 7919) % 20000);
    off += 512; // its header
    toc.push({
      name: Buffer.from(`usr/share/d${i % 300}/file-${i}.txt`),
      type: 'reg',
      uncompressedOffset: off,
      uncompressedSize: size,
      linkname: Buffer.alloc(0),
      mode: 0o644,
      uid: 0,
      gid: 0,
      uname: Buffer.alloc(0),
      gname: Buffer.alloc(0),
      modTime: '2024-01-01T00:00:00Z',
      devmajor: 0,
      devminor: 0,
      pax: [],
    });
    off += Math.ceil(size / 512) * 512;
  }
  const dirs = [...new Set(toc.map((e) => e.name.toString().split('/').slice(0, -1).join('/')))];
  return {
    version: '0.9',
    buildToolIdentifier: 'bench',
    compressedArchiveSize: off,
    uncompressedArchiveSize: off + 1024,
    toc,
    compression: { algorithm: 'uncompressed', maxSpanId: 0, spanDigests: [`sha256:${'0'.repeat(64)}`], checkpoints: Buffer.alloc(0) },
    ...(dirs.length ? {} : {}),
  } as Ztoc;
}

const bytes = marshalZtoc(synthetic(n));
const load: number[] = [];
const check: number[] = [];
for (let i = 0; i < runs; i++) {
  const t0 = performance.now();
  const z = unmarshalZtoc(bytes);
  LayerTree.fromZtoc(z);
  const t1 = performance.now();
  new TocHeaders(z.toc, z.uncompressedArchiveSize, 'bench');
  const t2 = performance.now();
  load.push(t1 - t0);
  check.push(t2 - t1);
}
const l = median(load);
const c = median(check);
console.log(
  `${n} entries (${(bytes.length / 1e6).toFixed(1)} MB zTOC): decode + inode tree ${l.toFixed(1)} ms, TOC check ${c.toFixed(1)} ms (+${((100 * c) / l).toFixed(1)} %), median of ${runs}`,
);
