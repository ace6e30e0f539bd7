/**
 * SOCI index discovery against a real registry (explicit digest, v2 annotation, dangling annotation
 * without v1 fallback, v1 referrers when enabled, layer matching), and the local unpacker's safety
 * and overlay conversion (names never escape the root, symlinked parents refused, whiteouts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { lstat, mkdir, readFile, readlink, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { needs } from '../../harness/env.js';
import { rawTar } from '../../harness/fixtures.js';
import { pushTestImage, startRegistry } from '../../harness/registry.js';
import { RegistryClient } from '../../src/registry/index.js';
import { ANN, EMPTY_CONFIG, MT } from '../../src/oci/media-types.js';
import { encodeManifest, decodeManifest, type Manifest } from '../../src/oci/types.js';
import { findSociIndex, fetchSociArtifacts, layerZtocMap, layerPrefetchMap } from '../../src/image/discovery.js';
import { parsePrefetch } from '../../src/soci/prefetch.js';
import { unpackLayer } from '../../src/fs/index.js';
import { scratch } from './util.js';
import { digestOf } from '../../src/oci/digest.js';

const pexec = promisify(execFile);

test('discovery: explicit, v2 annotation, dangling (no v1 fallback), v1 referrers, layer matching', {
  skip: needs({ tools: ['docker-registry', 'skopeo'] }),
  timeout: 120_000,
}, async (t) => {
  const reg = await startRegistry(t);
  const img = await pushTestImage(reg, 'disc/app', { layers: 2 });
  const client = new RegistryClient({ registry: reg.host, plainHttp: true });
  t.after(() => client.close());
  const m = img.manifests[0]!;
  const layer = m.layers[0]!;

  // A SOCI index: one zTOC (bogus bytes are fine for discovery), a prefetch artifact, a decoy.
  const ztocBytes = Buffer.from('not really a ztoc');
  const prefetchBytes = Buffer.from('{"version":"1.0","prefetch_spans":[{"start_span":1,"end_span":3}]}');
  for (const b of [ztocBytes, prefetchBytes, EMPTY_CONFIG.bytes]) await client.pushBlob('disc/app', digestOf(b), b.length, b);
  const index = (artifact: string, subject?: boolean): Manifest => ({
    schemaVersion: 2,
    mediaType: MT.ociManifest,
    ...(artifact === MT.sociIndexV2 ? { artifactType: MT.sociIndexV2 } : {}),
    config: { mediaType: artifact, digest: EMPTY_CONFIG.digest, size: EMPTY_CONFIG.size },
    layers: [
      { mediaType: MT.ztoc, digest: digestOf(ztocBytes), size: ztocBytes.length, annotations: { [ANN.layerDigest]: layer.digest } },
      { mediaType: MT.sociPrefetch, digest: digestOf(prefetchBytes), size: prefetchBytes.length, annotations: { [ANN.layerDigest]: layer.digest } },
      { mediaType: 'application/vnd.example', digest: digestOf(ztocBytes), size: ztocBytes.length, annotations: { [ANN.layerDigest]: m.layers[1]!.digest } },
    ],
    ...(subject ? { subject: { mediaType: MT.ociManifest, digest: m.digest, size: m.bytes.length } } : {}),
  });
  const v2Bytes = encodeManifest(index(MT.sociIndexV2));
  const v2Digest = await client.putManifest('disc/app', digestOf(v2Bytes), v2Bytes, MT.ociManifest);

  // No annotation, v1 off → ERR_NO_INDEX; explicit digest works regardless.
  await assert.rejects(findSociIndex(client, 'disc/app', m.digest), (e: Error & { code?: string }) => e.code === 'ERR_NO_INDEX');
  const ex = await findSociIndex(client, 'disc/app', m.digest, { explicitDigest: v2Digest });
  assert.equal(ex.version, 'explicit');
  assert.equal(ex.desc.digest, v2Digest);
  const zm = layerZtocMap(ex.manifest);
  assert.deepEqual([...zm.keys()], [layer.digest], 'only application/octet-stream entries are zTOCs');
  assert.deepEqual([...layerPrefetchMap(ex.manifest).keys()], [layer.digest]);

  // v2: an image manifest carrying the annotation.
  const annotated = decodeManifest(m.bytes);
  annotated.annotations = { ...annotated.annotations, [ANN.indexDigest]: v2Digest };
  const aBytes = encodeManifest(annotated);
  const aDigest = await client.putManifest('disc/app', 'annotated', aBytes, MT.ociManifest);
  const f2 = await findSociIndex(client, 'disc/app', aDigest);
  assert.equal(f2.version, 'v2');
  assert.equal(f2.desc.digest, v2Digest);
  // fetchSociArtifacts: the bogus zTOC fails to parse → the whole image has no index.
  await assert.rejects(fetchSociArtifacts(client, 'disc/app', aDigest), (e: Error & { code?: string }) => e.code === 'ERR_NO_INDEX');

  // v1 index as a referrer of the plain manifest: found only with v1 on.
  const v1Bytes = encodeManifest(index(MT.sociIndexV1, true));
  const v1Digest = await client.putManifest('disc/app', digestOf(v1Bytes), v1Bytes, MT.ociManifest);
  await client.addReferrerFallback('disc/app', m.digest, { mediaType: MT.ociManifest, digest: v1Digest, size: v1Bytes.length, artifactType: MT.sociIndexV1 });
  await assert.rejects(findSociIndex(client, 'disc/app', m.digest), (e: Error & { code?: string }) => e.code === 'ERR_NO_INDEX');
  const f1 = await findSociIndex(client, 'disc/app', m.digest, { v1: true });
  assert.equal(f1.version, 'v1');
  assert.equal(f1.desc.digest, v1Digest);

  // Dangling v2 annotation: an error even though a v1 index exists (no fallback).
  const dangling = decodeManifest(m.bytes);
  dangling.annotations = { [ANN.indexDigest]: `sha256:${'0'.repeat(64)}` };
  const dBytes = encodeManifest(dangling);
  const dDigest = await client.putManifest('disc/app', 'dangling', dBytes, MT.ociManifest);
  await client.addReferrerFallback('disc/app', dDigest, { mediaType: MT.ociManifest, digest: v1Digest, size: v1Bytes.length, artifactType: MT.sociIndexV1 });
  await assert.rejects(
    findSociIndex(client, 'disc/app', dDigest, { v1: true }),
    (e: Error & { code?: string; message: string }) => e.code === 'ERR_NO_INDEX' && /cannot be fetched/.test(e.message),
  );

  assert.deepEqual(parsePrefetch(prefetchBytes), [{ start_span: 1, end_span: 3 }]);
  assert.equal(parsePrefetch(Buffer.from('{"version":"2.0","prefetch_spans":[]}')), null);
});

async function* once(b: Buffer): AsyncIterable<Buffer> {
  // Odd chunking: headers and data split across chunks.
  for (let o = 0; o < b.length; o += 777) yield b.subarray(o, o + 777);
}

test('unpack: overlay whiteouts, hardlinks, names cleaned, symlinked parents refused', {
  skip: needs({ root: true, tools: ['setfattr', 'getfattr', 'mknod'] }),
}, async (t) => {
  const { dir } = await scratch(t);
  const root = join(dir, 'root');
  await mkdir(root);
  const layer = rawTar([
    { header: { name: 'a/', typeflag: '5', mode: '0000755\0' } },
    { header: { name: 'a/file.txt' }, data: 'hello' },
    { header: { name: '../../escape.txt' }, data: 'cleaned into the root' },
    { header: { name: 'a/link', typeflag: '1', linkname: 'a/file.txt' } },
    { header: { name: 'a/sym', typeflag: '2', linkname: '../../../etc' } },
    { header: { name: 'a/.wh.gone' } },
    { header: { name: 'b/.wh..wh..opq' } },
    { header: { name: 'b/new', mode: '0004755\0' }, data: 'x'.repeat(5000) },
  ]);
  const st = await unpackLayer(once(layer), 'uncompressed', root);
  assert.equal(st.whiteouts, 1);
  assert.equal(st.opaqueDirs, 1);
  assert.equal(await readFile(join(root, 'a/file.txt'), 'utf8'), 'hello');
  assert.equal(await readFile(join(root, 'escape.txt'), 'utf8'), 'cleaned into the root');
  assert.equal((await stat(join(root, 'a/link'))).ino, (await stat(join(root, 'a/file.txt'))).ino);
  assert.equal(await readlink(join(root, 'a/sym')), '../../../etc');
  const wh = await lstat(join(root, 'a/gone'));
  assert.ok(wh.isCharacterDevice() && wh.rdev === 0, 'whiteout is char 0:0');
  const opq = (await pexec('getfattr', ['--absolute-names', '-n', 'trusted.overlay.opaque', '--only-values', join(root, 'b')])).stdout;
  assert.equal(opq, 'y');
  assert.equal((await stat(join(root, 'b/new'))).mode & 0o7777, 0o4755);

  // A name through a symlinked parent must never write outside the root.
  const root2 = join(dir, 'root2');
  await mkdir(root2);
  const outside = join(dir, 'outside');
  await mkdir(outside);
  const evil = rawTar([{ header: { name: 'evil', typeflag: '2', linkname: outside } }, { header: { name: 'evil/pwned.txt' }, data: 'oops' }]);
  await assert.rejects(unpackLayer(once(evil), 'uncompressed', root2), (e: Error & { code?: string }) => e.code === 'ERR_BAD_TAR');
  await assert.rejects(stat(join(outside, 'pwned.txt')), /ENOENT/);
  // A known-safe dir later replaced by a symlink: its old subdirs are no longer trusted.
  const root3 = join(dir, 'root3');
  await mkdir(root3);
  const swap = rawTar([
    { header: { name: 'd/sub/', typeflag: '5', mode: '0000755\0' } },
    { header: { name: 'd/sub/ok.txt' }, data: 'ok' },
    { header: { name: 'd', typeflag: '2', linkname: outside } },
    { header: { name: 'd/sub/pwned.txt' }, data: 'oops' },
  ]);
  await assert.rejects(unpackLayer(once(swap), 'uncompressed', root3), (e: Error & { code?: string }) => e.code === 'ERR_BAD_TAR');
  await assert.rejects(stat(join(outside, 'sub')), /ENOENT/);
});
