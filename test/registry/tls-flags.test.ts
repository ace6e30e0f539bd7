/**
 * AWS soci's registry TLS/auth flags through RegistryHosts: --tlscacert, --tlscert/--tlskey,
 * -k/--skip-verify, --hosts-dir (cert files and hosts.toml), --refresh, against a real TLS server
 * (certificates made with openssl) that answers GET /v2/ and can require a client certificate.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync, copyFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Command } from 'commander';
import { needs, tempDir } from '../../harness/env.js';
import { RegistryHosts, type RegistryHostsOptions } from '../../src/registry/index.js';
import { addRegistryFlags, registryHostsOptions, type RegistryFlags } from '../../src/cli/registry-opts.js';
import { isSociError } from '../../src/errors.js';

const skip = needs({ tools: ['openssl'] });
const cleanups: Array<() => unknown> = [];
const suite = { after: (fn: () => unknown) => cleanups.push(fn) };
after(async () => {
  for (const fn of cleanups.reverse()) await fn();
});

let dir: string;
let plain: string; // host:port of a server that needs no client cert
let mtls: string; // host:port of a server that requires one
const pem = (f: string) => join(dir, f);

function openssl(...args: string[]) {
  execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
}

/** CA, then a cert signed by it (server: SAN 127.0.0.1; client: clientAuth). */
function makeCerts() {
  openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=test-ca');
  for (const [name, ext] of [
    ['server', 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n'],
    ['client', 'extendedKeyUsage=clientAuth\n'],
  ] as const) {
    writeFileSync(pem(`${name}.ext`), ext);
    openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
    openssl(
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      'ca.crt',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-out',
      `${name}.crt`,
      '-days',
      '2',
      '-extfile',
      `${name}.ext`,
    );
  }
}

async function startServer(requireClient: boolean): Promise<string> {
  const opts = {
    key: readFileSync(pem('server.key')),
    cert: readFileSync(pem('server.crt')),
    ...(requireClient ? { requestCert: true, rejectUnauthorized: true, ca: readFileSync(pem('ca.crt')) } : {}),
  };
  const srv: Server = createServer(opts, (req, res) => {
    if (req.method === 'GET' && req.url === '/v2/') res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    else res.writeHead(404).end();
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  suite.after(() => new Promise((r) => srv.close(r)));
  return `127.0.0.1:${(srv.address() as AddressInfo).port}`;
}

before(async () => {
  if (skip) return;
  dir = await tempDir(suite, 'soci-tls-flags-');
  makeCerts();
  plain = await startServer(false);
  mtls = await startServer(true);
});

/** Pings `host` with RegistryHosts built from CLI flags (https forced: 127.x defaults to http). */
async function ping(host: string, flags: RegistryFlags, extra: Partial<RegistryHostsOptions> = {}): Promise<void> {
  const h = new RegistryHosts({ ...registryHostsOptions(flags, false), plainHttp: false, retry: { maxAttempts: 1 }, ...extra });
  try {
    await h.get(host).ping();
  } finally {
    await h.close();
  }
}

/** A hosts dir with `<host>/` holding the given files (name → source file in dir, or text). */
function hostsDir(name: string, host: string, files: Record<string, { copy: string } | string>): string {
  const root = join(dir, name);
  mkdirSync(join(root, host), { recursive: true });
  for (const [f, v] of Object.entries(files)) {
    if (typeof v === 'string') writeFileSync(join(root, host, f), v);
    else copyFileSync(pem(v.copy), join(root, host, f));
  }
  return root;
}

const tlsError = (e: unknown) => isSociError(e) && /CERT|SELF_SIGNED|verify/i.test(e.message);

test('without the CA: a TLS error; --tlscacert or -k: ok', { skip }, async () => {
  await assert.rejects(ping(plain, {}), tlsError);
  await ping(plain, { tlscacert: pem('ca.crt') });
  await ping(plain, { skipVerify: true });
});

test('--hosts-dir with <host>/ca.crt: ok; other hosts unaffected', { skip }, async () => {
  const root = hostsDir('hd-crt', plain, { 'ca.crt': { copy: 'ca.crt' } });
  await ping(plain, { hostsDir: root });
  await assert.rejects(ping(plain, { hostsDir: hostsDir('hd-other', '127.0.0.1:1', { 'ca.crt': { copy: 'ca.crt' } }) }), tlsError);
  await assert.rejects(ping(plain, { hostsDir: join(dir, 'no-such-dir') }), tlsError);
});

test('hosts.toml ca + client pair against a server requiring client certs', { skip }, async () => {
  const toml = `server = "https://${mtls}"\nca = "${pem('ca.crt')}"\nclient = ["c.cert", "c.key"]\n\n[host."https://mirror.example"]\n  capabilities = ["pull"]\n`;
  const root = hostsDir('hd-toml', mtls, { 'hosts.toml': toml, 'c.cert': { copy: 'client.crt' }, 'c.key': { copy: 'client.key' } });
  // server = "https://…" wins over the localhost→http default: no plainHttp override here
  const h = new RegistryHosts({ ...registryHostsOptions({ hostsDir: root }, false), retry: { maxAttempts: 1 } });
  suite.after(() => h.close());
  await h.get(mtls).ping();
  // same CA, no client certificate: refused by the server
  await assert.rejects(ping(mtls, { hostsDir: hostsDir('hd-toml-nocert', mtls, { 'hosts.toml': `ca = ["${pem('ca.crt')}"]\n` }) }), (e: unknown) =>
    isSociError(e, 'ERR_NETWORK'),
  );
  // docker-style cert files give the same client cert; --tlscert/--tlskey too
  await ping(mtls, {
    hostsDir: hostsDir('hd-files', mtls, { 'ca.crt': { copy: 'ca.crt' }, 'client.cert': { copy: 'client.crt' }, 'client.key': { copy: 'client.key' } }),
  });
  await ping(mtls, { tlscacert: pem('ca.crt'), tlscert: pem('client.crt'), tlskey: pem('client.key') });
});

test('hosts.toml skip_verify and a bad hosts.toml', { skip }, async () => {
  await ping(plain, { hostsDir: hostsDir('hd-skip', plain, { 'hosts.toml': 'skip_verify = true\n' }) });
  const bad = hostsDir('hd-bad', plain, { 'hosts.toml': 'ca = [unterminated\n' });
  await assert.rejects(
    ping(plain, { hostsDir: bad }),
    (e: unknown) => isSociError(e, 'ERR_USAGE') && e.message.includes(join(bad, plain, 'hosts.toml')) && !e.message.includes('\n'),
  );
  const missingCa = hostsDir('hd-missing', plain, { 'hosts.toml': 'ca = "nope.crt"\n' });
  await assert.rejects(ping(plain, { hostsDir: missingCa }), (e: unknown) => isSociError(e, 'ERR_USAGE') && e.message.includes('nope.crt'));
  const lonely = hostsDir('hd-lonely', plain, { 'client.cert': { copy: 'client.crt' } });
  await assert.rejects(ping(plain, { hostsDir: lonely }), (e: unknown) => isSociError(e, 'ERR_USAGE') && e.message.includes('client.key'));
});

test('flag validation: --tlscert/--tlskey pairs, unreadable files, --user with --refresh', () => {
  const usage = (re: RegExp) => (e: unknown) => isSociError(e, 'ERR_USAGE') && re.test(e.message) && !e.message.includes('\n');
  assert.throws(() => registryHostsOptions({ tlscert: 'c.pem' }, false), usage(/--tlscert and --tlskey/));
  assert.throws(() => registryHostsOptions({ tlskey: 'k.pem' }, false), usage(/--tlscert and --tlskey/));
  assert.throws(() => registryHostsOptions({ tlscacert: '/no/such/ca.pem' }, false), usage(/^--tlscacert: cannot read \/no\/such\/ca\.pem/));
  assert.throws(
    () => registryHostsOptions({ user: 'u:secret', refresh: 'tok123' }, false),
    (e: unknown) => usage(/--user or --refresh/)(e) && !(e as Error).message.includes('tok123') && !(e as Error).message.includes('secret'),
  );
});

test('--refresh becomes the identity token for every registry', async () => {
  const o = registryHostsOptions({ refresh: 'tok123' }, false);
  assert.deepEqual(await o.credentials!('docker.io'), { identityToken: 'tok123' });
  assert.deepEqual(await o.credentials!('127.0.0.1:5000'), { identityToken: 'tok123' });
});

test('addRegistryFlags accepts AWS soci flag spellings; --http-dump/--http-trace turn on request logging', () => {
  const opts = addRegistryFlags(new Command('x'))
    .parse(
      ['-k', '--refresh', 't', '--hosts-dir', '/d', '--tlscacert', 'a', '--tlscert', 'b', '--tlskey', 'c', '--http-dump', '--http-trace', '--plain-http'],
      { from: 'user' },
    )
    .opts<RegistryFlags>();
  assert.deepEqual(
    { ...opts },
    {
      skipVerify: true,
      refresh: 't',
      hostsDir: '/d',
      tlscacert: 'a',
      tlscert: 'b',
      tlskey: 'c',
      httpDump: true,
      httpTrace: true,
      plainHttp: true,
      insecureRegistry: [],
    },
  );
  assert.equal(registryHostsOptions({ httpTrace: true }, false).debug !== undefined, true);
  assert.equal(registryHostsOptions({}, false).debug, undefined);
  assert.equal(registryHostsOptions({ skipVerify: true }, false).insecure, true);
});
