/**
 * Golden byte-compatibility: AWS's own `soci convert --standalone` (v0.16.1, built by
 * scripts/install-test-tools.sh) and ours must write the same image index digest and the same blobs
 * (zTOCs, SOCI indexes, rewritten manifests) for the same input layouts, and re-conversion must be
 * idempotent in both. Also checks skopeo/umoci accept our output.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { readFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { needs, tempDir } from '../../harness/env.js';
import { buildLayout, pseudoRandom, type LayoutSpec } from '../../harness/images.js';

const run = promisify(execFile);
const AWS = `${process.env.SOCI_TEST_TOOLS ?? '/opt/soci-test-tools/bin'}/aws-soci`;
const skip = needs({ tools: [AWS, 'skopeo', 'umoci', 'zstd'] });
const SOCI = join(process.cwd(), 'bin/soci.js');

async function aws(root: string, args: string[]) {
  return run(AWS, ['--root', root, ...args], { maxBuffer: 1 << 26 });
}
async function ours(root: string, args: string[]) {
  return run(process.execPath, [SOCI, '--root', root, ...args], { maxBuffer: 1 << 26 });
}

/**
 * The blobs reachable from index.json (index → manifests → config/layers). AWS also leaves unreferenced
 * blobs behind (on re-conversion it rewrites the old SOCI index as if it were an image manifest); only
 * the reachable graph is the image.
 */
function blobs(dir: string): Map<string, Buffer> {
  const m = new Map<string, Buffer>();
  const read = (d: string) => readFileSync(join(dir, 'blobs', 'sha256', d.slice(7)));
  const visit = (d: { digest: string; mediaType: string }) => {
    if (m.has(d.digest.slice(7))) return;
    const bytes = read(d.digest);
    m.set(d.digest.slice(7), bytes);
    if (d.mediaType.endsWith('index.v1+json') || d.mediaType.endsWith('manifest.list.v2+json')) {
      for (const x of JSON.parse(bytes.toString('utf8')).manifests) visit(x);
    } else if (d.mediaType.endsWith('manifest.v1+json') || d.mediaType.endsWith('manifest.v2+json')) {
      const j = JSON.parse(bytes.toString('utf8'));
      visit(j.config);
      for (const l of j.layers) visit(l);
    }
  };
  for (const d of JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8')).manifests) visit(d);
  return m;
}

async function compare(t: { after: (fn: () => unknown) => void }, spec: LayoutSpec | string, flags: string[]): Promise<{ awsOut: string; ourOut: string }> {
  const tmp = await tempDir(t);
  const input = typeof spec === 'string' ? spec : buildLayout(join(tmp, 'in'), spec).dir;
  const awsOut = join(tmp, 'aws-out');
  const ourOut = join(tmp, 'our-out');
  mkdirSync(join(tmp, 'aws-root'));
  await aws(join(tmp, 'aws-root'), ['convert', '--standalone', '--format', 'oci-dir', ...flags, input, awsOut]);
  await ours(join(tmp, 'our-root'), ['convert', '--standalone', '--format', 'oci-dir', ...flags, input, ourOut]);
  const a = readFileSync(join(awsOut, 'index.json'), 'utf8');
  const b = readFileSync(join(ourOut, 'index.json'), 'utf8');
  assert.equal(b, a, `index.json (and so the converted image digest) differs from AWS soci for ${flags.join(' ')}`);
  const ab = blobs(awsOut);
  const bb = blobs(ourOut);
  for (const [d, bytes] of ab) {
    assert.ok(bb.has(d), `blob sha256:${d} written by AWS soci is missing from ours`);
    assert.ok(bb.get(d)!.equals(bytes), `blob sha256:${d} differs`);
  }
  assert.deepEqual([...bb.keys()].sort(), [...ab.keys()].sort());
  return { awsOut, ourOut };
}

const MB = 1 << 20;

test('golden: gzip/uncompressed/zstd/small layers, defaults', { skip, timeout: 600_000 }, async (t) => {
  await compare(
    t,
    {
      images: [
        {
          layers: [
            {
              files: { 'usr/bin/big': pseudoRandom(14 * MB, 1, 0.3), 'usr/share/doc/a.txt': 'hello <world> & "friends"\n', 'usr/bin/link': { symlink: 'big' } },
              dotSlash: true,
            },
            { files: { 'etc/small.conf': 'x=1\n' } },
            { files: { 'opt/raw.bin': pseudoRandom(11 * MB, 2, 0.9) }, compression: 'none' },
            { files: { 'opt/z.bin': pseudoRandom(12 * MB, 3) }, compression: 'zstd' },
          ],
        },
      ],
    },
    [],
  );
});

test('golden: docker media types, multi-platform, --all-platforms and --platform', { skip, timeout: 600_000 }, async (t) => {
  const spec: LayoutSpec = {
    docker: true,
    images: [
      { platform: { os: 'linux', architecture: 'amd64' }, layers: [{ files: { 'a/big': pseudoRandom(11 * MB, 4, 0.2) } }, { files: { 'a/s': 'small' } }] },
      { platform: { os: 'linux', architecture: 'arm64', variant: 'v8' }, layers: [{ files: { 'b/big': pseudoRandom(11 * MB, 5, 0.2) } }] },
    ],
  };
  await compare(t, spec, ['--all-platforms']);
  await compare(t, spec, ['--platform', 'linux/arm64']);
});

test('golden: small spans, min-layer-size 0, xattr optimization, prefetch files; re-conversion is idempotent', { skip, timeout: 600_000 }, async (t) => {
  const spec: LayoutSpec = {
    images: [
      {
        layers: [
          { files: { 'app/server.js': 'console.log(1)\n'.repeat(5000), 'app/data.bin': pseudoRandom(3 * MB, 6, 0.5), 'app/.wh.gone': '' } },
          { files: { 'lib/x.so': pseudoRandom(2 * MB, 7, 0.4), 'lib/y.so': pseudoRandom(700_000, 8, 0.1) } },
        ],
      },
    ],
  };
  const flags = [
    '--min-layer-size',
    '0',
    '--span-size',
    '65536',
    '--optimizations',
    'xattr',
    '--prefetch-file',
    '/app/server.js',
    '--prefetch-file',
    'lib/y.so',
  ];
  const { awsOut, ourOut } = await compare(t, spec, flags);
  // Converting the converted image again: same digest, with both tools.
  const again = await compare(t, awsOut, flags);
  assert.equal(readFileSync(join(again.ourOut, 'index.json'), 'utf8'), readFileSync(join(ourOut, 'index.json'), 'utf8'));
});

test('converted output is a valid image for skopeo and umoci; layers and config unchanged', { skip, timeout: 600_000 }, async (t) => {
  const tmp = await tempDir(t);
  const built = buildLayout(join(tmp, 'in'), {
    images: [{ layers: [{ files: { 'srv/big': pseudoRandom(11 * MB, 9, 0.3), 'srv/hello.txt': 'hi there\n' } }] }],
  });
  const out = join(tmp, 'out');
  await ours(join(tmp, 'root'), ['convert', '--standalone', '--format', 'oci-dir', built.dir, out]);
  const raw = JSON.parse((await run('skopeo', ['inspect', '--raw', `oci:${out}`])).stdout);
  assert.equal(raw.mediaType, 'application/vnd.oci.image.index.v1+json');
  const soci = raw.manifests.find((m: any) => m.artifactType === 'application/vnd.amazon.soci.index.v2+json');
  const img = raw.manifests.find((m: any) => !m.artifactType);
  assert.ok(soci && img);
  assert.equal(soci.annotations['com.amazon.soci.image-manifest-digest'], img.digest);
  const inspect = JSON.parse((await run('skopeo', ['inspect', `oci:${out}`])).stdout);
  assert.deepEqual(inspect.Layers, built.layers[0]);
  await run('skopeo', ['copy', `oci:${out}`, `oci:${join(tmp, 'flat')}:latest`]);
  await run('umoci', ['unpack', '--rootless', '--image', `${join(tmp, 'flat')}:latest`, join(tmp, 'bundle')]);
  assert.equal(readFileSync(join(tmp, 'bundle', 'rootfs', 'srv', 'hello.txt'), 'utf8'), 'hi there\n');
  // oci-archive output holds the same image index.
  await ours(join(tmp, 'root'), ['convert', '--standalone', built.dir, join(tmp, 'out.tar')]);
  const raw2 = JSON.parse((await run('skopeo', ['inspect', '--raw', `oci-archive:${join(tmp, 'out.tar')}`])).stdout);
  assert.deepEqual(raw2, raw);
});
