/**
 * `soci convert` registry → registry, `soci create` + `soci push` (v1 + referrers fallback), against the
 * real CNCF registry, with auth and faults. The standalone conversion of the same layout is the reference:
 * both paths must produce the same image index digest.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { needs, tempDir } from '../../harness/env.js';
import { buildLayout, pseudoRandom, type LayoutSpec } from '../../harness/images.js';
import { startRegistry, type TestRegistry } from '../../harness/registry.js';
import { startFaultProxy } from '../../harness/fault-proxy.js';
import { SOCI_BIN, soci as runSoci, sociFail as failSoci } from '../../harness/soci-cli.js';

const exec = promisify(execFile);
const soci = (root: string, args: string[]) => runSoci(root, args, { bin: true });
const sociFail = (root: string, args: string[]) => failSoci(root, args, { bin: true });
const skip = needs({ tools: ['docker-registry', 'skopeo'] });
const MB = 1 << 20;

async function pushLayout(reg: TestRegistry, dir: string, ref: string, creds?: string) {
  await exec('skopeo', [
    'copy',
    '--all',
    '--preserve-digests',
    '--dest-tls-verify=false',
    ...(creds ? ['--dest-creds', creds] : []),
    `oci:${dir}:latest`,
    `docker://${reg.host}/${ref}`,
  ]);
}
async function inspectRaw(reg: TestRegistry, ref: string): Promise<any> {
  return JSON.parse((await exec('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${reg.host}/${ref}`])).stdout);
}

const SPEC: LayoutSpec = {
  images: [
    { platform: { os: 'linux', architecture: 'amd64' }, layers: [{ files: { 'app/big': pseudoRandom(12 * MB, 21, 0.3) } }, { files: { 'app/small': 'x' } }] },
    { platform: { os: 'linux', architecture: 'arm64' }, layers: [{ files: { 'app/big': pseudoRandom(12 * MB, 22, 0.3) } }] },
  ],
};

test('convert registry → registry equals standalone conversion; layers/configs unchanged; idempotent', { skip, timeout: 600_000 }, async (t) => {
  const tmp = await tempDir(t);
  const reg = await startRegistry(t);
  const layout = buildLayout(join(tmp, 'in'), SPEC);
  await pushLayout(reg, layout.dir, 'src/app:v1');

  const r = await soci(join(tmp, 'root'), ['convert', '--remote', '--all-platforms', '--json', `${reg.host}/src/app:v1`, `${reg.host}/dst/app:v1`]);
  const result = JSON.parse(r.stdout);
  await soci(join(tmp, 'root'), ['convert', '--standalone', '--all-platforms', '--format', 'oci-dir', layout.dir, join(tmp, 'out')]);
  const standalone = JSON.parse(readFileSync(join(tmp, 'out', 'index.json'), 'utf8')).manifests[0];
  assert.equal(result.digest, standalone.digest);

  const idx = await inspectRaw(reg, 'dst/app:v1');
  assert.equal(idx.mediaType, 'application/vnd.oci.image.index.v1+json');
  const socis = idx.manifests.filter((m: any) => m.artifactType === 'application/vnd.amazon.soci.index.v2+json');
  const images = idx.manifests.filter((m: any) => !m.artifactType);
  assert.equal(socis.length, 2);
  assert.equal(images.length, 2);
  for (const [i, img] of images.entries()) {
    const m = await inspectRaw(reg, `dst/app@${img.digest}`);
    assert.deepEqual(
      m.layers.map((l: any) => l.digest),
      layout.layers[i],
    );
    const orig = JSON.parse(readFileSync(join(layout.dir, 'blobs', 'sha256', layout.manifests[i]!.slice(7)), 'utf8'));
    assert.equal(m.config.digest, orig.config.digest);
    const sociDesc = socis.find((s: any) => s.annotations['com.amazon.soci.image-manifest-digest'] === img.digest);
    assert.equal(m.annotations['com.amazon.soci.index-digest'], sociDesc.digest);
    // zTOCs in the registry are byte-identical to the standalone ones.
    const sociManifest = await inspectRaw(reg, `dst/app@${sociDesc.digest}`);
    for (const z of sociManifest.layers) {
      const got = await exec('curl', ['-sf', `${reg.url}/v2/dst/app/blobs/${z.digest}`], { encoding: 'buffer', maxBuffer: 1 << 26 });
      assert.ok(got.stdout.equals(readFileSync(join(tmp, 'out', 'blobs', 'sha256', z.digest.slice(7)))));
    }
  }
  // Converting again gives the same digest; converting the converted image too.
  const again = JSON.parse(
    (await soci(join(tmp, 'root'), ['convert', '--remote', '--all-platforms', '--json', `${reg.host}/src/app:v1`, `${reg.host}/dst/app:v2`])).stdout,
  );
  assert.equal(again.digest, result.digest);
  const reconv = JSON.parse(
    (await soci(join(tmp, 'root'), ['convert', '--remote', '--all-platforms', '--json', `${reg.host}/dst/app:v1`, `${reg.host}/dst/app:v3`])).stdout,
  );
  assert.equal(reconv.digest, result.digest);
});

test('create + push: v1 index discoverable through the referrers fallback tag; --existing-index', { skip, timeout: 600_000 }, async (t) => {
  const tmp = await tempDir(t);
  const reg = await startRegistry(t);
  const layout = buildLayout(join(tmp, 'in'), { images: [SPEC.images[0]!] });
  await pushLayout(reg, layout.dir, 'app:v1');
  const root = join(tmp, 'root');
  await soci(root, ['create', '--remote', '-q', `${reg.host}/app:v1`]);
  const indexDigest = (await soci(root, ['index', 'ls', '-q'])).stdout.trim();
  const pushed = await soci(root, ['push', '-q', `${reg.host}/app:v1`]);
  assert.equal(pushed.stdout.trim(), indexDigest);
  const fallback = await inspectRaw(reg, `app:${layout.manifests[0]!.replace(':', '-')}`);
  assert.equal(fallback.manifests.length, 1);
  assert.equal(fallback.manifests[0].digest, indexDigest);
  assert.equal(fallback.manifests[0].artifactType, 'application/vnd.amazon.soci.index.v1+json');
  const idx = await inspectRaw(reg, `app@${indexDigest}`);
  assert.equal(idx.subject.digest, layout.manifests[0]);
  // a second, different index (other span size) meets the existing one
  await soci(root, ['create', '--remote', '-q', '--span-size', String(MB), `${reg.host}/app:v1`]);
  const skipped = await soci(root, ['push', '--existing-index', 'skip', `${reg.host}/app:v1`]);
  // AWS's lines, on stdout
  assert.match(
    skipped.stdout,
    /^checking if a soci index already exists in remote repository\.\.\.\nsoci index found in remote repository with digest: sha256:[0-9a-f]{64}: skipping pushing artifacts for image manifest: sha256:/,
  );
  assert.equal((await inspectRaw(reg, `app:${layout.manifests[0]!.replace(':', '-')}`)).manifests.length, 1);
  const warned = await soci(root, ['push', `${reg.host}/app:v1`]);
  assert.match(
    warned.stdout,
    /\[WARN\] soci index found in remote repository with digest: sha256:[0-9a-f]{64}: pushing index anyway\npushing soci index with digest: sha256:/,
  );
  assert.match(warned.stdout, /successfully pushed artifact with digest: sha256:/);
  assert.equal((await inspectRaw(reg, `app:${layout.manifests[0]!.replace(':', '-')}`)).manifests.length, 2);
});

test('auth: Basic credentials work; wrong password fails naming the registry, never printing it', { skip, timeout: 300_000 }, async (t) => {
  const tmp = await tempDir(t);
  const reg = await startRegistry(t, { auth: 'htpasswd' });
  const layout = buildLayout(join(tmp, 'in'), { images: [SPEC.images[0]!] });
  await pushLayout(reg, layout.dir, 'app:v1', `${reg.user}:${reg.password}`);
  await soci(join(tmp, 'root'), ['convert', '--remote', '-q', '-u', `${reg.user}:${reg.password}`, `${reg.host}/app:v1`, `${reg.host}/app:soci`]);
  const bad = await sociFail(join(tmp, 'root'), ['convert', '--remote', '-u', `${reg.user}:wrong-secret-xyz`, `${reg.host}/app:v1`, `${reg.host}/app:soci2`]);
  assert.equal(bad.stderr.trim().split('\n').length, 1, bad.stderr);
  assert.match(bad.stderr, new RegExp(`^soci: .*${reg.host.replace(/\./g, '\\.')}`));
  assert.doesNotMatch(bad.stderr, /wrong-secret-xyz/);
  const bad2 = await sociFail(join(tmp, 'root'), ['convert', '--remote', `${reg.host}/app:v1`, `${reg.host}/app:soci3`]);
  assert.match(bad2.stderr, /auth/i);
});

test('bad input and faults: malformed refs, unknown tags, wrong bytes never pushed, transient errors retried', { skip, timeout: 300_000 }, async (t) => {
  const tmp = await tempDir(t);
  const reg = await startRegistry(t);
  const root = join(tmp, 'root');
  assert.match((await sociFail(root, ['convert', '--remote', 'Bad Ref!!', `${reg.host}/x:y`])).stderr, /^soci: invalid reference/);
  assert.match(
    (await sociFail(root, ['convert', '--remote', `${reg.host}/a:b`, `${reg.host}/x@sha256:${'a'.repeat(64)}`])).stderr,
    /must be a tagged ref .*must not contain a digest/,
  );
  assert.match((await sociFail(root, ['convert', '--remote', `${reg.host}/nope:missing`, `${reg.host}/x:y`])).stderr, /^soci: .*not found/i);

  const layout = buildLayout(join(tmp, 'in'), { images: [SPEC.images[0]!] });
  await pushLayout(reg, layout.dir, 'app:v1');
  const proxy = await startFaultProxy(t, reg.host);
  const bigLayer = layout.layers[0]![0]!;
  // wrong bytes on every layer download: conversion fails, nothing tagged at the destination
  proxy.add({ method: 'GET', path: `/blobs/${bigLayer}`, times: 1000, fault: { kind: 'flip', offset: 5000 } });
  const r = await sociFail(root, ['convert', '--remote', '-q', `${proxy.host}/app:v1`, `${proxy.host}/app:bad`]);
  assert.match(r.stderr, new RegExp(`^soci: .*${bigLayer}`));
  await assert.rejects(inspectRaw(reg, 'app:bad'));
  // transient faults are retried and the result is the normal one
  proxy.clear();
  proxy.add({ method: 'GET', path: '/manifests/', times: 2, fault: { kind: 'status', status: 503 } });
  proxy.add({ method: 'GET', path: `/blobs/${bigLayer}`, times: 1, fault: { kind: 'reset', afterBytes: 100_000 } });
  proxy.add({ method: 'GET', path: `/blobs/${bigLayer}`, times: 1, fault: { kind: 'status', status: 429, retryAfter: '1' } });
  const ok = JSON.parse((await soci(root, ['convert', '--remote', '--json', `${proxy.host}/app:v1`, `${proxy.host}/app:good`])).stdout);
  // ztoc get-file reads the layer from the registry it was converted from: a flipped bit in a Range
  // response is refused (span digest), never printed; without the fault the file comes back right.
  const ztoc = ok.indexes[0].ztocs[0].digest as string;
  proxy.clear();
  proxy.add({ method: 'GET', path: `/blobs/${bigLayer}`, times: 1000, fault: { kind: 'flip', offset: 100 } });
  const flipped = await sociFail(root, ['ztoc', 'get-file', ztoc, 'app/big']);
  assert.match(flipped.stderr, /^soci: span \d+ of layer sha256:[0-9a-f]{64} does not match its zTOC digest\n$/);
  proxy.clear();
  const file = await exec(process.execPath, [SOCI_BIN, '--root', root, 'ztoc', 'get-file', ztoc, 'app/big'], { maxBuffer: 1 << 26, encoding: 'buffer' });
  assert.ok((file.stdout as Buffer).subarray(0, 12 * MB).equals(pseudoRandom(12 * MB, 21, 0.3)));
  await soci(root, ['convert', '--standalone', '--format', 'oci-dir', layout.dir, join(tmp, 'out')]);
  assert.equal(ok.digest, JSON.parse(readFileSync(join(tmp, 'out', 'index.json'), 'utf8')).manifests[0].digest);
});
