/**
 * Authentication against real registries: htpasswd (Basic) and token auth (Bearer, our token
 * server), Docker config.json and a credential helper on PATH. Secrets must never show up in
 * errors or debug lines.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { needs, tempDir } from '../../harness/env.js';
import { startRegistry, pushTestImage, type TestRegistry, type TestImage } from '../../harness/registry.js';
import { startTokenServer, type TokenServer } from '../../harness/token-server.js';
import {
  RegistryClient,
  normalizeScopes,
  parseChallenge,
  staticCredentials,
  dockerConfigCredentials,
  chainCredentials,
  envCredentials,
  digestOf,
  type RegistryClientOptions,
} from '../../src/registry/index.js';
import { isSociError } from '../../src/errors.js';
import { Authenticator } from '../../src/registry/auth.js';
import { lineLogger } from '../../src/logger.js';

const skip = needs({ tools: ['docker-registry', 'skopeo', 'htpasswd', 'openssl'] });
const cleanups: Array<() => unknown> = [];
const suite = { after: (fn: () => unknown) => cleanups.push(fn) };
after(async () => {
  for (const fn of cleanups.reverse()) await fn();
});

let basicReg: TestRegistry;
let basicImg: TestImage;
let tokenSrv: TokenServer;
let tokenReg: TestRegistry;
let tokenImg: TestImage;

before(async () => {
  if (skip) return;
  basicReg = await startRegistry(suite, { auth: 'htpasswd' });
  basicImg = await pushTestImage(basicReg, 'basic/app', { layers: 1 });
  tokenSrv = await startTokenServer(suite, {
    users: { alice: 'wonderland', bob: 'builder' },
    access: (user, repo) => (user === 'alice' ? ['pull', 'push'] : user === 'bob' ? ['pull'] : repo.startsWith('public/') ? ['pull'] : []),
  });
  tokenReg = await startRegistry(suite, { auth: 'token', tokenServer: tokenSrv });
  tokenImg = await pushTestImage(tokenReg, 'private/app', { layers: 1 });
  await pushTestImage(tokenReg, 'public/app', { layers: 1 });
});

function client(reg: TestRegistry, extra: Partial<RegistryClientOptions> = {}, logs?: string[]) {
  const c = new RegistryClient({
    registry: reg.host,
    plainHttp: true,
    retry: { maxAttempts: 2, baseDelayMs: 10 },
    ...(logs ? { debug: lineLogger((l) => logs.push(l)) } : {}),
    ...extra,
  });
  suite.after(() => c.close());
  return c;
}

function noSecret(e: unknown, ...secrets: string[]): boolean {
  const text = `${(e as Error).message} ${(e as Error).stack ?? ''}`;
  return secrets.every((s) => !text.includes(s) && !text.includes(Buffer.from(s).toString('base64')));
}

test('htpasswd: right password works, wrong/none → ERR_AUTH naming the registry, never the password', { skip }, async () => {
  const logs: string[] = [];
  const ok = client(basicReg, { credentials: staticCredentials(`${basicReg.user}:${basicReg.password}`) }, logs);
  await ok.ping();
  const m = await ok.getManifest('basic/app', 'latest');
  assert.equal(m.digest, basicImg.digest);
  assert.ok(!logs.join('\n').includes(basicReg.password!));

  const wrongPw = 'not-the-password-' + randomBytes(4).toString('hex');
  const bad = client(basicReg, { credentials: staticCredentials(`alice:${wrongPw}`) }, logs);
  await assert.rejects(
    bad.getManifest('basic/app', 'latest'),
    (e: unknown) => isSociError(e, 'ERR_AUTH') && e.message.includes(basicReg.host) && noSecret(e, wrongPw, `alice:${wrongPw}`),
  );
  const none = client(basicReg);
  await assert.rejects(none.ping(), (e: unknown) => isSociError(e, 'ERR_AUTH') && e.message.includes(basicReg.host));
  assert.ok(!logs.join('\n').includes(wrongPw));
  // credentials for another host are not sent
  const elsewhere = client(basicReg, { credentials: staticCredentials(`alice:${basicReg.password}`, 'example.com') });
  await assert.rejects(elsewhere.ping(), (e: unknown) => isSociError(e, 'ERR_AUTH'));
});

test('htpasswd: credentials absent at first, or rotated after a client read them, are read again', { skip }, async (t) => {
  const reg = await startRegistry(t, { auth: 'htpasswd' });
  await pushTestImage(reg, 'rot/app', { layers: 1 });
  let password: string | undefined;
  let reads = 0;
  const c = client(reg, {
    credentials: async () => {
      reads++;
      return password === undefined ? undefined : { username: reg.user!, password };
    },
  });
  // none at first (a keychain not synced yet): asked again at the next request
  await assert.rejects(c.getManifest('rot/app', 'latest'), (e: unknown) => isSociError(e, 'ERR_AUTH'));
  password = reg.password!;
  await c.getManifest('rot/app', 'latest');
  const { execFileSync } = await import('node:child_process');
  password = `rotated-${randomBytes(4).toString('hex')}`;
  await writeFile(join(reg.workDir, 'htpasswd'), execFileSync('htpasswd', ['-Bbn', reg.user!, password]));
  await new Promise((r) => setTimeout(r, 100)); // distribution reloads a changed htpasswd file on the next request
  const before = reads;
  await c.getManifest('rot/app', 'latest');
  assert.equal(reads, before + 1, 'read once more after the refusal');
  // credentials that did not change are not sent again
  password = 'still-wrong';
  await writeFile(join(reg.workDir, 'htpasswd'), execFileSync('htpasswd', ['-Bbn', reg.user!, 'another-one']));
  await assert.rejects(c.getManifest('rot/app', 'latest'), (e: unknown) => isSociError(e, 'ERR_AUTH') && noSecret(e, 'still-wrong', 'another-one'));
});

test('bearer: pull and push with credentials; tokens cached per scope', { skip }, async () => {
  const logs: string[] = [];
  const c = client(tokenReg, { credentials: staticCredentials('alice:wonderland') }, logs);
  const before = tokenSrv.requests.length;
  const m = await c.getManifest('private/app', 'latest');
  assert.equal(m.digest, tokenImg.digest);
  const layer = tokenImg.manifests[0]!.layers[0]!;
  assert.ok((await c.fetchBlobRange('private/app', layer.digest, 0, 10)).equals(layer.bytes.subarray(0, 10)));
  await c.getManifest('private/app', tokenImg.digest);
  const pullReqs = tokenSrv.requests.slice(before);
  assert.equal(pullReqs.length, 1, 'one token for three pulls of the same repository');
  assert.deepEqual(pullReqs[0]!.scopes, ['repository:private/app:pull']);
  assert.equal(pullReqs[0]!.user, 'alice');

  const blob = randomBytes(3000);
  assert.equal(await c.pushBlob('private/new', digestOf(blob), blob.length, blob), 'uploaded');
  assert.ok(tokenSrv.requests.some((r) => r.scopes.includes('repository:private/new:pull,push')));
  // cross-repo mount asks for both scopes in one token
  assert.equal(await c.pushBlob('private/mounted', digestOf(blob), blob.length, blob, { mountFrom: 'private/new' }), 'mounted');
  assert.ok(tokenSrv.requests.some((r) => r.scopes.includes('repository:private/mounted:pull,push') && r.scopes.includes('repository:private/new:pull')));
  const text = logs.join('\n');
  assert.ok(!text.includes('wonderland') && !/Bearer|eyJ/.test(text), 'no secrets in debug lines');
});

test('bearer: concurrent first requests share one token fetch', { skip }, async () => {
  const c = client(tokenReg, { credentials: staticCredentials('alice:wonderland') });
  const layer = tokenImg.manifests[0]!.layers[0]!;
  const before = tokenSrv.requests.length;
  const parts = await Promise.all(Array.from({ length: 8 }, (_, i) => c.fetchBlobRange('private/app', layer.digest, i * 100, i * 100 + 100)));
  for (const [i, p] of parts.entries()) assert.ok(p.equals(layer.bytes.subarray(i * 100, i * 100 + 100)));
  assert.equal(tokenSrv.requests.length - before, 1);
});

test('bearer: anonymous pull of a public repo; private repo and wrong scope → ERR_AUTH', { skip }, async () => {
  const anon = client(tokenReg);
  const m = await anon.getManifest('public/app', 'latest');
  assert.equal(m.mediaType, 'application/vnd.oci.image.manifest.v1+json');
  await assert.rejects(anon.getManifest('private/app', 'latest'), (e: unknown) => isSociError(e, 'ERR_AUTH') && e.message.includes(tokenReg.host));
  // bob may pull but not push: the token leaves push out, the registry refuses
  const bob = client(tokenReg, { credentials: staticCredentials('bob:builder') });
  await bob.getManifest('private/app', 'latest');
  const blob = randomBytes(100);
  await assert.rejects(bob.pushBlob('private/app', digestOf(blob), blob.length, blob), (e: unknown) => isSociError(e, 'ERR_AUTH') && noSecret(e, 'builder'));
  // wrong password at the token server
  const wrong = client(tokenReg, { credentials: staticCredentials('alice:queen-of-hearts') });
  await assert.rejects(
    wrong.getManifest('private/app', 'latest'),
    (e: unknown) => isSociError(e, 'ERR_AUTH') && /token server refused/.test(e.message) && noSecret(e, 'queen-of-hearts'),
  );
});

test('bearer: an expired token is refreshed on 401', { skip }, async () => {
  const c = client(tokenReg, { credentials: staticCredentials('alice:wonderland') });
  tokenSrv.expireNext = 1;
  const before = tokenSrv.requests.length;
  const m = await c.getManifest('private/app', 'latest');
  assert.equal(m.digest, tokenImg.digest);
  assert.equal(tokenSrv.requests.length - before, 2, 'expired token, then a fresh one');
  assert.equal(tokenSrv.expireNext, 0);
});

test('bearer: OAuth2 POST fallback and identity (refresh) tokens', { skip }, async () => {
  tokenSrv.postOnly = true;
  try {
    const c = client(tokenReg, { credentials: staticCredentials('alice:wonderland') });
    assert.equal((await c.getManifest('private/app', 'latest')).digest, tokenImg.digest);
    assert.equal(tokenSrv.requests.at(-1)!.method, 'POST');
    tokenSrv.refreshTokens['refresh-123'] = 'alice';
    const r = client(tokenReg, { credentials: async () => ({ identityToken: 'refresh-123' }) });
    assert.equal((await r.getManifest('private/app', 'latest')).digest, tokenImg.digest);
    const bad = client(tokenReg, { credentials: async () => ({ identityToken: 'refresh-bad' }) });
    await assert.rejects(bad.getManifest('private/app', 'latest'), (e: unknown) => isSociError(e, 'ERR_AUTH') && noSecret(e, 'refresh-bad'));
  } finally {
    tokenSrv.postOnly = false;
  }
});

test('docker config.json: auths (base64 auth), credHelpers and credsStore via a helper on PATH', { skip }, async (t) => {
  const dir = await tempDir(t);
  const cfgPath = join(dir, 'config.json');
  const auth = Buffer.from(`${basicReg.user}:${basicReg.password}`).toString('base64');
  await writeFile(cfgPath, JSON.stringify({ auths: { [basicReg.host]: { auth }, 'other.example.com': { auth: 'eDp5' } } }));
  const c1 = client(basicReg, { credentials: dockerConfigCredentials({ configPath: cfgPath }) });
  assert.equal((await c1.getManifest('basic/app', 'latest')).digest, basicImg.digest);
  // username/password fields, keyed by URL
  await writeFile(cfgPath, JSON.stringify({ auths: { [`http://${basicReg.host}/v2/`]: { username: basicReg.user, password: basicReg.password } } }));
  const c1b = client(basicReg, { credentials: dockerConfigCredentials({ configPath: cfgPath }) });
  await c1b.ping();

  // fake helper: answers for the registry host only, logs what it was asked
  const bin = join(dir, 'bin');
  await (await import('node:fs/promises')).mkdir(bin);
  const helper = join(bin, 'docker-credential-test');
  await writeFile(
    helper,
    `#!/bin/sh
[ "$1" = get ] || exit 2
read -r url
echo "$url" >> "${join(dir, 'helper.log')}"
if [ "$url" = "${basicReg.host}" ]; then
  printf '{"ServerURL":"%s","Username":"${basicReg.user}","Secret":"${basicReg.password}"}' "$url"
else
  echo "credentials not found in native keychain"; exit 1
fi
`,
  );
  await chmod(helper, 0o755);
  const env = { ...process.env, PATH: `${bin}:${process.env.PATH}` };
  await writeFile(cfgPath, JSON.stringify({ credHelpers: { [basicReg.host]: 'test' } }));
  const c2 = client(basicReg, { credentials: dockerConfigCredentials({ configPath: cfgPath, env }) });
  assert.equal((await c2.getManifest('basic/app', 'latest')).digest, basicImg.digest);
  await writeFile(cfgPath, JSON.stringify({ credsStore: 'test' }));
  const c3 = client(basicReg, { credentials: dockerConfigCredentials({ configPath: cfgPath, env }) });
  await c3.ping();
  assert.deepEqual(await dockerConfigCredentials({ configPath: cfgPath, env })('docker.io'), undefined);
  const asked = (await readFile(join(dir, 'helper.log'), 'utf8')).trim().split('\n');
  assert.deepEqual(asked, [basicReg.host, basicReg.host, 'https://index.docker.io/v1/']);
  // a missing helper binary is a clear ERR_AUTH
  await writeFile(cfgPath, JSON.stringify({ credsStore: 'does-not-exist' }));
  await assert.rejects(
    dockerConfigCredentials({ configPath: cfgPath, env })(basicReg.host),
    (e: unknown) => isSociError(e, 'ERR_AUTH') && /docker-credential-does-not-exist/.test(e.message),
  );
});

test('credential chain and env provider', async () => {
  const env = { SOCI_REGISTRY_AUTH: 'u:p:with:colons', SOCI_REGISTRY_AUTH_HOST: 'reg.example.com' };
  const p = chainCredentials(async () => undefined, envCredentials(env), staticCredentials('x:y'));
  assert.deepEqual(await p('reg.example.com'), { username: 'u', password: 'p:with:colons' });
  assert.deepEqual(await p('other.example.com'), { username: 'x', password: 'y' });
  assert.throws(
    () => staticCredentials('nocolon'),
    (e: unknown) => isSociError(e, 'ERR_USAGE') && !e.message.includes('nocolon'),
  );
  assert.equal(await dockerConfigCredentials({ configPath: '/nonexistent/config.json' })('docker.io'), undefined);
});

test('WWW-Authenticate parsing and scope normalization', () => {
  assert.deepEqual(
    parseChallenge('Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull,push",error="insufficient_scope"'),
    {
      scheme: 'bearer',
      params: { realm: 'https://auth.example.com/token', service: 'registry.example.com', scope: 'repository:a/b:pull,push', error: 'insufficient_scope' },
    },
  );
  assert.deepEqual(parseChallenge(['Basic realm="x y"']), { scheme: 'basic', params: { realm: 'x y' } });
  assert.deepEqual(parseChallenge('basic realm=plain'), { scheme: 'basic', params: { realm: 'plain' } });
  assert.equal(parseChallenge('Negotiate abc'), undefined);
  assert.equal(parseChallenge(undefined), undefined);
  assert.deepEqual(normalizeScopes(['repository:a:pull', 'repository:a:push,pull', 'repository:b:pull', 'repository:a:delete']), [
    'repository:a:pull,push,delete',
    'repository:b:pull',
  ]);
  assert.deepEqual(normalizeScopes(['repository:x:pull repository:y:push']), ['repository:x:pull', 'repository:y:push']);
});

test('auth TTL (AWS auth_client_ttl_sec): credentials and tokens resolved again once they are that old, not before', async () => {
  let credCalls = 0;
  const tokenScopes: string[] = [];
  const creds = async () => {
    credCalls++;
    return { username: 'u', password: `p${credCalls}` };
  };
  const requester = async (_m: 'GET' | 'POST', url: URL, headers: Record<string, string>) => {
    tokenScopes.push(`${url.searchParams.get('scope')} ${headers.authorization ?? ''}`);
    return { status: 200, body: Buffer.from(JSON.stringify({ token: `t${tokenScopes.length}`, expires_in: 3600 })) };
  };
  const ttl = new Authenticator('r.example', creds, requester, 150);
  const never = new Authenticator('r.example', creds, requester);
  for (const a of [ttl, never]) a.learn({ scheme: 'bearer', params: { realm: 'https://auth.example/token', service: 'r' } });
  assert.equal(await ttl.authorization(['repository:a:pull']), 'Bearer t1');
  assert.equal(await ttl.authorization(['repository:a:pull']), 'Bearer t1', 'cached within the TTL');
  assert.equal(credCalls, 1);
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(await ttl.authorization(['repository:a:pull']), 'Bearer t2', 'a new token after the TTL');
  assert.equal(credCalls, 2, 'credentials resolved again');
  assert.match(tokenScopes[1]!, new RegExp(`Basic ${Buffer.from('u:p2').toString('base64')}`), 'with the credentials read again');
  // without a TTL the token lives as long as the registry says
  const t0 = await never.authorization(['repository:b:pull']);
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(await never.authorization(['repository:b:pull']), t0);
});
