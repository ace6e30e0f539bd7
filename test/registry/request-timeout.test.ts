/**
 * The whole-request timeout (AWS's [http] RequestTimeoutMsec) and the two retry budgets ([http] for
 * every request, [blob] for Range reads), against a plain HTTP server that answers at once and then
 * sends its body a byte at a time: the header and between-bytes timeouts never fire, the request
 * timeout does.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { RegistryClient, RegistryHosts, type RegistryClientOptions } from '../../src/registry/index.js';
import { isSociError } from '../../src/errors.js';
import { parseConfig } from '../../src/snapshotter/config.js';
import { daemonRegistryOptions } from '../../src/snapshotter/registry-config.js';

const DIGEST = `sha256:${'ab'.repeat(32)}`;

interface Seen {
  method: string;
  url: string;
  range?: string;
}

/** /slow/… dribbles a byte every 50 ms; /fail/… answers 500; /fast/… answers 8 bytes at once. */
async function server(t: { after: (fn: () => unknown) => void }): Promise<{ host: string; seen: Seen[] }> {
  const seen: Seen[] = [];
  const timers = new Set<NodeJS.Timeout>();
  const srv: Server = createServer((req, res) => {
    seen.push({ method: req.method!, url: req.url!, ...(req.headers.range ? { range: req.headers.range } : {}) });
    if (req.url!.includes('/fail/')) {
      res.writeHead(500).end();
      return;
    }
    const body = Buffer.from('01234567');
    if (req.url!.includes('/fast/')) {
      res.writeHead(206, { 'content-range': 'bytes 0-7/8', 'content-length': '8' }).end(body);
      return;
    }
    res.writeHead(206, { 'content-range': 'bytes 0-7/8', 'content-length': '8' });
    let i = 0;
    const timer = setInterval(() => {
      if (i < body.length) res.write(body.subarray(i, ++i));
      else res.end();
    }, 50);
    timers.add(timer);
    res.on('close', () => clearInterval(timer));
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.after(() => {
    for (const x of timers) clearInterval(x);
    srv.closeAllConnections();
    return new Promise((r) => srv.close(() => r(undefined)));
  });
  return { host: `127.0.0.1:${(srv.address() as AddressInfo).port}`, seen };
}

function client(host: string, extra: Partial<RegistryClientOptions>): RegistryClient {
  return new RegistryClient({ registry: host, plainHttp: true, retry: { maxAttempts: 1 }, headersTimeoutMs: 5000, bodyTimeoutMs: 5000, ...extra });
}

test('a request that outlives RequestTimeoutMsec fails as a timeout, after every attempt', async (t) => {
  const s = await server(t);
  const c = client(s.host, { requestTimeoutMs: 150, retry: { maxAttempts: 2, baseDelayMs: 1 } });
  t.after(() => c.close());
  const t0 = Date.now();
  await assert.rejects(c.fetchBlobRange('slow/r', DIGEST, 0, 8), (e: unknown) => {
    assert.ok(isSociError(e, 'ERR_TIMEOUT'), String(e));
    assert.match((e as Error).message, /timed out .*after 2 attempts/);
    return true;
  });
  assert.equal(s.seen.length, 2, 'retried once, on a new request');
  assert.ok(Date.now() - t0 < 2000, 'the 400 ms body never finished');
  // the same body within the limit is read whole, and a fast one too
  const roomy = client(s.host, { requestTimeoutMs: 3000 });
  t.after(() => roomy.close());
  assert.equal((await roomy.fetchBlobRange('slow/r', DIGEST, 0, 8)).toString(), '01234567');
  assert.equal((await c.fetchBlobRange('fast/r', DIGEST, 0, 8)).toString(), '01234567');
});

test('[http] retries every request; [blob] retries replace them for Range reads', async (t) => {
  const s = await server(t);
  const c = client(s.host, { retry: { maxAttempts: 4, baseDelayMs: 1 }, blobRetry: { maxAttempts: 2, baseDelayMs: 1 } });
  t.after(() => c.close());
  await assert.rejects(c.getManifest('fail/r', 'latest'), /HTTP 500 after 4 attempts/);
  assert.equal(s.seen.filter((x) => x.url.includes('/manifests/')).length, 4);
  await assert.rejects(c.fetchBlobRange('fail/r', DIGEST, 0, 8), /HTTP 500 after 2 attempts/);
  assert.equal(s.seen.filter((x) => x.range).length, 2);
});

test('the daemon takes [http], [blob] and mirror timeouts from its config, with AWS meanings', async (t) => {
  const cfg = parseConfig(`
[http]
MaxRetries = 2
MinWaitMsec = 10
MaxWaitMsec = 100
RequestTimeoutMsec = 1500
DialTimeoutMsec = 700
ResponseHeaderTimeoutMsec = 900
[blob]
max_retries = 5
min_wait_msec = 20
max_wait_msec = 400
[[resolver.host."docker.io".mirrors]]
host = "mirror-a:5000"
request_timeout_sec = 4
[[resolver.host."docker.io".mirrors]]
host = "mirror-b:5000"
request_timeout_sec = -1
`);
  const o = daemonRegistryOptions(cfg);
  assert.deepEqual(o.retry, { maxAttempts: 3, baseDelayMs: 10, maxDelayMs: 100 });
  assert.deepEqual(o.blobRetry, { maxAttempts: 6, baseDelayMs: 20, maxDelayMs: 400 });
  assert.equal(o.requestTimeoutMs, 1500);
  assert.equal(o.connectTimeoutMs, 700);
  assert.equal(o.headersTimeoutMs, 900);
  assert.deepEqual(o.requestTimeoutByHost, { 'mirror-a:5000': 4000, 'mirror-b:5000': 0 });
  // a negative RequestTimeoutMsec means no limit, as with Go's http.Client
  assert.equal(daemonRegistryOptions(parseConfig('[http]\nRequestTimeoutMsec = -1\n')).requestTimeoutMs, 0);
  // auth_client_ttl_sec: AWS's 3600 s by default; negative = never
  assert.equal(o.authTtlMs, 3600_000);
  assert.equal(daemonRegistryOptions(parseConfig('[resolver]\nauth_client_ttl_sec = -1\n')).authTtlMs, 0);
  // each mirror's client gets its own timeout; other hosts keep [http]'s
  const hosts = new RegistryHosts({ ...o, plainHttp: true });
  t.after(() => hosts.close());
  assert.equal(hosts.get('mirror-a:5000').options.requestTimeoutMs, 4000);
  assert.equal(hosts.get('mirror-b:5000').options.requestTimeoutMs, 0);
  assert.equal(hosts.get('docker.io').options.requestTimeoutMs, 1500);
});

test('a mirror with no request timeout (request_timeout_sec < 0) waits for a slow body', async (t) => {
  const s = await server(t);
  const hosts = new RegistryHosts({ plainHttp: true, retry: { maxAttempts: 1 }, requestTimeoutMs: 100, requestTimeoutByHost: { [s.host]: 0 } });
  t.after(() => hosts.close());
  assert.equal((await hosts.get(s.host).fetchBlobRange('slow/r', DIGEST, 0, 8)).toString(), '01234567');
});

test('parallel pull mode: connections per registry follow max_concurrent_downloads (0 = no cap), else the default', () => {
  const conns = (toml: string) => daemonRegistryOptions(parseConfig(toml ? `${toml}discard_unpacked_layers = true\n` : '')).connections;
  assert.equal(conns(''), undefined, 'lazy loading only: the client default (8)');
  assert.equal(conns('[pull_modes.parallel_pull_unpack]\nenable = true\nmax_concurrent_downloads = 20\n'), 20);
  assert.equal(conns('[pull_modes.parallel_pull_unpack]\nenable = true\nmax_concurrent_downloads = 4\n'), 8, 'never fewer than lazy reads share');
  assert.equal(conns('[pull_modes.parallel_pull_unpack]\nexperimental_parallel_pull_as_fallback = true\n'), 0, 'unbounded downloads: no cap');
});
