/**
 * gzip, zstd and uncompressed layers in one image, pulled in `image()` mode (the first Prepare
 * starts all three at once, each in chunks, each through its own decoder): every snapshot dir
 * holds exactly its layer's files, byte for byte, and the verified blobs are kept.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { needs } from '../../harness/env.js';
import { decompressTools } from '../../src/pull/index.js';
import { assertTree, blobGets, leftovers, maxOverlap, pullAll, pullEnv, pushImage, randomFiles, spanOf } from './helpers.js';

const skip = needs({ root: true, tools: ['docker-registry', 'zstd', 'unpigz'] });
const CHUNK = 64 * 1024;

for (const [gzip, tools] of [
  ['unpigz', decompressTools({})],
  ['node:zlib', decompressTools({}, { ...process.env, CONTAINERD_DISABLE_PIGZ: '1' })],
] as const) {
  test(`image(): gzip (${gzip}), zstd and uncompressed layers pulled at once, in chunks, are byte-exact`, { skip, timeout: 120_000 }, async (t) => {
    const env = await pullEnv(t, { chunkSize: CHUNK, maxConcurrentDownloadsPerImage: 4, tools });
    const layers = [
      { files: randomFiles('gz', 700 * 1024), compression: 'gzip' as const },
      { files: randomFiles('zst', 700 * 1024), compression: 'zstd' as const },
      { files: randomFiles('raw', 700 * 1024), compression: 'none' as const },
    ];
    const img = await pushImage(env.direct, `formats/${gzip === 'unpigz' ? 'pigz' : 'zlib'}`, layers);
    assert.deepEqual(
      img.layers.map((l) => l.mediaType.split('.').pop()),
      ['tar+gzip', 'tar+zstd', 'tar'],
    );
    const dirs = await pullAll(env, img, 'image');
    for (const [i, dir] of dirs.entries()) await assertTree(dir, layers[i]!.files, `${layers[i]!.compression} layer`);

    const gets = blobGets(
      env.proxy,
      img.layers.map((l) => l.digest),
    );
    assert.equal(
      gets.length,
      img.layers.reduce((n, l) => n + Math.ceil(l.size / CHUNK), 0),
      'one GET per chunk, no retry',
    );
    assert.ok(maxOverlap(gets.map(spanOf)) > 1, 'chunks overlapped');
    const left = await leftovers(env);
    assert.deepEqual(left.blobs.sort(), img.layers.map((l) => l.digest.slice(7)).sort(), 'every blob kept, verified');
    assert.deepEqual([left.staging, left.ingest], [[], []], 'every staged layer claimed, no download left');
  });
}
