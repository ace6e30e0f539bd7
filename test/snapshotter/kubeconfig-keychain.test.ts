/**
 * The kubeconfig keychain's reading of `.dockerconfigjson` Secrets (src/snapshotter/dockerconfigjson.ts)
 * and its registry matching, as Docker's config file reads them (which AWS's keychain uses): key
 * forms, `auth` over username/password, identity tokens, malformed documents refused with a reason
 * that never quotes the data, and API errors described without bodies or credentials.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  authKeyHost,
  lookupCredentials,
  MalformedSecret,
  parseDockerConfigJson,
  secretEntries,
  type AuthEntry,
} from '../../src/snapshotter/dockerconfigjson.js';
import { describeError } from '../../src/snapshotter/kubeconfig-keychain.js';

const b64 = (s: string) => Buffer.from(s).toString('base64');
const doc = (auths: unknown) => JSON.stringify({ auths });
const secret = (json: string) => ({ data: { '.dockerconfigjson': b64(json) } });

test('auths key hostnames: host, host:port, URLs with scheme and path, Docker Hub names', () => {
  const cases: Array<[string, string]> = [
    ['registry.example.com', 'registry.example.com'],
    ['Registry.Example.com', 'registry.example.com'],
    ['127.0.0.1:5000', '127.0.0.1:5000'],
    ['https://registry.example.com/v1/', 'registry.example.com'],
    ['http://127.0.0.1:5000/v2/', '127.0.0.1:5000'],
    ['https://user@registry.example.com:8443/', 'registry.example.com:8443'],
    ['registry.example.com/some/repo', 'registry.example.com'],
    ['https://index.docker.io/v1/', 'docker.io'],
    ['docker.io', 'docker.io'],
    ['registry-1.docker.io', 'docker.io'],
  ];
  for (const [key, host] of cases) assert.equal(authKeyHost(key), host, key);
});

test('entries: auth (base64 user:password) over username/password, identitytoken, Go-style field names', () => {
  const entries = parseDockerConfigJson(
    doc({
      'a.example': { auth: b64('alice:pa:ss\0'), username: 'ignored', password: 'ignored' },
      'b.example': { username: 'bob', password: 'hunter2' },
      'c.example': { username: 'carol', identitytoken: 'refresh-token' },
      'd.example': { Username: 'dave', PASSWORD: 'pw' },
      'e.example': { email: 'nobody@example.com' },
      'f.example': null,
    }),
  );
  const by = new Map(entries.map((e) => [e.key, e]));
  assert.deepEqual(by.get('a.example')?.credentials, { username: 'alice', password: 'pa:ss' });
  assert.deepEqual(by.get('b.example')?.credentials, { username: 'bob', password: 'hunter2' });
  assert.deepEqual(by.get('c.example')?.credentials, { identityToken: 'refresh-token' });
  assert.deepEqual(by.get('d.example')?.credentials, { username: 'dave', password: 'pw' });
  assert.equal(by.get('e.example')?.credentials, undefined, 'an entry without credentials');
  assert.equal(by.has('f.example'), false);
  assert.deepEqual(parseDockerConfigJson('{}'), []);
  assert.deepEqual(parseDockerConfigJson('{"auths": null}'), []);
  // registrytoken is not a credential the registry client can use (AWS's ignores it too)
  assert.equal(parseDockerConfigJson(doc({ 'g.example': { registrytoken: 'bearer' } }))[0]?.credentials, undefined);
});

test('malformed documents are refused with a fixed reason that never quotes the data', () => {
  const password = 'S3cr3t-Pa55word';
  const bad: Array<[string, RegExp]> = [
    [`{"auths": {"a.example": {"auth": "${b64(`alice:${password}`)}"`, /not valid JSON/],
    [`["${password}"]`, /not a JSON object/],
    [`{"auths": "${password}"}`, /"auths" is not an object/],
    [doc({ 'a.example': password }), /entry is not an object/],
    [doc({ 'a.example': { auth: `${password}!!` } }), /"auth" value is not base64/],
    [doc({ 'a.example': { auth: b64(password) } }), /not base64 of "user:password"/],
    [doc({ 'a.example': { auth: b64(`:${password}`) } }), /not base64 of "user:password"/],
    [doc({ 'a.example': { username: 'alice', password: 42 } }), /"password" is not a string/],
  ];
  for (const [text, reason] of bad) {
    assert.throws(
      () => parseDockerConfigJson(text),
      (e: Error) => e instanceof MalformedSecret && reason.test(e.message) && !e.message.includes(password) && !e.message.includes('alice'),
      text,
    );
  }
  assert.throws(() => secretEntries({ data: { 'config.json': b64(doc({})) } }), /no "\.dockerconfigjson" key/);
  assert.throws(() => secretEntries({}), MalformedSecret);
  assert.throws(
    () => secretEntries({ data: { '.dockerconfigjson': `${password}*` } }),
    (e: Error) => /not base64/.test(e.message) && !e.message.includes(password),
  );
});

test('lookup: the exact key first, then the hostname; docker.io by https://index.docker.io/v1/; ports distinct', () => {
  const secrets: Array<[string, AuthEntry[]]> = [
    [
      'ns-a/one',
      secretEntries(
        secret(
          doc({
            'https://registry.example.com/v1/': { username: 'by-hostname', password: 'p1' },
            'registry.example.com': { username: 'exact', password: 'p2' },
            '127.0.0.1:5000': { username: 'port-5000', password: 'p3' },
            'https://index.docker.io/v1/': { auth: b64('hub:p4') },
            'empty.example': {},
          }),
        ),
      ),
    ],
    ['ns-b/two', secretEntries(secret(doc({ 'empty.example': { username: 'second', password: 'p5' }, 'other.example:443': { identitytoken: 't' } })))],
  ];
  const get = (r: string) => lookupCredentials(secrets, r);
  assert.deepEqual(get('registry.example.com'), { secret: 'ns-a/one', credentials: { username: 'exact', password: 'p2' } });
  assert.equal(get('127.0.0.1:5000')?.credentials.username, 'port-5000');
  assert.equal(get('127.0.0.1:5001'), undefined, 'another port is another registry');
  assert.equal(get('127.0.0.1'), undefined);
  for (const hub of ['docker.io', 'index.docker.io', 'registry-1.docker.io']) assert.equal(get(hub)?.credentials.username, 'hub', hub);
  assert.deepEqual(
    get('empty.example'),
    { secret: 'ns-b/two', credentials: { username: 'second', password: 'p5' } },
    'an empty entry falls through to the next secret',
  );
  assert.deepEqual(get('other.example:443')?.credentials, { identityToken: 't' });
  assert.equal(get('unknown.example'), undefined);
  // the first secret in order wins
  const both: Array<[string, AuthEntry[]]> = [
    ['a/first', parseDockerConfigJson(doc({ 'r.example': { username: 'u1', password: 'x' } }))],
    ['b/second', parseDockerConfigJson(doc({ 'r.example': { username: 'u2', password: 'y' } }))],
  ];
  assert.equal(lookupCredentials(both, 'r.example')?.secret, 'a/first');
  // Docker Hub's other key forms also match docker.io here
  assert.equal(
    lookupCredentials([['n/s', parseDockerConfigJson(doc({ 'docker.io': { username: 'd', password: 'x' } }))]], 'docker.io')?.credentials.username,
    'd',
  );
});

test('errors are described by status, reason or errno: no bodies, headers or URL userinfo', () => {
  const apiException = Object.assign(new Error('HTTP-Code: 403\nMessage: Forbidden\nBody: {...}\nHeaders: {"x-token":"leak"}'), {
    code: 403,
    body: { kind: 'Status', message: 'secrets is forbidden: User "u" cannot list resource "secrets"' },
    headers: { 'x-token': 'leak' },
  });
  assert.equal(describeError(apiException), 'HTTP 403: secrets is forbidden: User "u" cannot list resource "secrets"');
  assert.equal(describeError(Object.assign(new Error('Unauthorized'), { statusCode: 401 })), 'HTTP 401');
  assert.equal(describeError({ code: 500, body: '{"message":"etcd down"}' }), 'HTTP 500: etcd down');
  assert.equal(
    describeError(Object.assign(new Error('request to https://u:pw@h/api failed, reason: connect ECONNREFUSED'), { code: 'ECONNREFUSED' })),
    'ECONNREFUSED',
  );
  assert.equal(describeError(new Error('request to https://u:pw@h/api failed\nmore')), 'request to https://h/api failed');
  assert.equal(describeError(new MalformedSecret('not valid JSON')), 'not valid JSON');
});
