/**
 * Golden zTOC bytes: AWS's own soci CLI (`aws-soci convert --standalone`, built by
 * scripts/install-test-tools.sh) indexes an OCI layout holding every standard fixture layer in
 * every compression flavour; our buildZtoc + marshalZtoc must produce the identical bytes (hence
 * the identical digest) for each layer, with both compression engines.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { needs, tempDir } from '../helpers/env.js';
import { GZIP_VARIANTS, fileBytes, makeStandardLayers } from '../helpers/fixtures.js';
import { buildZtoc, marshalZtoc, unmarshalZtoc } from '../../src/ztoc/index.js';
import { nativeAvailable } from '../../src/compression/index.js';

const AWS = `${process.env.SOCI_TEST_TOOLS ?? '/opt/soci-test-tools/bin'}/aws-soci`;
const skip = needs({ tools: [AWS, 'python3', 'pigz'] });
const SPAN = 65536;

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** A minimal single-image OCI layout whose layers are the given blobs. */
function writeLayout(dir: string, layers: Array<{ bytes: Buffer; gzip: boolean }>): void {
  mkdirSync(join(dir, 'blobs', 'sha256'), { recursive: true });
  const put = (b: Buffer) => {
    const d = sha(b);
    writeFileSync(join(dir, 'blobs', 'sha256', d), b);
    return { digest: `sha256:${d}`, size: b.length };
  };
  const descs = layers.map((l) => ({ mediaType: `application/vnd.oci.image.layer.v1.tar${l.gzip ? '+gzip' : ''}`, ...put(l.bytes) }));
  const config = put(Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: descs.map((d) => d.digest) } })));
  const manifest = put(
    Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config }, layers: descs })),
  );
  writeFileSync(join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  writeFileSync(
    join(dir, 'index.json'),
    JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', ...manifest, annotations: { 'org.opencontainers.image.ref.name': 'latest' } }] }),
  );
}

test('golden: our zTOCs are byte-identical to AWS soci for every fixture layer and gzip flavour', { skip, timeout: 300_000 }, async (t) => {
  const dir = await tempDir(t, 'soci-ztoc-golden-');
  const layers = await makeStandardLayers(dir);
  const blobs: Array<{ path: string; gzip: boolean; label: string }> = [];
  for (const l of layers) {
    blobs.push({ path: l.tarPath, gzip: false, label: `${l.name}.tar` });
    for (const v of GZIP_VARIANTS) blobs.push({ path: l.variants[v], gzip: true, label: `${l.name}.${v}` });
  }
  const input = join(dir, 'layout');
  writeLayout(input, blobs.map((b) => ({ bytes: readFileSync(b.path), gzip: b.gzip })));
  mkdirSync(join(dir, 'aws-root'));
  const out = execFileSync(AWS, ['--root', join(dir, 'aws-root'), 'convert', '--standalone', '--format', 'oci-dir', '--min-layer-size', '0', '--span-size', String(SPAN), input, join(dir, 'aws-out')], {
    env: { ...process.env, TZ: 'UTC' },
    maxBuffer: 1 << 24,
  }).toString();
  const ztocOf = new Map<string, string>();
  for (const m of out.matchAll(/layer sha256:([0-9a-f]{64}) -> ztoc sha256:([0-9a-f]{64})/g)) ztocOf.set(m[1]!, m[2]!);
  assert.equal(ztocOf.size, blobs.length, `aws-soci indexed ${ztocOf.size} of ${blobs.length} layers:\n${out}`);

  const engines = nativeAvailable() ? (['native', 'js'] as const) : (['js'] as const);
  for (const b of blobs) {
    const want = ztocOf.get(sha(readFileSync(b.path)))!;
    const golden = readFileSync(join(dir, 'aws-out', 'blobs', 'sha256', want));
    for (const engine of engines) {
      const z = await buildZtoc(fileBytes(b.path), { compression: b.gzip ? 'gzip' : 'uncompressed', spanSize: SPAN, engine });
      const ours = marshalZtoc(z);
      assert.equal(ours.length, golden.length, `${b.label} (${engine}): zTOC size differs`);
      assert.ok(ours.equals(golden), `${b.label} (${engine}): zTOC bytes differ from AWS soci`);
    }
    // and decoding AWS's bytes re-encodes to the same bytes
    assert.ok(marshalZtoc(unmarshalZtoc(golden)).equals(golden), `${b.label}: decode→encode of the AWS zTOC differs`);
  }
});
