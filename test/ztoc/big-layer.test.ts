/**
 * A ≥ 300 MB layer (cached by harness/fixtures.ts makeBigLayer) at the default 4 MiB span:
 * many spans, every entry offset checked against the layout the generator wrote, and a sample of
 * files across spans (first, last, multi-span, boundary-straddling) extracted through the zTOC.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { open } from 'node:fs/promises';
import { fileBytes, fixtureCacheDir, makeBigLayer, type BigLayer } from '../../harness/fixtures.js';
import { needs } from '../../harness/env.js';
import { buildZtoc, extractFile, fileSpans, marshalZtoc, unmarshalZtoc, type Ztoc } from '../../src/ztoc/index.js';

const SPAN = 4 << 20;
const skip = needs({ tools: ['pigz'] });

async function readRange(path: string, start: number, end: number): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(end - start);
    const { bytesRead } = await fh.read(buf, 0, buf.length, start);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

/** Data offsets as the generator laid them out: 7 directory headers, then header + padded data per file. */
function expectedOffsets(big: BigLayer): number[] {
  let pos = 7 * 512;
  return big.files.map((f) => {
    const off = pos + 512;
    pos = off + Math.ceil(f.size / 512) * 512;
    return off;
  });
}

async function checkSample(z: Ztoc, big: BigLayer, blobPath: string, label: string): Promise<void> {
  const files = z.toc.filter((e) => e.type === 'reg');
  const multi = files.filter((e) => {
    const s = fileSpans(z, e);
    return s.end > s.start;
  });
  assert.ok(multi.length > 20, `${label}: many multi-span files (${multi.length})`);
  const sample = [files[0]!, files[1]!, files[files.length - 1]!, multi[0]!, multi[Math.floor(multi.length / 2)]!, multi[multi.length - 1]!];
  for (let i = 0; i < files.length; i += 37) sample.push(files[i]!);
  for (const e of sample) {
    const data = await extractFile(z, e, (s, en) => readRange(blobPath, s, en));
    const want = await readRange(big.tarPath, e.uncompressedOffset, e.uncompressedOffset + e.uncompressedSize);
    assert.equal(data.length, e.uncompressedSize);
    assert.ok(data.equals(want), `${label}: content of ${e.name.toString()}`);
  }
}

test('≥ 300 MB layer: many spans, offsets, sampled extraction (gzip and tar)', { skip, timeout: 600_000 }, async (t) => {
  const big = await makeBigLayer(fixtureCacheDir(), 300);
  const offsets = expectedOffsets(big);

  const t0 = performance.now();
  const z = await buildZtoc(fileBytes(big.gzPath, 1 << 20), { compression: 'gzip', spanSize: SPAN });
  const ms = performance.now() - t0;
  t.diagnostic(
    `gzip zTOC build: ${(z.uncompressedArchiveSize / 1e6).toFixed(0)} MB in ${ms.toFixed(0)} ms = ${(z.uncompressedArchiveSize / 1e3 / ms).toFixed(0)} MB/s, ${z.compression.maxSpanId + 1} spans`,
  );
  assert.ok(z.uncompressedArchiveSize >= 300e6);
  assert.ok(z.compression.maxSpanId + 1 >= 60, `spans: ${z.compression.maxSpanId + 1}`);
  const regs = z.toc.filter((e) => e.type === 'reg');
  assert.deepEqual(
    regs.map((e) => e.name.toString()),
    big.files.map((f) => f.name),
  );
  assert.deepEqual(
    regs.map((e) => e.uncompressedOffset),
    offsets,
  );
  assert.deepEqual(
    regs.map((e) => e.uncompressedSize),
    big.files.map((f) => f.size),
  );
  const bytes = marshalZtoc(z);
  assert.ok(marshalZtoc(unmarshalZtoc(bytes)).equals(bytes));
  await checkSample(z, big, big.gzPath, 'gzip');

  const zt = await buildZtoc(fileBytes(big.tarPath, 1 << 20), { compression: 'uncompressed', spanSize: SPAN });
  assert.deepEqual(zt.toc, z.toc, 'same TOC from the tar and the gzip blob');
  assert.equal(zt.uncompressedArchiveSize, z.uncompressedArchiveSize);
  await checkSample(zt, big, big.tarPath, 'tar');
});
