/**
 * Local unpack under failure: a blob stream that throws (registry 404/500, reset connection, digest
 * mismatch at the end), corrupt gzip/zstd/tar data, or a stream that stalls. Every case must reject
 * with a one-line SociError; nothing may escape as an unhandled 'error' event or rejection (the
 * test process itself would die, and the snapshotter daemon with it).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { SociError } from '../../src/errors.js';
import { unpackLayer, type UnpackCompression } from '../../src/fs/unpack.js';
import { PullingUnpacker } from '../../src/snapshotter/local-unpacker.js';
import { ImagePuller } from '../../src/pull/index.js';
import { defaultConfig, parallelPullSettings } from '../../src/snapshotter/config.js';
import { LABELS } from '../../src/snapshotter/labels.js';
import type { RegistryClient } from '../../src/registry/index.js';
import { hasTool } from '../../harness/env.js';
import { pseudoRandom } from '../../harness/images.js';
import { digestOf } from '../../src/oci/digest.js';
import { silentLogger } from '../../src/logger.js';

// Anything that slips out as a process-level error fails this file loudly.
const stray: unknown[] = [];
process.on('uncaughtException', (e) => stray.push(e));
process.on('unhandledRejection', (e) => stray.push(e));

function layerTar(): Buffer {
  const src = execFileSync('mktemp', ['-d']).toString().trim();
  try {
    execFileSync('sh', ['-c', `mkdir -p ${src}/a/b && head -c 300000 /dev/urandom > ${src}/a/b/r.bin && echo hi > ${src}/a/t.txt`]);
    return execFileSync('tar', ['-C', src, '-cf', '-', 'a'], { maxBuffer: 1 << 26 });
  } finally {
    execFileSync('rm', ['-rf', src]);
  }
}

const TAR = layerTar();
const BLOBS: Record<UnpackCompression, Buffer> = {
  uncompressed: TAR,
  gzip: gzipSync(TAR),
  zstd: hasTool('zstd') ? execFileSync('zstd', ['-q', '-c'], { input: TAR }) : Buffer.alloc(0),
};

async function* chunks(b: Buffer, size = 16384): AsyncGenerator<Buffer> {
  for (let i = 0; i < b.length; i += size) {
    yield b.subarray(i, i + size);
    await new Promise((r) => setImmediate(r));
  }
}

/** The first `at` bytes, then the failure a registry client throws. */
async function* failing(b: Buffer, at: number, err = new SociError('ERR_NOT_FOUND', 'blob sha256:abc in r/x not found')): AsyncGenerator<Buffer> {
  yield* chunks(b.subarray(0, at));
  await new Promise((r) => setTimeout(r, 5));
  throw err;
}

async function scratchDir(t: { after: (fn: () => unknown) => void }): Promise<string> {
  const d = await mkdtemp(join(process.env.SOCI_TEST_TMP ?? tmpdir(), 'soci-unpack-err-'));
  t.after(() => rm(d, { recursive: true, force: true }));
  return d;
}

function assertOneLine(e: unknown, re: RegExp): true {
  assert.ok(e instanceof SociError, `a SociError, got ${String(e)}`);
  assert.ok(!e.message.includes('\n'), `one line: ${JSON.stringify(e.message)}`);
  assert.match(e.message, re);
  return true;
}

for (const c of ['gzip', 'uncompressed', 'zstd'] as const) {
  test(`unpackLayer (${c}): a source that fails at the start, mid-stream or at the end rejects with its error`, {
    skip: c === 'zstd' && !hasTool('zstd') ? 'needs zstd' : false,
  }, async (t) => {
    const b = BLOBS[c];
    for (const at of [0, 100, Math.floor(b.length / 2), b.length]) {
      const dir = await scratchDir(t);
      await assert.rejects(unpackLayer(failing(b, at), c, dir), (e) => assertOneLine(e, /blob sha256:abc in r\/x not found/), `failure after ${at} bytes`);
    }
    // a digest mismatch noticed after the last byte (as fetchBlob reports it)
    const dir = await scratchDir(t);
    await assert.rejects(unpackLayer(failing(b, b.length, new SociError('ERR_DIGEST_MISMATCH', 'digest mismatch')), c, dir), (e) =>
      assertOneLine(e, /digest mismatch/),
    );
    assert.deepEqual(stray, []);
  });

  test(`unpackLayer (${c}): corrupt data rejects with a one-line error; intact data still unpacks`, {
    skip: c === 'zstd' && !hasTool('zstd') ? 'needs zstd' : false,
  }, async (t) => {
    const b = Buffer.from(BLOBS[c]);
    b.fill(0x5a, 30, 600);
    await assert.rejects(unpackLayer(chunks(b), c, await scratchDir(t)), (e) => assertOneLine(e, /gzip|zstd|tar/i));
    // truncated
    await assert.rejects(unpackLayer(chunks(BLOBS[c].subarray(0, Math.floor(BLOBS[c].length / 3))), c, await scratchDir(t)), (e) => assertOneLine(e, /./));
    const ok = await scratchDir(t);
    const stats = await unpackLayer(chunks(BLOBS[c]), c, ok);
    assert.equal(stats.entries, 4);
    assert.deepEqual((await readdir(join(ok, 'a'))).sort(), ['b', 't.txt']);
    assert.deepEqual(stray, []);
  });
}

test('unpackLayer: the caller stopping early (worker failure) ends a stalled source without waiting for it', async (t) => {
  // Bad tar data (more than one 1 MiB transfer buffer, so the worker sees it) makes the worker fail,
  // while the source then never yields again.
  async function* stalls(): AsyncGenerator<Buffer> {
    yield Buffer.alloc(3 << 20, 0x41);
    await new Promise((r) => setTimeout(r, 60_000).unref());
  }
  const started = Date.now();
  await assert.rejects(unpackLayer(stalls(), 'uncompressed', await scratchDir(t)), (e) => assertOneLine(e, /tar/i));
  assert.ok(Date.now() - started < 10_000, 'did not wait for the stalled source');
  assert.deepEqual(stray, []);
});

/** A registry client double: manifest + config served, the layer stream scripted. */
function fakeClient(
  layer: Buffer,
  diffId: string,
  stream: () => AsyncGenerator<Buffer>,
): { client: RegistryClient; manifestDigest: string; layerDigest: string } {
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [diffId] } }));
  const layerDigest = digestOf(layer);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: digestOf(config), size: config.length },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: layerDigest, size: layer.length }],
    }),
  );
  const client = {
    getManifest: async () => ({ bytes: manifest, digest: digestOf(manifest), mediaType: 'application/vnd.oci.image.manifest.v1+json' }),
    registry: '127.0.0.1:5000',
    fetchBlob: (_repo: string, digest: string) => (digest === layerDigest ? stream() : chunks(config)),
    streamBlobRange: (_repo: string, digest: string) => (digest === layerDigest ? stream() : chunks(config)),
  } as unknown as RegistryClient;
  return { client, manifestDigest: digestOf(manifest), layerDigest };
}

/** The snapshotter's unpacker over `client`, with its staging and content dirs in a scratch dir. */
async function unpackerFor(
  t: { after: (fn: () => unknown) => void },
  client: RegistryClient,
): Promise<{ u: PullingUnpacker; leftovers: () => Promise<string[]> }> {
  const top = await scratchDir(t);
  const puller = await ImagePuller.open({
    stagingDir: join(top, 'staging'),
    contentDir: join(top, 'content'),
    clientFor: () => client,
    logger: silentLogger,
    settings: parallelPullSettings(defaultConfig()), // AWS's defaults, nothing kept
  });
  const leftovers = async () => [...(await readdir(join(top, 'staging'))), ...(await readdir(join(top, 'content', 'ingest')))];
  return { u: new PullingUnpacker(puller), leftovers };
}

test('PullingUnpacker: a layer download that fails rejects that unpack only, with a one-line error', async (t) => {
  const gz = BLOBS.gzip;
  const cases: Array<[string, () => AsyncGenerator<Buffer>, RegExp]> = [
    ['404 before any byte', () => failing(gz, 0), /not found/],
    ['reset mid-body', () => failing(gz, 5000, new SociError('ERR_NETWORK', 'blob x: ECONNRESET after 9 attempts')), /ECONNRESET/],
    ['corrupt gzip', () => chunks(Buffer.concat([gz.subarray(0, 40), pseudoRandom(4000, 3, 0), gz.subarray(4040)])), /gzip|digest/],
    ['short body', () => chunks(gz.subarray(0, 4000)), /fewer bytes than asked for/],
    ['one wrong byte', () => chunks(Buffer.concat([gz.subarray(0, 9000), Buffer.from([gz[9000]! ^ 1]), gz.subarray(9001)])), /gzip|digest|crc/i],
  ];
  for (const [name, stream, re] of cases) {
    const { client, manifestDigest, layerDigest } = fakeClient(gz, digestOf(TAR), stream);
    const { u, leftovers } = await unpackerFor(t, client);
    const labels = { [LABELS.imageRef]: '127.0.0.1:5000/r/x:v1', [LABELS.layerDigest]: layerDigest, [LABELS.manifestDigest]: manifestDigest };
    await assert.rejects(u.unpack(await scratchDir(t), [], labels, { namespace: 'default', key: 'k' }), (e) => assertOneLine(e, re), name);
    assert.deepEqual(await leftovers(), [], `${name}: nothing left in staging or ingest`);
  }
  // a wrong diff_id is caught after the stream
  const { client, manifestDigest, layerDigest } = fakeClient(gz, digestOf(Buffer.from('other')), () => chunks(gz));
  const { u } = await unpackerFor(t, client);
  const labels = { [LABELS.imageRef]: '127.0.0.1:5000/r/x:v1', [LABELS.layerDigest]: layerDigest, [LABELS.manifestDigest]: manifestDigest };
  await assert.rejects(u.unpack(await scratchDir(t), [], labels, { namespace: 'default', key: 'k' }), (e) => assertOneLine(e, /does not match diff_id/));
  // and an intact one unpacks
  const good = fakeClient(gz, digestOf(TAR), () => chunks(gz));
  const dir = await scratchDir(t);
  await (await unpackerFor(t, good.client)).u.unpack(
    dir,
    [],
    { ...labels, [LABELS.layerDigest]: good.layerDigest, [LABELS.manifestDigest]: good.manifestDigest },
    { namespace: 'default', key: 'k' },
  );
  assert.deepEqual((await readdir(join(dir, 'a'))).sort(), ['b', 't.txt']);
  assert.deepEqual(stray, []);
});
