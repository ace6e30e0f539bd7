/**
 * bench/lib/shape-proxy.ts: timing against the model (generous tolerances: 2-core noisy CI), counters,
 * transparency of p0, clean teardown. Profile under test: 80 Mbit/s (10 kB/ms), 40 ms RTT.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer, request, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { PROFILES, startShapeProxy, type ShapeProfile } from '../../bench/lib/shape-proxy.js';
import { sha256Hex } from '../../src/oci/digest.js';

const BLOB = randomBytes(4_000_000);
const DIGEST = sha256Hex(BLOB);
const SHAPED: ShapeProfile = { id: 'p2', label: 'test', rateBitsPerSec: 80e6, rttMs: 40 };

// Upstream: GET/HEAD /v2/x/blobs/sha256:… with Range, /small, and PUT/POST that read their body.
const upSockets = new Set<Socket>();
let upWritten = 0;
const upstream = createServer((req, res) => {
  if (req.method === 'PUT' || req.method === 'POST') {
    let n = 0;
    req.on('data', (b: Buffer) => (n += b.length));
    req.on('end', () => res.end(String(n)));
    return;
  }
  if (req.url === '/small') return void res.end('ok');
  let body = BLOB;
  const m = /bytes=(\d+)-(\d+)/.exec(req.headers.range ?? '');
  if (m) body = BLOB.subarray(Number(m[1]), Number(m[2]) + 1);
  res.writeHead(m ? 206 : 200, { 'content-length': body.length });
  res.end(req.method === 'HEAD' ? undefined : body);
});
upstream.on('connection', (s: Socket) => {
  upSockets.add(s);
  s.on('close', () => {
    upWritten += s.bytesWritten;
    upSockets.delete(s);
  });
});
await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
const UP = `127.0.0.1:${(upstream.address() as AddressInfo).port}`;
after(
  () =>
    new Promise<void>((r) => {
      for (const s of upSockets) s.destroy();
      upstream.close(() => r());
    }),
);

const BLOB_PATH = `/v2/x/blobs/sha256:${DIGEST}`;

interface Got {
  status: number;
  body: Buffer;
  ms: number;
  headers: IncomingHttpHeaders;
}
function fetchVia(
  host: string,
  path: string,
  o: { method?: string; headers?: Record<string, string>; body?: Buffer | Buffer[]; agent?: import('node:http').Agent } = {},
): Promise<Got> {
  const [h, p] = host.split(':');
  const t0 = performance.now();
  return new Promise((res, rej) => {
    const req = request({ host: h, port: Number(p), path, method: o.method ?? 'GET', headers: o.headers, agent: o.agent ?? false }, (r) => {
      const parts: Buffer[] = [];
      r.on('data', (b: Buffer) => parts.push(b));
      r.on('end', () => res({ status: r.statusCode!, body: Buffer.concat(parts), ms: performance.now() - t0, headers: r.headers }));
      r.on('error', rej);
    });
    req.on('error', rej);
    if (Array.isArray(o.body)) {
      for (const b of o.body) req.write(b);
      req.end();
    } // chunked upload
    else req.end(o.body);
  });
}

test('a 4 MB download takes ≈ RTT + size/rate, a tiny request ≈ 2 RTT', async () => {
  const proxy = await startShapeProxy({ upstream: UP, profile: SHAPED });
  try {
    const tiny = await fetchVia(proxy.host, '/small'); // handshake RTT + request/response RTT
    assert.equal(tiny.body.toString(), 'ok');
    assert.ok(tiny.ms >= 75 && tiny.ms < 250, `tiny request ${tiny.ms.toFixed(1)} ms`);
    const big = await fetchVia(proxy.host, BLOB_PATH);
    assert.ok(big.body.equals(BLOB));
    const model = 40 + ((4e6 * 8) / 80e6) * 1000; // 440 ms (the handshake adds 40 more: inside the tolerance)
    assert.ok(big.ms >= 0.85 * model && big.ms <= 1.6 * model, `4 MB in ${big.ms.toFixed(0)} ms, model ${model} ms`);
  } finally {
    await proxy.close();
  }
});

test('two concurrent 2 MB downloads share the bandwidth', async () => {
  const proxy = await startShapeProxy({ upstream: UP, profile: SHAPED });
  try {
    const t0 = performance.now();
    const [a, b] = await Promise.all([0, 1].map((i) => fetchVia(proxy.host, BLOB_PATH, { headers: { range: `bytes=${i * 2e6}-${i * 2e6 + 2e6 - 1}` } })));
    const total = performance.now() - t0;
    assert.ok(a!.body.equals(BLOB.subarray(0, 2e6)) && b!.body.equals(BLOB.subarray(2e6)));
    const model = 440; // like one 4 MB download, not like one 2 MB (≈ 240 ms)
    assert.ok(total >= 0.85 * model && total <= 1.6 * model, `2 × 2 MB in ${total.toFixed(0)} ms`);
    // interleaved fairly: neither finishes long before the other
    assert.ok(Math.min(a!.ms, b!.ms) >= 0.7 * Math.max(a!.ms, b!.ms), `finished at ${a!.ms.toFixed(0)} / ${b!.ms.toFixed(0)} ms`);
  } finally {
    await proxy.close();
  }
});

/** The same request mix through a profile; returns the proxy's counters and what the client got. */
async function mix(profile: ShapeProfile) {
  const proxy = await startShapeProxy({ upstream: UP, profile });
  const { Agent } = await import('node:http');
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  upWritten = 0;
  try {
    const got: Buffer[] = [];
    got.push((await fetchVia(proxy.host, BLOB_PATH, { agent })).body);
    got.push((await fetchVia(proxy.host, BLOB_PATH, { agent, headers: { range: 'bytes=100-65635' } })).body);
    got.push((await fetchVia(proxy.host, BLOB_PATH, { agent, method: 'HEAD' })).body);
    got.push((await fetchVia(proxy.host, '/v2/x/blobs/uploads/1', { agent, method: 'PUT', body: randomBytes(200_000) })).body);
    got.push(
      (await fetchVia(proxy.host, '/v2/x/blobs/uploads/2', { agent, method: 'POST', body: [randomBytes(70_000), Buffer.from('GET / HTTP/1.1\r\n\r\n')] })).body,
    );
    got.push((await fetchVia(proxy.host, '/small')).body); // a second connection (agent: false)
    agent.destroy();
    await new Promise((r) => setTimeout(r, 50 + profile.rttMs * 2)); // let the upstream sockets close
    return { stats: proxy.stats(), got, upWritten };
  } finally {
    agent.destroy();
    await proxy.close();
  }
}

test('counters: connections, requests, range requests, blob GETs, bytes down; p0 is transparent', async () => {
  const fast: ShapeProfile = { id: 'p1', label: 'fast', rateBitsPerSec: 2e9, rttMs: 4 };
  const shaped = await mix(fast);
  const plain = await mix(PROFILES.p0);
  for (const r of [shaped, plain]) {
    assert.deepEqual({ ...r.stats, bytesDown: 0, bytesUp: 0 }, { connections: 2, requests: 6, rangeRequests: 1, getBlobRequests: 2, bytesDown: 0, bytesUp: 0 });
    assert.equal(r.stats.bytesDown, r.upWritten, 'bytesDown = what the upstream sent');
    assert.ok(r.stats.bytesUp > 270_000);
    assert.ok(r.got[0]!.equals(BLOB) && r.got[1]!.equals(BLOB.subarray(100, 65636)));
    assert.deepEqual(r.got.slice(2).map(String), ['', '200000', '70018', 'ok']);
  }
  assert.equal(plain.stats.bytesDown, shaped.stats.bytesDown);
  assert.equal(plain.stats.bytesUp, shaped.stats.bytesUp);
});

test('resetStats zeroes the counters', async () => {
  const proxy = await startShapeProxy({ upstream: UP, profile: PROFILES.p0 });
  await fetchVia(proxy.host, '/small');
  assert.equal(proxy.stats().requests, 1);
  proxy.resetStats();
  assert.deepEqual(proxy.stats(), { connections: 0, bytesDown: 0, bytesUp: 0, requests: 0, rangeRequests: 0, getBlobRequests: 0 });
  await proxy.close();
});

test('closing the proxy mid-transfer errors the client and leaves no handles', async () => {
  const slow: ShapeProfile = { id: 'p4', label: 'slow', rateBitsPerSec: 8e6, rttMs: 20 };
  const proxy = await startShapeProxy({ upstream: UP, profile: slow });
  const download = fetchVia(proxy.host, BLOB_PATH);
  await new Promise((r) => setTimeout(r, 150));
  await proxy.close();
  await assert.rejects(download, (e: Error & { code?: string }) => /ECONNRESET|aborted|socket hang up/i.test(`${e.code} ${e.message}`));
  const unrefd = process.getActiveResourcesInfo().filter((r) => r === 'Timeout');
  // nothing of the proxy's is left: no timers, and its server no longer accepts
  assert.equal(unrefd.length, 0, `active: ${process.getActiveResourcesInfo().join(', ')}`);
  await assert.rejects(fetchVia(proxy.host, '/small'), /ECONNREFUSED/);
});

test('upstream down: the client connection is closed, no crash', async () => {
  const proxy = await startShapeProxy({ upstream: '127.0.0.1:1', profile: SHAPED });
  await assert.rejects(fetchVia(proxy.host, '/small'), /ECONNRESET|socket hang up/);
  await proxy.close();
});
