import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseReference, apiHost, isLocalhost } from '../../src/oci/reference.js';
import { isSociError } from '../../src/errors.js';

const D = 'sha256:' + 'a'.repeat(64);

test('Docker defaults', () => {
  const r = parseReference('ubuntu');
  assert.equal(r.registry, 'docker.io');
  assert.equal(r.repository, 'library/ubuntu');
  assert.equal(r.tag, 'latest');
  assert.equal(r.digest, undefined);
  assert.equal(r.string(), 'docker.io/library/ubuntu:latest');
  assert.equal(r.reference(), 'latest');
  assert.equal(parseReference('user/app:1.0').string(), 'docker.io/user/app:1.0');
  assert.equal(parseReference('index.docker.io/library/busybox').string(), 'docker.io/library/busybox:latest');
  assert.equal(parseReference('docker.io/busybox').repository, 'library/busybox');
  assert.equal(apiHost('docker.io'), 'registry-1.docker.io');
  assert.equal(apiHost('ghcr.io'), 'ghcr.io');
});

test('hosts, ports, IPs, tag + digest', () => {
  let r = parseReference('localhost:5000/x');
  assert.deepEqual([r.registry, r.repository, r.tag], ['localhost:5000', 'x', 'latest']);
  r = parseReference('127.0.0.1:5000/a/b/c:v1');
  assert.deepEqual([r.registry, r.repository, r.tag], ['127.0.0.1:5000', 'a/b/c', 'v1']);
  r = parseReference('localhost/x');
  assert.equal(r.registry, 'localhost');
  r = parseReference(`public.ecr.aws/docker/library/redis:7@${D}`);
  assert.deepEqual([r.registry, r.repository, r.tag, r.digest], ['public.ecr.aws', 'docker/library/redis', '7', D]);
  assert.equal(r.reference(), D);
  assert.equal(r.string(), `public.ecr.aws/docker/library/redis:7@${D}`);
  r = parseReference(`ghcr.io/o/r@${D}`);
  assert.equal(r.tag, undefined);
  assert.equal(r.string(), `ghcr.io/o/r@${D}`);
  r = parseReference('[::1]:5000/img:t');
  assert.equal(r.registry, '[::1]:5000');
  assert.equal(parseReference('my-app.x.y/z').repository, 'z'); // first component has a dot: a host
  assert.equal(parseReference('my_app/z').repository, 'my_app/z'); // no dot/colon: Docker Hub path
});

const bad: Array<[string, RegExp]> = [
  ['', /empty/],
  ['UPPER', /lowercase/],
  ['docker.io/Library/x', /lowercase/],
  ['ubuntu:', /tag/],
  ['ubuntu:-x', /tag/],
  ['ubuntu:' + 't'.repeat(129), /tag/],
  ['ubuntu@sha256:abc', /digest/],
  ['ubuntu@sha256:' + 'A'.repeat(64), /64 lowercase/],
  ['a//b', /path component/],
  ['a/b/', /path component/],
  ['-a/b', /path component/],
  ['a b', /whitespace/],
  ['host_name.com:5000/x', /registry host/],
  ['localhost:port/x', /registry host/],
  ['a/' + 'b'.repeat(260), /longer than 255/],
];

test('malformed references → ERR_INVALID_REFERENCE naming the input', () => {
  for (const [s, why] of bad) {
    assert.throws(
      () => parseReference(s),
      (e: unknown) => isSociError(e, 'ERR_INVALID_REFERENCE') && e.message.startsWith(`invalid reference ${JSON.stringify(s)}`) && why.test(e.message),
      `expected ${JSON.stringify(s)} to be rejected with ${why}`,
    );
  }
});

test('isLocalhost', () => {
  for (const h of ['localhost', 'localhost:5000', '127.0.0.1', '127.0.0.1:5000', '127.1.2.3:1', '[::1]:5000', '::1']) assert.equal(isLocalhost(h), true, h);
  for (const h of ['example.com', '10.0.0.1:5000', 'localhost.example.com', '128.0.0.1']) assert.equal(isLocalhost(h), false, h);
});
