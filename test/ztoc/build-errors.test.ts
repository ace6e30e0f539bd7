/**
 * buildZtoc failure paths: tar errors surface through the gzip indexer unchanged, corrupt or
 * truncated gzip is ERR_BAD_GZIP, bad options are ERR_USAGE — never a raw exception.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import { buildZtoc } from '../../src/ztoc/index.js';
import { isSociError } from '../../src/errors.js';
import { rawTar } from '../../harness/fixtures.js';

async function* chunks(b: Buffer, size = 1000): AsyncIterable<Buffer> {
  for (let i = 0; i < b.length; i += size) yield b.subarray(i, i + size);
}

const good = rawTar([
  { header: { name: 'a' }, data: Buffer.alloc(5000, 3) },
  { header: { name: 'b' }, data: 'bee' },
]);
const withGlobal = rawTar([
  { header: { name: 'a' }, data: 'x' },
  { header: { name: 'pax_global_header', typeflag: 'g' }, data: '18 comment=hello\n' },
]);

test('tar errors come through both compressions as ERR_BAD_TAR', async () => {
  for (const compression of ['gzip', 'uncompressed'] as const) {
    const blob = compression === 'gzip' ? gzipSync(withGlobal) : withGlobal;
    await assert.rejects(
      buildZtoc(chunks(blob), { compression, spanSize: 1024 }),
      (e: unknown) => isSociError(e, 'ERR_BAD_TAR') && /PAX global header/.test((e as Error).message),
    );
    const truncated = compression === 'gzip' ? gzipSync(good.subarray(0, 3000)) : good.subarray(0, 3000);
    await assert.rejects(buildZtoc(chunks(truncated), { compression, spanSize: 1024 }), (e: unknown) => isSociError(e, 'ERR_BAD_TAR'));
  }
});

test('corrupt or truncated gzip is ERR_BAD_GZIP', async () => {
  const gz = gzipSync(good);
  await assert.rejects(buildZtoc(chunks(gz.subarray(0, gz.length - 20)), { compression: 'gzip', spanSize: 1024 }), (e: unknown) =>
    isSociError(e, 'ERR_BAD_GZIP'),
  );
  const flipped = Buffer.from(gz);
  flipped[gz.length - 6]! ^= 0xff; // CRC/ISIZE trailer
  await assert.rejects(buildZtoc(chunks(flipped), { compression: 'gzip', spanSize: 1024 }), (e: unknown) => isSociError(e, 'ERR_BAD_GZIP'));
  await assert.rejects(buildZtoc(chunks(Buffer.from('not gzip at all')), { compression: 'gzip', spanSize: 1024 }), (e: unknown) => isSociError(e));
});

test('options: negative span size is ERR_USAGE; defaults for version and build tool', async () => {
  await assert.rejects(buildZtoc(chunks(good), { compression: 'uncompressed', spanSize: -1 }), (e: unknown) => isSociError(e, 'ERR_USAGE'));
  const z = await buildZtoc(chunks(good), { compression: 'uncompressed', spanSize: 1024 });
  assert.deepEqual(
    [z.version, z.buildToolIdentifier, z.compressedArchiveSize, z.uncompressedArchiveSize],
    ['0.9', 'AWS SOCI CLI v0.2', good.length, good.length],
  );
  assert.equal(z.compression.maxSpanId, Math.ceil(good.length / 1024) - 1);
  const custom = await buildZtoc(chunks(gzipSync(good)), { compression: 'gzip', spanSize: 1024, buildToolIdentifier: 'custom' });
  assert.equal(custom.buildToolIdentifier, 'custom');
  assert.deepEqual(custom.toc, z.toc);
});
