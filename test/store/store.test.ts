/**
 * The local store, as a unit: the content store (atomic, digest-verified writes, ranged reads, one
 * line for a missing blob) and the artifacts DB (what `soci index list` / `ztoc ls` read: filters,
 * newest first, zTOC reuse, removal, rebuild-db's replaceAll). No root, no network.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { collect, tempDir } from '../../harness/env.js';
import { digestOf } from '../../src/oci/digest.js';
import { isSociError } from '../../src/errors.js';
import { ArtifactsDb, type ArtifactEntry } from '../../src/store/artifacts-db.js';
import { ContentStore } from '../../src/store/content-store.js';

test('content store: put/get/has/size/list, ranged open, digest checked, nothing half-written', async (t) => {
  const root = await tempDir(t, 'soci-store-');
  const store = await ContentStore.open(root);
  const bytes = Buffer.from('hello, lazy world\n');
  const d = digestOf(bytes);
  assert.equal(await store.has(d), false);
  await assert.rejects(store.get(d), (e: unknown) => isSociError(e, 'ERR_NOT_FOUND') && /not found in the local store/.test((e as Error).message));
  assert.deepEqual(await store.put(bytes), { digest: d, size: bytes.length });
  assert.deepEqual(await store.put(bytes, d), { digest: d, size: bytes.length }, 'a second put is a no-op');
  assert.equal(await store.has(d), true);
  assert.equal(await store.size(d), bytes.length);
  assert.ok((await store.get(d)).equals(bytes));
  assert.equal((await collect(store.open(d, 7, 11) as AsyncIterable<Buffer>)).toString(), 'lazy');
  assert.deepEqual(await store.list(), [d]);

  // wrong bytes for a digest: refused, and no blob appears under either digest
  const other = Buffer.from('not those bytes');
  await assert.rejects(store.put(other, d.replace(/.$/, d.endsWith('0') ? '1' : '0')), (e: unknown) => isSociError(e, 'ERR_DIGEST_MISMATCH'));
  await assert.rejects(store.putStream(Readable.from([other]), `sha256:${'0'.repeat(64)}`), (e: unknown) => isSociError(e, 'ERR_DIGEST_MISMATCH'));
  assert.deepEqual(await store.list(), [d]);
  assert.deepEqual(await readdir(join(root, 'ingest')), [], 'no temp file left behind');

  // streamed in chunks: the same digest as the bytes
  const big = Buffer.alloc(3 << 20, 7);
  const info = await store.putStream(Readable.from([big.subarray(0, 1 << 20), big.subarray(1 << 20)]), digestOf(big));
  assert.deepEqual(info, { digest: digestOf(big), size: big.length });
  await store.delete(d);
  assert.deepEqual(await store.list(), [digestOf(big)]);
  await assert.rejects(store.has('sha256:nothex'), (e: unknown) => isSociError(e, 'ERR_USAGE'));
});

const entry = (over: Partial<ArtifactEntry>): ArtifactEntry => ({
  digest: digestOf(JSON.stringify(over)),
  size: 100,
  type: 'soci_index',
  originalDigest: '',
  imageDigest: '',
  imageRef: '',
  platform: 'linux/amd64',
  location: '',
  mediaType: 'application/vnd.oci.image.manifest.v1+json',
  artifactType: 'application/vnd.amazon.soci.index.v2+json',
  spanSize: 4 << 20,
  createdAt: '2026-12-01T00:00:00Z',
  ...over,
});

test('artifacts DB: filters, newest first, zTOC reuse by layer and span size, remove, replaceAll', async (t) => {
  const dir = await tempDir(t, 'soci-db-');
  const db = new ArtifactsDb(join(dir, 'nested', 'soci.db'));
  t.after(() => db.close());
  const old = entry({ imageRef: 'r/app:v1', imageDigest: 'sha256:' + 'a'.repeat(64), createdAt: '2026-12-01T00:00:00Z' });
  const newer = entry({ imageRef: 'r/app:v1', imageDigest: 'sha256:' + 'b'.repeat(64), platform: 'linux/arm64', createdAt: '2026-12-02T00:00:00Z' });
  const z1 = entry({ type: 'soci_layer', originalDigest: 'sha256:' + 'c'.repeat(64), spanSize: 1 << 20 });
  const z4 = entry({ type: 'soci_layer', originalDigest: 'sha256:' + 'c'.repeat(64), spanSize: 4 << 20 });
  db.putMany([old, newer, z1, z4]);
  assert.deepEqual(
    db.list({ type: 'soci_index' }).map((e) => e.digest),
    [newer.digest, old.digest],
    'newest first',
  );
  assert.deepEqual(db.list({ type: 'soci_index', platform: 'linux/arm64' }), [newer]);
  assert.deepEqual(db.list({ imageRef: 'r/app:v1', imageDigest: old.imageDigest }), [old]);
  assert.equal(db.findZtoc(z1.originalDigest, 1 << 20)?.digest, z1.digest);
  assert.equal(db.findZtoc(z1.originalDigest, 2 << 20), undefined);
  db.put({ ...old, size: 999 });
  assert.equal(db.list({ digest: old.digest })[0]!.size, 999, 'put replaces the same key');
  assert.equal(db.remove(z1.digest, 'soci_index'), 0, 'a type filter that does not match removes nothing');
  assert.equal(db.remove(z1.digest), 1);
  db.replaceAll([z4]);
  assert.deepEqual(db.list(), [z4]);
});
