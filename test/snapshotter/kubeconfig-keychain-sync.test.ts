/**
 * The kubeconfig keychain's list-and-watch loop against a small fake API server that speaks the
 * Kubernetes list and watch protocol (JSON list with a resourceVersion, a chunked stream of watch
 * events, 410 Gone as an ERROR event or as the status): adds, updates and deletes reach lookups;
 * a watch the server ends resumes from the last resourceVersion; 410 re-lists; an API server that is
 * down or failing is retried; nothing blocks; no credential reaches the log. The real API server is
 * in test/e2e/kubeconfig-keychain.test.ts.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { recordingLogger, tempDir, waitFor } from '../../harness/env.js';
import { KubeconfigKeychain } from '../../src/snapshotter/kubeconfig-keychain.js';

const TYPE = 'kubernetes.io/dockerconfigjson';
const TOKEN = 'api-token-never-logged';
const REG = 'reg.example:5000';

interface Req {
  watch: boolean;
  resourceVersion: string | null;
  fieldSelector: string | null;
  timeoutSeconds: string | null;
  auth: string | undefined;
}

/** The Secrets part of an API server: a resourceVersion counter, the event history, open watches. */
class FakeApi {
  rv = 100;
  readonly secrets = new Map<string, Record<string, unknown>>();
  readonly history: Array<{ rv: number; line: string }> = [];
  readonly watches = new Set<ServerResponse>();
  readonly requests: Req[] = [];
  /** a watch from below this resourceVersion is told 410 Gone */
  compactedBelow = 0;
  /** 410 as the HTTP status instead of an ERROR event */
  goneAsStatus = false;
  /** answer the next N requests with 500 */
  failNext = 0;
  /** the bearer token accepted */
  token = TOKEN;
  port = 0;
  readonly server: Server = createServer((req, res) => this.handle(req, res));

  async listen(port = 0): Promise<void> {
    await new Promise<void>((r) => this.server.listen(port, '127.0.0.1', r));
    this.port = (this.server.address() as AddressInfo).port;
  }

  /** The API server goes away: the port refuses, open watches are cut. */
  async down(): Promise<void> {
    const closed = new Promise((r) => this.server.close(r));
    this.server.closeAllConnections();
    this.watches.clear();
    await closed;
  }

  put(ns: string, name: string, dockerconfigjson: string, type = TYPE): void {
    const key = `${ns}/${name}`;
    const verb = this.secrets.has(key) ? 'MODIFIED' : 'ADDED';
    const obj = {
      kind: 'Secret',
      apiVersion: 'v1',
      metadata: { namespace: ns, name, resourceVersion: String(++this.rv) },
      type,
      data: { '.dockerconfigjson': Buffer.from(dockerconfigjson).toString('base64') },
    };
    this.secrets.set(key, obj);
    if (type === TYPE) this.emit(verb, obj);
  }

  del(ns: string, name: string): void {
    const obj = this.secrets.get(`${ns}/${name}`) as { metadata: Record<string, unknown> } | undefined;
    if (!obj) return;
    this.secrets.delete(`${ns}/${name}`);
    this.emit('DELETED', { ...obj, metadata: { ...obj.metadata, resourceVersion: String(++this.rv) } });
  }

  /** Ends every open watch, as the server does when a watch's timeoutSeconds runs out. */
  endWatches(): void {
    for (const w of this.watches) w.end();
    this.watches.clear();
  }

  lists(): number {
    return this.requests.filter((r) => !r.watch).length;
  }

  private emit(type: string, object: unknown): void {
    const line = `${JSON.stringify({ type, object })}\n`;
    this.history.push({ rv: this.rv, line });
    for (const w of this.watches) w.write(line);
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://x');
    const q = url.searchParams;
    const r: Req = {
      watch: q.get('watch') === 'true',
      resourceVersion: q.get('resourceVersion'),
      fieldSelector: q.get('fieldSelector'),
      timeoutSeconds: q.get('timeoutSeconds'),
      auth: req.headers.authorization,
    };
    this.requests.push(r);
    const json = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (url.pathname !== '/api/v1/secrets') return json(404, { kind: 'Status', code: 404 });
    if (r.auth !== `Bearer ${this.token}`) return json(401, { kind: 'Status', code: 401, message: 'Unauthorized' });
    if (this.failNext > 0) {
      this.failNext--;
      return json(500, { kind: 'Status', code: 500, message: 'etcd is unhappy' });
    }
    if (!r.watch) {
      const items = [...this.secrets.values()].filter((s) => r.fieldSelector !== `type=${TYPE}` || s.type === TYPE);
      return json(200, { kind: 'SecretList', apiVersion: 'v1', metadata: { resourceVersion: String(this.rv) }, items });
    }
    const from = Number(r.resourceVersion);
    const gone = { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'Expired', code: 410, message: 'too old resource version' };
    if (from < this.compactedBelow && this.goneAsStatus) return json(410, gone);
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    res.flushHeaders(); // as kube-apiserver does at a watch's start
    if (from < this.compactedBelow) {
      res.write(`${JSON.stringify({ type: 'ERROR', object: gone })}\n`);
      res.end();
      return;
    }
    for (const h of this.history) if (h.rv > from) res.write(h.line);
    this.watches.add(res);
    res.on('close', () => this.watches.delete(res));
  }
}

const auths = (user: string, password: string, host = REG) =>
  JSON.stringify({ auths: { [host]: { auth: Buffer.from(`${user}:${password}`).toString('base64') } } });

async function setup(t: TestContext, opts: { kubeconfigLater?: boolean; firstSyncWaitMs?: number } = {}) {
  const api = new FakeApi();
  await api.listen();
  t.after(() => api.down());
  const dir = await tempDir(t, 'soci-kube-');
  const kubeconfigPath = join(dir, 'kubeconfig');
  const writeKubeconfig = (token = TOKEN) =>
    writeFile(
      kubeconfigPath,
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [{ name: 'c', cluster: { server: `http://127.0.0.1:${api.port}`, 'insecure-skip-tls-verify': true } }],
        users: [{ name: 'u', user: { token } }],
        contexts: [{ name: 'x', context: { cluster: 'c', user: 'u' } }],
        'current-context': 'x',
      }),
    );
  if (!opts.kubeconfigLater) await writeKubeconfig();
  const logger = recordingLogger();
  const kc = new KubeconfigKeychain({
    kubeconfigPath,
    logger,
    retryMs: { min: 20, max: 200 },
    pollMs: 50,
    watchTimeoutSec: () => 60,
    ...(opts.firstSyncWaitMs !== undefined ? { firstSyncWaitMs: opts.firstSyncWaitMs } : {}),
  });
  t.after(() => kc.stop());
  const user = async () => (await kc.provider(REG))?.username;
  const password = async () => (await kc.provider(REG))?.password;
  return { api, kc, logger, writeKubeconfig, user, password };
}

test('list then watch: a kubeconfig that appears later, first-sync wait, adds, updates, malformed and deleted secrets', async (t) => {
  const { api, kc, logger, writeKubeconfig, password } = await setup(t, { kubeconfigLater: true });
  api.put('team-a', 'regcred', auths('alice', 'pw-1'));
  api.put('team-a', 'opaque', auths('mallory', 'not-a-pull-secret'), 'Opaque');
  kc.start();
  const early = kc.provider(REG); // asked before the kubeconfig exists: waits for the first sync
  await new Promise((r) => setTimeout(r, 150));
  assert.ok(logger.lines.some((l) => l.msg === 'kubeconfig keychain: waiting for the kubeconfig to exist'));
  await writeKubeconfig();
  assert.deepEqual(await early, { username: 'alice', password: 'pw-1' });
  assert.ok(logger.lines.some((l) => l.msg === 'kubeconfig keychain: first sync complete' && l.fields.secrets === 1));
  const list = api.requests.find((r) => !r.watch)!;
  assert.equal(list.fieldSelector, `type=${TYPE}`, 'only dockerconfigjson secrets are asked for');
  assert.ok(await waitFor(() => api.watches.size === 1));
  const watch = api.requests.find((r) => r.watch)!;
  assert.deepEqual([watch.resourceVersion, watch.fieldSelector, watch.timeoutSeconds], ['102', `type=${TYPE}`, '60'], 'the watch starts at the list');

  api.put('team-a', 'regcred', auths('alice', 'pw-2')); // rotation
  assert.ok(await waitFor(async () => (await password()) === 'pw-2'), 'an update is picked up');
  api.put('team-b', 'broken', '{"auths": {"x": {"auth": "!!pw-broken!!"}}}');
  assert.ok(await waitFor(() => logger.lines.some((l) => l.level === 'warn' && l.fields.secret === 'team-b/broken')), 'a malformed secret is warned about');
  assert.equal(await password(), 'pw-2', 'and does not disturb the others');
  api.del('team-a', 'regcred');
  assert.ok(await waitFor(async () => (await kc.provider(REG)) === undefined), 'a delete is picked up');
  assert.equal(api.lists(), 1, 'all by one watch');
  const logs = JSON.stringify(logger.lines);
  for (const s of ['pw-1', 'pw-2', 'pw-broken', TOKEN, 'not-a-pull-secret']) assert.ok(!logs.includes(s), `${s} is never logged`);
});

test('a watch the server ends resumes from the last resourceVersion; 410 Gone (event or status) re-lists', async (t) => {
  const { api, kc, password } = await setup(t);
  api.put('ns', 'one', auths('u', 'pw-1'));
  kc.start();
  await kc.synced;
  assert.ok(await waitFor(() => api.watches.size === 1));
  api.put('ns', 'one', auths('u', 'pw-2'));
  assert.ok(await waitFor(async () => (await password()) === 'pw-2'));
  const seen = String(api.rv);
  api.endWatches();
  assert.ok(await waitFor(() => api.watches.size === 1), 'watching again');
  assert.equal(api.requests.at(-1)?.resourceVersion, seen, 'from the last event seen');
  assert.equal(api.lists(), 1, 'without a new list');

  for (const asStatus of [false, true]) {
    api.goneAsStatus = asStatus;
    const lists = api.lists();
    // Changes the watch never delivers: it ends, and its resourceVersion is compacted away.
    api.endWatches();
    api.del('ns', 'one');
    api.put('ns', asStatus ? 'three' : 'two', auths('u', asStatus ? 'pw-4' : 'pw-3'));
    api.history.length = 0;
    api.compactedBelow = api.rv + 1;
    assert.ok(await waitFor(() => api.lists() === lists + 1), `410 as ${asStatus ? 'status' : 'event'}: a new list`);
    assert.ok(await waitFor(async () => (await password()) === (asStatus ? 'pw-4' : 'pw-3')), 'the list replaces what was kept');
    api.compactedBelow = 0;
    assert.ok(await waitFor(() => api.watches.size === 1), 'and a watch from it');
  }
  assert.equal((await kc.provider(REG))?.password, 'pw-4');
  assert.equal(api.secrets.size, 2);
  api.del('ns', 'two');
  api.del('ns', 'three');
  assert.ok(await waitFor(async () => (await kc.provider(REG)) === undefined));
});

test('an API server that is down or failing is retried with backoff; the keychain keeps what it had', async (t) => {
  const { api, kc, logger, password } = await setup(t);
  api.put('ns', 'one', auths('u', 'pw-1'));
  kc.start();
  await kc.synced;
  assert.ok(await waitFor(() => api.watches.size === 1));
  const port = api.port;
  await api.down();
  // Meanwhile the secret is rotated and the old resourceVersions are compacted.
  api.put('ns', 'one', auths('u', 'pw-2'));
  api.compactedBelow = api.rv + 1;
  assert.ok(await waitFor(() => logger.lines.some((l) => l.level === 'warn' && l.fields.error === 'ECONNREFUSED')), 'the failure is logged');
  assert.equal(await password(), 'pw-1', 'what was synced keeps serving');
  api.failNext = 2;
  await api.listen(port);
  assert.ok(await waitFor(async () => (await password()) === 'pw-2', 10_000), 'back in sync once the API server is');
  assert.ok(logger.lines.some((l) => l.level === 'warn' && /^HTTP 500/.test(String(l.fields.error))));
  assert.ok(!JSON.stringify(logger.lines).includes(TOKEN));
});

test('a 401 reads the kubeconfig again: a rotated token is picked up', async (t) => {
  const { api, kc, logger, writeKubeconfig, password } = await setup(t);
  api.put('ns', 'one', auths('u', 'pw-1'));
  kc.start();
  await kc.synced;
  assert.ok(await waitFor(() => api.watches.size === 1));
  api.token = 'rotated-api-token';
  await writeKubeconfig('rotated-api-token');
  api.endWatches();
  assert.ok(await waitFor(() => logger.lines.some((l) => l.level === 'warn' && l.fields.error === 'HTTP 401')), 'the refusal is logged');
  assert.ok(await waitFor(() => api.watches.size === 1 && api.requests.at(-1)?.auth === 'Bearer rotated-api-token'), 'watching with the new token');
  api.put('ns', 'one', auths('u', 'pw-2'));
  assert.ok(await waitFor(async () => (await password()) === 'pw-2'));
  assert.ok(!JSON.stringify(logger.lines).includes('rotated-api-token'));
});

test('an unreachable API server blocks nothing: start returns at once, lookups wait only briefly; stop ends it all', async (t) => {
  const { api, kc, logger } = await setup(t, { firstSyncWaitMs: 300 });
  await api.down();
  const t0 = Date.now();
  kc.start();
  assert.ok(Date.now() - t0 < 50, 'start does not wait');
  assert.equal(await kc.provider(REG), undefined);
  assert.ok(Date.now() - t0 < 2000, 'the first lookups wait for the first sync at most firstSyncWaitMs');
  const t1 = Date.now();
  assert.equal(await kc.provider(REG), undefined);
  assert.ok(Date.now() - t1 < 50, 'later ones do not wait');
  assert.ok(await waitFor(() => logger.lines.filter((l) => l.level === 'warn').length >= 2), 'retried');
  const t2 = Date.now();
  await kc.stop();
  assert.ok(Date.now() - t2 < 1000, 'stop ends the retries at once');
  const n = logger.lines.length;
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(logger.lines.length, n, 'nothing runs after stop');
});

test('stop ends an open watch at once', async (t) => {
  const { api, kc } = await setup(t);
  kc.start();
  await kc.synced;
  assert.ok(await waitFor(() => api.watches.size === 1));
  const t0 = Date.now();
  await kc.stop();
  assert.ok(Date.now() - t0 < 1000);
  assert.ok(await waitFor(() => api.watches.size === 0), 'the connection is closed');
});
