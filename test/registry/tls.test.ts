/**
 * HTTPS registries: a self-signed registry is refused by default (system CAs), accepted with the
 * `ca` option or with `insecure`.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { needs } from '../../harness/env.js';
import { startRegistry, pushTestImage, type TestRegistry, type TestImage } from '../../harness/registry.js';
import { RegistryClient, type RegistryClientOptions } from '../../src/registry/index.js';
import { isSociError } from '../../src/errors.js';

const skip = needs({ tools: ['docker-registry', 'skopeo', 'openssl'] });
const cleanups: Array<() => unknown> = [];
const suite = { after: (fn: () => unknown) => cleanups.push(fn) };
after(async () => {
  for (const fn of cleanups.reverse()) await fn();
});

let reg: TestRegistry;
let img: TestImage;
before(async () => {
  if (skip) return;
  reg = await startRegistry(suite, { tls: true });
  img = await pushTestImage(reg, 'tls/app', { layers: 1 });
});

function client(extra: Partial<RegistryClientOptions>) {
  const c = new RegistryClient({ registry: reg.host, retry: { maxAttempts: 2, baseDelayMs: 10 }, ...extra });
  suite.after(() => c.close());
  return c;
}

test('self-signed HTTPS: refused by default, accepted with ca or insecure', { skip }, async () => {
  assert.match(reg.url, /^https:/);
  await assert.rejects(client({}).ping(), (e: unknown) => isSociError(e, 'ERR_NETWORK') && /SELF_SIGNED|CERT/i.test(e.message) && e.message.includes(reg.host));
  assert.equal((await client({ ca: reg.caPem! }).getManifest('tls/app', 'latest')).digest, img.digest);
  assert.equal((await client({ insecure: true }).getManifest('tls/app', 'latest')).digest, img.digest);
  // plain HTTP against a TLS port is an HTTP 400 from Go's server
  await assert.rejects(client({ plainHttp: true }).ping(), (e: unknown) => isSociError(e) && e.message.includes(reg.host));
});
