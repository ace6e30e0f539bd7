/**
 * RegistryClient against a real docker-registry (no auth): ping, manifests, blobs, ranges,
 * pushes (monolithic, chunked, streamed, mount), manifest push read back with skopeo, referrers.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { needs, collect } from '../../harness/env.js';
import { startRegistry, pushTestImage, skopeoInspectRaw, type TestRegistry, type TestImage } from '../../harness/registry.js';
import { RegistryClient, RegistryHosts, MEDIA_TYPES, digestOf, referrersTag } from '../../src/registry/index.js';
import { parseReference } from '../../src/oci/reference.js';
import { isSociError } from '../../src/errors.js';
import { lineLogger } from '../../src/logger.js';

const skip = needs({ tools: ['docker-registry', 'skopeo'] });
let reg: TestRegistry;
let single: TestImage;
let multi: TestImage;
let client: RegistryClient;
const logs: string[] = [];
// Cleanups registered inside before() must run at the end of the file, not after the hook.
const cleanups: Array<() => unknown> = [];
const suite = { after: (fn: () => unknown) => cleanups.push(fn) };
after(async () => {
  for (const fn of cleanups.reverse()) await fn();
});

before(async () => {
  if (skip) return;
  reg = await startRegistry(suite);
  single = await pushTestImage(reg, 'test/single', { layers: 3, layerBytes: 256 * 1024 });
  multi = await pushTestImage(reg, 'test/multi', { layers: 2, platforms: ['linux/amd64', 'linux/arm64'], tag: 'v1' });
  client = new RegistryClient({ registry: reg.host, plainHttp: true, debug: lineLogger((l) => logs.push(l)), chunkSize: 100 * 1024 });
  suite.after(() => client.close());
});

test('ping and debug log lines', { skip }, async () => {
  await client.ping();
  assert.ok(
    logs.some((l) => new RegExp(`^GET http://${reg.host}/v2/ 200 \\d+ms$`).test(l)),
    logs.join('\n'),
  );
});

test('manifest and index by tag and by digest', { skip }, async () => {
  const m = await client.getManifest('test/single', 'latest');
  assert.equal(m.mediaType, MEDIA_TYPES.ociManifest);
  assert.equal(m.digest, single.digest);
  assert.ok(m.bytes.equals(single.bytes));
  const byDigest = await client.getManifest('test/single', single.digest);
  assert.ok(byDigest.bytes.equals(single.bytes));
  const idx = await client.getManifest('test/multi', 'v1');
  assert.equal(idx.mediaType, MEDIA_TYPES.ociIndex);
  assert.equal(idx.digest, multi.digest);
  const arm = multi.manifests[1]!;
  const armM = await client.getManifest('test/multi', arm.digest);
  assert.ok(armM.bytes.equals(arm.bytes));
  const head = await client.headManifest('test/multi', 'v1');
  assert.deepEqual(head, { mediaType: MEDIA_TYPES.ociIndex, digest: multi.digest, size: multi.bytes.length });
});

test('Docker v2 manifest and manifest list keep their media types', { skip }, async () => {
  const m0 = single.manifests[0]!;
  const docker = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA_TYPES.dockerManifest,
      config: { mediaType: 'application/vnd.docker.container.image.v1+json', digest: m0.config.digest, size: m0.config.size },
      layers: m0.layers.map((l) => ({ mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', digest: l.digest, size: l.size })),
    }),
  );
  const d = await client.putManifest('test/single', 'docker', docker, MEDIA_TYPES.dockerManifest);
  const list = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA_TYPES.dockerList,
      manifests: [{ mediaType: MEDIA_TYPES.dockerManifest, digest: d, size: docker.length, platform: { architecture: 'amd64', os: 'linux' } }],
    }),
  );
  await client.putManifest('test/single', 'dockerlist', list, MEDIA_TYPES.dockerList);
  const got = await client.getManifest('test/single', 'docker');
  assert.deepEqual([got.mediaType, got.digest], [MEDIA_TYPES.dockerManifest, d]);
  const gotList = await client.getManifest('test/single', 'dockerlist');
  assert.equal(gotList.mediaType, MEDIA_TYPES.dockerList);
  assert.ok(gotList.bytes.equals(list));
});

test('unknown tag, unknown repo, unknown blob → ERR_NOT_FOUND naming them', { skip }, async () => {
  await assert.rejects(
    client.getManifest('test/single', 'nope'),
    (e: unknown) => isSociError(e, 'ERR_NOT_FOUND') && e.message.includes(`${reg.host}/test/single:nope`),
  );
  await assert.rejects(client.getManifest('no/such', 'latest'), (e: unknown) => isSociError(e, 'ERR_NOT_FOUND'));
  const d = digestOf(Buffer.from('missing'));
  await assert.rejects(collect(client.fetchBlob('test/single', d)), (e: unknown) => isSociError(e, 'ERR_NOT_FOUND') && e.message.includes(d));
  assert.equal(await client.blobExists('test/single', d), false);
});

test('manifest larger than the limit → ERR_INVALID_MANIFEST', { skip }, async () => {
  const small = new RegistryClient({ registry: reg.host, plainHttp: true, maxManifestBytes: 100 });
  try {
    await assert.rejects(
      small.getManifest('test/single', 'latest'),
      (e: unknown) => isSociError(e, 'ERR_INVALID_MANIFEST') && /larger than 100 bytes/.test(e.message),
    );
  } finally {
    await small.close();
  }
});

test('blob stream and range reads are byte-exact', { skip }, async () => {
  const layer = single.manifests[0]!.layers[1]!;
  const whole = await collect(client.fetchBlob('test/single', layer.digest, { size: layer.size }));
  assert.ok(whole.equals(layer.bytes));
  for (const [s, e] of [
    [0, 1],
    [0, layer.size],
    [12345, 54321],
    [layer.size - 7, layer.size],
  ] as const) {
    const part = await client.fetchBlobRange('test/single', layer.digest, s, e);
    assert.ok(part.equals(layer.bytes.subarray(s, e)), `range ${s}-${e}`);
  }
  const src = client.blobSource('test/single', layer.digest, layer.size);
  assert.equal(src.size, layer.size);
  assert.ok((await src.read(100, 200)).equals(layer.bytes.subarray(100, 200)));
  await assert.rejects(src.read(0, layer.size + 1));
  // wrong expected size is caught at the end of the stream
  await assert.rejects(collect(client.fetchBlob('test/single', layer.digest, { size: layer.size + 1 })));
});

test('range past the end of the blob is an error, not a short read', { skip }, async () => {
  const layer = single.manifests[0]!.layers[0]!;
  await assert.rejects(client.fetchBlobRange('test/single', layer.digest, layer.size - 10, layer.size + 10), (e: unknown) => isSociError(e, 'ERR_REGISTRY'));
});

test('push blobs: monolithic, chunked Buffer, chunked stream, existing, mount', { skip }, async () => {
  const small = randomBytes(50 * 1024);
  const big = randomBytes(350 * 1024); // > chunkSize (100 KiB) → PATCH chunks
  const streamed = randomBytes(230 * 1024 + 17);
  const repo = 'push/blobs';
  assert.equal(await client.pushBlob(repo, digestOf(small), small.length, small), 'uploaded');
  assert.equal(await client.pushBlob(repo, digestOf(small), small.length, small), 'exists');
  assert.equal(await client.pushBlob(repo, digestOf(big), big.length, big), 'uploaded');
  const gen = async function* () {
    for (let i = 0; i < streamed.length; i += 7000) yield streamed.subarray(i, i + 7000);
  };
  assert.equal(await client.pushBlob(repo, digestOf(streamed), streamed.length, gen), 'uploaded');
  for (const b of [small, big, streamed]) {
    assert.ok((await collect(client.fetchBlob(repo, digestOf(b), { size: b.length }))).equals(b));
  }
  const patches = (await reg.accessLog()).filter((e) => e.method === 'PATCH' && e.path.startsWith(`/v2/${repo}/blobs/uploads/`));
  assert.equal(patches.length, 4 + 3, 'big: 4 chunks, streamed: 3 chunks');
  // mount into another repository
  assert.equal(await client.pushBlob('push/other', digestOf(big), big.length, big, { mountFrom: repo }), 'mounted');
  assert.ok((await client.fetchBlobRange('push/other', digestOf(big), 5, 10)).equals(big.subarray(5, 10)));
  // a stream whose bytes do not match the digest is refused
  const wrong = randomBytes(1000);
  await assert.rejects(
    client.pushBlob(repo, digestOf(Buffer.from('x')), wrong.length, async function* () {
      yield wrong;
    }),
    (e: unknown) => isSociError(e, 'ERR_DIGEST_MISMATCH'),
  );
  await assert.rejects(client.pushBlob(repo, digestOf(Buffer.from('x')), wrong.length, wrong), (e: unknown) => isSociError(e, 'ERR_DIGEST_MISMATCH'));
});

async function pushArtifact(repo: string, subject?: { mediaType: string; digest: string; size: number }) {
  const cfg = Buffer.from('{}');
  const layer = randomBytes(1000);
  await client.pushBlob(repo, digestOf(cfg), cfg.length, cfg);
  await client.pushBlob(repo, digestOf(layer), layer.length, layer);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA_TYPES.ociManifest,
      config: { mediaType: 'application/vnd.amazon.soci.index.v1+json', digest: digestOf(cfg), size: 2 },
      layers: [{ mediaType: 'application/octet-stream', digest: digestOf(layer), size: layer.length }],
      ...(subject ? { subject } : {}),
    }),
  );
  return manifest;
}

test('push manifests by tag and by digest, read back with skopeo', { skip }, async () => {
  const repo = 'push/manifests';
  const manifest = await pushArtifact(repo);
  const d = await client.putManifest(repo, 'tagged', manifest, MEDIA_TYPES.ociManifest);
  assert.equal(d, digestOf(manifest));
  assert.ok((await skopeoInspectRaw(reg, `${repo}:tagged`)).equals(manifest));
  const manifest2 = Buffer.concat([manifest.subarray(0, -1), Buffer.from(',"annotations":{"k":"v"}}')]);
  await client.putManifest(repo, digestOf(manifest2), manifest2, MEDIA_TYPES.ociManifest);
  assert.ok((await skopeoInspectRaw(reg, `${repo}@${digestOf(manifest2)}`)).equals(manifest2));
  await assert.rejects(client.putManifest(repo, digestOf(manifest), manifest2, MEDIA_TYPES.ociManifest), (e: unknown) => isSociError(e, 'ERR_DIGEST_MISMATCH'));
  // a manifest naming a blob the repository does not have
  const dangling = Buffer.from(
    manifest
      .toString()
      .replace(/"layers":\[\{[^}]*\}\]/, `"layers":[{"mediaType":"application/octet-stream","digest":"${digestOf(Buffer.from('nope'))}","size":4}]`),
  );
  await assert.rejects(
    client.putManifest(repo, 'dangling', dangling, MEDIA_TYPES.ociManifest),
    (e: unknown) => isSociError(e, 'ERR_REGISTRY') && /BLOB_UNKNOWN/.test(e.message),
  );
});

test('referrers: distribution has no API → sha256-<hex> tag fallback', { skip }, async () => {
  const repo = 'test/single';
  const subject = { mediaType: MEDIA_TYPES.ociManifest, digest: single.digest, size: single.bytes.length };
  assert.deepEqual(await client.referrers(repo, single.digest), []);
  const art = await pushArtifact(repo, subject);
  const artDigest = await client.putManifest(repo, digestOf(art), art, MEDIA_TYPES.ociManifest);
  const desc = { mediaType: MEDIA_TYPES.ociManifest, digest: artDigest, size: art.length, artifactType: 'application/vnd.amazon.soci.index.v1+json' };
  await client.addReferrerFallback(repo, single.digest, desc);
  await client.addReferrerFallback(repo, single.digest, desc); // idempotent
  const all = await client.referrers(repo, single.digest);
  assert.deepEqual(all, [desc]);
  assert.deepEqual(await client.referrers(repo, single.digest, 'application/vnd.amazon.soci.index.v1+json'), [desc]);
  assert.deepEqual(await client.referrers(repo, single.digest, 'application/other'), []);
  const raw = JSON.parse((await skopeoInspectRaw(reg, `${repo}:${referrersTag(single.digest)}`)).toString());
  assert.equal(raw.mediaType, MEDIA_TYPES.ociIndex);
  assert.equal(raw.manifests.length, 1);
});

test('digest helper agrees with node:crypto', () => {
  const b = Buffer.from('abc');
  assert.equal(digestOf(b), `sha256:${createHash('sha256').update(b).digest('hex')}`);
});

test('RegistryHosts: one cached client per host; plain HTTP for localhost when asked', { skip }, async () => {
  const hosts = new RegistryHosts({ plainHttp: 'localhost', retry: { maxAttempts: 1 } });
  try {
    const ref = parseReference(single.ref);
    const c = hosts.get(ref.registry);
    assert.equal(hosts.get(ref.registry), c);
    assert.equal((await c.getManifest(ref.repository, ref.reference())).digest, single.digest);
    const tlsOnly = new RegistryHosts({ retry: { maxAttempts: 1 } });
    await assert.rejects(tlsOnly.get(ref.registry).ping(), (e: unknown) => isSociError(e, 'ERR_NETWORK'));
    await tlsOnly.close();
  } finally {
    await hosts.close();
  }
});
