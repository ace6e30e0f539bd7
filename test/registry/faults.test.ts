/**
 * Fault handling through harness/fault-proxy.ts in front of a real registry: retried faults
 * succeed (and are counted), permanent ones give a clear error naming the object, corrupted bytes
 * are never accepted. Also redirects to "storage" (Range kept, Authorization dropped).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { needs, collect } from '../../harness/env.js';
import { startRegistry, pushTestImage, type TestRegistry, type TestImage } from '../../harness/registry.js';
import { startFaultProxy, type FaultProxy } from '../../harness/fault-proxy.js';
import { RegistryClient, staticCredentials, digestOf, type RegistryClientOptions } from '../../src/registry/index.js';
import { isSociError } from '../../src/errors.js';
import { lineLogger } from '../../src/logger.js';

const skip = needs({ tools: ['docker-registry', 'skopeo', 'htpasswd'] });
const cleanups: Array<() => unknown> = [];
const suite = { after: (fn: () => unknown) => cleanups.push(fn) };
after(async () => {
  for (const fn of cleanups.reverse()) await fn();
});

let reg: TestRegistry;
let img: TestImage;
let proxy: FaultProxy;
const REPO = 'faults/app';

before(async () => {
  if (skip) return;
  reg = await startRegistry(suite);
  img = await pushTestImage(reg, REPO, { layers: 1, layerBytes: 512 * 1024 });
  proxy = await startFaultProxy(suite, reg.host);
});

function client(extra: Partial<RegistryClientOptions> = {}, host = proxy.host) {
  const c = new RegistryClient({
    registry: host,
    plainHttp: true,
    retry: { maxAttempts: 4, baseDelayMs: 20, maxDelayMs: 2000, maxTotalMs: 20_000 },
    headersTimeoutMs: 2000,
    bodyTimeoutMs: 500,
    ...extra,
  });
  suite.after(() => c.close());
  return c;
}

const layer = () => img.manifests[0]!.layers[0]!;
const manifestPath = `/v2/${REPO}/manifests/`;
const blobPath = () => `/v2/${REPO}/blobs/${layer().digest}`;

test('500/503 bursts are retried', { skip }, async () => {
  proxy.clear();
  proxy.add({ method: 'GET', path: manifestPath, times: 2, fault: { kind: 'status', status: 503 } });
  proxy.add({ method: 'GET', path: manifestPath, times: 1, fault: { kind: 'status', status: 500 } });
  const m = await client().getManifest(REPO, 'latest');
  assert.equal(m.digest, img.digest);
  assert.equal(proxy.count('GET', manifestPath), 4);
});

test('429 honours Retry-After', { skip }, async () => {
  proxy.clear();
  proxy.add({ method: 'GET', path: blobPath(), fault: { kind: 'status', status: 429, retryAfter: '1' } });
  const t0 = Date.now();
  const b = await client().fetchBlobRange(REPO, layer().digest, 0, 100);
  assert.ok(b.equals(layer().bytes.subarray(0, 100)));
  assert.ok(Date.now() - t0 >= 950, `waited ${Date.now() - t0} ms`);
  assert.equal(proxy.count('GET', blobPath()), 2);
});

test('501 is not retried; a persistent 503 gives up after maxAttempts naming the blob', { skip }, async () => {
  proxy.clear();
  proxy.add({ method: 'GET', path: blobPath(), fault: { kind: 'status', status: 501 } });
  await assert.rejects(
    client().fetchBlobRange(REPO, layer().digest, 0, 10),
    (e: unknown) => isSociError(e, 'ERR_REGISTRY') && e.message.includes(layer().digest),
  );
  assert.equal(proxy.count('GET', blobPath()), 1);
  proxy.clear();
  proxy.add({ method: 'GET', path: blobPath(), times: 100, fault: { kind: 'status', status: 503 } });
  await assert.rejects(
    collect(client().fetchBlob(REPO, layer().digest)),
    (e: unknown) => isSociError(e, 'ERR_REGISTRY') && e.message.includes(layer().digest) && /503.*4 attempts/.test(e.message),
  );
  assert.equal(proxy.count('GET', blobPath()), 4);
});

test('connection reset mid-body: the blob stream resumes with Range and is byte-exact', { skip }, async () => {
  proxy.clear();
  proxy.add({ method: 'GET', path: blobPath(), fault: { kind: 'reset', afterBytes: 200_000 } });
  const b = await collect(client().fetchBlob(REPO, layer().digest, { size: layer().size }));
  assert.ok(b.equals(layer().bytes));
  const reqs = proxy.requests.filter((r) => r.path === blobPath());
  assert.equal(reqs.length, 2);
  // The size is known: the resume asks for the rest of the blob, no more.
  const m = /^bytes=(\d+)-(\d+)$/.exec(String(reqs[1]!.headers.range));
  assert.ok(m, `resume range ${String(reqs[1]!.headers.range)}`);
  assert.ok(Number(m[1]) > 0, 'resumed after the bytes already received');
  assert.equal(Number(m[2]), layer().size - 1);
});

test('truncated bodies are retried for ranges and manifests', { skip }, async () => {
  proxy.clear();
  proxy.add({ method: 'GET', path: blobPath(), fault: { kind: 'truncate', afterBytes: 1000 } });
  proxy.add({ method: 'GET', path: manifestPath, fault: { kind: 'truncate', afterBytes: 20 } });
  const c = client();
  const end = layer().size - 5;
  const b = await c.fetchBlobRange(REPO, layer().digest, 10, end);
  assert.ok(b.equals(layer().bytes.subarray(10, end)));
  assert.equal((await c.getManifest(REPO, 'latest')).digest, img.digest);
  assert.equal(proxy.count('GET', blobPath()), 2);
  assert.equal(proxy.count('GET', manifestPath), 2);
});

test('flipped bytes → ERR_DIGEST_MISMATCH naming the blob / manifest, never accepted', { skip }, async () => {
  proxy.clear();
  proxy.add({ method: 'GET', path: blobPath(), fault: { kind: 'flip', offset: 4096 } });
  const got: Buffer[] = [];
  await assert.rejects(
    (async () => {
      for await (const c of client().fetchBlob(REPO, layer().digest, { size: layer().size })) got.push(c);
    })(),
    (e: unknown) => isSociError(e, 'ERR_DIGEST_MISMATCH') && e.message.includes(layer().digest),
  );
  proxy.add({ method: 'GET', path: manifestPath, fault: { kind: 'flip', offset: 30 } });
  await assert.rejects(client().getManifest(REPO, img.digest), (e: unknown) => isSociError(e, 'ERR_DIGEST_MISMATCH') && e.message.includes(img.digest));
  proxy.add({ method: 'GET', path: manifestPath, fault: { kind: 'flip', offset: 30 } });
  // by tag the registry's Docker-Content-Digest header still catches it
  await assert.rejects(client().getManifest(REPO, 'latest'), (e: unknown) => isSociError(e, 'ERR_DIGEST_MISMATCH'));
});

test('media type from Content-Type; generic types fall back to the document; unknown → ERR_UNSUPPORTED', { skip }, async () => {
  proxy.clear();
  proxy.add({ method: 'GET', path: manifestPath, fault: { kind: 'headers', set: { 'content-type': 'application/json' } } });
  proxy.add({
    method: 'GET',
    path: manifestPath,
    fault: { kind: 'headers', set: { 'content-type': 'application/vnd.docker.distribution.manifest.v1+prettyjws' } },
  });
  const c = client();
  assert.equal((await c.getManifest(REPO, 'latest')).mediaType, 'application/vnd.oci.image.manifest.v1+json');
  await assert.rejects(c.getManifest(REPO, 'latest'), (e: unknown) => isSociError(e, 'ERR_UNSUPPORTED') && /manifest\.v1\+prettyjws/.test(e.message));
});

test('stalled body and stalled headers time out and are retried', { skip }, async () => {
  proxy.clear();
  proxy.add({ method: 'GET', path: blobPath(), fault: { kind: 'stall', afterBytes: 100_000 } });
  proxy.add({ method: 'GET', path: manifestPath, fault: { kind: 'stall', afterBytes: -1 } });
  const c = client({ headersTimeoutMs: 500 });
  const b = await collect(c.fetchBlob(REPO, layer().digest, { size: layer().size }));
  assert.ok(b.equals(layer().bytes));
  assert.equal((await c.getManifest(REPO, 'latest')).digest, img.digest);
  assert.equal(proxy.count('GET', blobPath()), 2);
  assert.equal(proxy.count('GET', manifestPath), 2);
});

test('a registry that always stalls → ERR_TIMEOUT; AbortSignal stops at once', { skip }, async () => {
  proxy.clear();
  proxy.add({ method: 'GET', path: manifestPath, times: 100, fault: { kind: 'stall', afterBytes: -1 } });
  const c = client({ headersTimeoutMs: 300, retry: { maxAttempts: 2, baseDelayMs: 10 } });
  await assert.rejects(c.getManifest(REPO, 'latest'), (e: unknown) => isSociError(e, 'ERR_TIMEOUT') && e.message.includes(`${proxy.host}/${REPO}:latest`));
  const ac = new AbortController();
  const slow = client({ headersTimeoutMs: 10_000 });
  const t0 = Date.now();
  setTimeout(() => ac.abort(), 200);
  await assert.rejects(slow.getManifest(REPO, 'latest', { signal: ac.signal }), (e: unknown) => (e as Error).name === 'AbortError');
  assert.ok(Date.now() - t0 < 3000);
});

test('nothing listening → ERR_NETWORK after bounded retries', { skip }, async () => {
  const c = client({ retry: { maxAttempts: 3, baseDelayMs: 10 } }, '127.0.0.1:1');
  await assert.rejects(c.ping(), (e: unknown) => isSociError(e, 'ERR_NETWORK') && /ECONNREFUSED after 3 attempts/.test(e.message));
});

test('uploads survive a 503 on POST and PUT', { skip }, async () => {
  proxy.clear();
  proxy.add({ method: 'POST', path: '/blobs/uploads/', fault: { kind: 'status', status: 503 } });
  proxy.add({ method: 'PUT', path: '/blobs/uploads/', fault: { kind: 'status', status: 502 } });
  const blob = Buffer.from('x'.repeat(5000));
  assert.equal(await client().pushBlob('faults/push', digestOf(blob), blob.length, blob), 'uploaded');
  assert.ok((await client().fetchBlobRange('faults/push', digestOf(blob), 0, 5000)).equals(blob));
  assert.equal(proxy.count('POST'), 2);
});

test('redirect to storage: Range kept, Authorization dropped for the other host, query redacted in logs', { skip }, async (t) => {
  const basic = await startRegistry(suite, { auth: 'htpasswd' });
  const bimg = await pushTestImage(basic, REPO, { layers: 1, layerBytes: 64 * 1024 });
  const bl = bimg.manifests[0]!.layers[0]!;
  const seen: IncomingHttpHeaders[] = [];
  let denyNext = 0;
  const storage = createServer((req, res) => {
    seen.push(req.headers);
    if (denyNext > 0) {
      denyNext--;
      res.writeHead(403, { 'content-length': 0 });
      return res.end();
    }
    const m = /bytes=(\d+)-(\d+)/.exec(req.headers.range ?? '');
    if (!m) {
      res.writeHead(200, { 'content-length': bl.size });
      return res.end(bl.bytes);
    }
    const [s, e] = [Number(m[1]), Number(m[2])];
    res.writeHead(206, { 'content-range': `bytes ${s}-${e}/${bl.size}`, 'content-length': e - s + 1 });
    res.end(bl.bytes.subarray(s, e + 1));
  });
  await new Promise<void>((r) => storage.listen(0, '127.0.0.1', r));
  t.after(() => new Promise((r) => storage.close(r)));
  const sport = (storage.address() as AddressInfo).port;
  const bproxy = await startFaultProxy(suite, basic.host);
  bproxy.add({
    method: 'GET',
    path: `/blobs/${bl.digest}`,
    times: 10,
    fault: { kind: 'redirect', location: () => `http://localhost:${sport}/data?X-Amz-Signature=topsecret` },
  });
  const logs: string[] = [];
  const c = client({ credentials: staticCredentials(`${basic.user}:${basic.password}`), debug: lineLogger((l) => logs.push(l)) }, bproxy.host);
  await c.ping(); // learns that the registry wants Basic auth, so blob GETs carry it
  const part = await c.fetchBlobRange(REPO, bl.digest, 1000, 2000);
  assert.ok(part.equals(bl.bytes.subarray(1000, 2000)));
  const whole = await collect(c.fetchBlob(REPO, bl.digest, { size: bl.size }));
  assert.ok(whole.equals(bl.bytes));
  assert.equal(seen.length, 2);
  assert.equal(seen[0]!.range, 'bytes=1000-1999');
  // later range reads go straight to the remembered storage URL …
  assert.ok((await c.fetchBlobRange(REPO, bl.digest, 5, 10)).equals(bl.bytes.subarray(5, 10)));
  assert.equal(seen.length, 3);
  assert.equal(bproxy.count('GET', '/blobs/'), 2, 'registry not asked again');
  // … until storage refuses (expired signature): then the registry is asked again
  denyNext = 1;
  assert.ok((await c.fetchBlobRange(REPO, bl.digest, 7, 9)).equals(bl.bytes.subarray(7, 9)));
  assert.equal(seen.length, 5);
  assert.ok(
    seen.every((h) => h.authorization === undefined),
    'no Authorization to storage',
  );
  const blobReqs = bproxy.requests.filter((r) => r.path.includes('/blobs/'));
  assert.equal(blobReqs.length, 3);
  assert.ok(
    blobReqs.every((r) => String(r.headers.authorization).startsWith('Basic ')),
    'Authorization to the registry',
  );
  assert.ok(!logs.join('\n').includes('topsecret'));
  assert.ok(logs.some((l) => l.includes(`localhost:${sport}/data?X-Amz-Signature=…`)));
});

test('referrers API (OCI 1.1) answer is used and filtered client-side when the registry did not filter', { skip }, async () => {
  proxy.clear();
  const a = {
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    digest: digestOf(Buffer.from('a')),
    size: 1,
    artifactType: 'application/vnd.amazon.soci.index.v1+json',
  };
  const b = { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: digestOf(Buffer.from('b')), size: 1, artifactType: 'application/other' };
  const body = JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [a, b] });
  const canned = { kind: 'status', status: 200, headers: { 'content-type': 'application/vnd.oci.image.index.v1+json' }, body } as const;
  proxy.add({ method: 'GET', path: `/v2/${REPO}/referrers/${img.digest}`, times: 2, fault: canned });
  const c = client();
  assert.deepEqual(await c.referrers(REPO, img.digest), [a, b]);
  assert.deepEqual(await c.referrers(REPO, img.digest, 'application/vnd.amazon.soci.index.v1+json'), [a]);
  assert.equal(proxy.count('GET', '/manifests/sha256-'), 0, 'no tag-schema fallback when the API answers');
  assert.ok(proxy.requests.some((r) => r.path.endsWith('?artifactType=application%2Fvnd.amazon.soci.index.v1%2Bjson')));
});
