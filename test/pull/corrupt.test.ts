/**
 * One wrong byte in one chunk (fault `flip`): the pull fails with a one-line SociError naming the
 * blob, and nothing of the layer is left (no download in ingest, no kept blob, no staged dir). In
 * a gzip layer the byte sits in a stored (incompressible) block, so the decoder only notices at
 * the trailer's CRC; in an uncompressed layer nothing but the blob digest can notice.
 */
import { mock, test } from 'node:test';
import assert from 'node:assert/strict';
import { needs, waitFor } from '../../harness/env.js';
import { decompressTools } from '../../src/pull/index.js';
import { assertTree, blobGets, jobs, pulled, pullAll, type PushedLayer, leftovers, oneLine, pullEnv, pushImage, randomFiles, target } from './helpers.js';

const skip = needs({ root: true, tools: ['docker-registry', 'unpigz'] });
const CHUNK = 64 * 1024;
const FLIP_CHUNK = 4;

const DECODERS = {
  unpigz: decompressTools({}),
  'node:zlib': decompressTools({}, { ...process.env, CONTAINERD_DISABLE_PIGZ: '1' }),
};

for (const [compression, decoder] of [
  ['gzip', 'unpigz'],
  ['gzip', 'node:zlib'],
  ['none', 'none'],
] as const) {
  test(`layer(): a flipped byte in ${compression === 'none' ? 'an uncompressed layer' : `a gzip layer (${decoder})`} fails on the blob digest; nothing is left`, {
    skip,
    timeout: 120_000,
  }, async (t) => {
    const env = await pullEnv(t, { chunkSize: CHUNK, ...(decoder === 'none' ? {} : { tools: DECODERS[decoder] }) });
    const img = await pushImage(env.direct, `corrupt/${compression}`, [{ files: randomFiles('app', 1024 * 1024), compression }]);
    const layer = img.layers[0]!;
    env.proxy.add({
      method: 'GET',
      path: `/blobs/${layer.digest}`,
      headers: { range: `bytes=${FLIP_CHUNK * CHUNK}-` },
      fault: { kind: 'flip', offset: 12_345 },
    });
    const dir = await env.snapshotDir();
    await assert.rejects(env.puller.layer(target(env, img, 0), dir), (e) => oneLine(e, new RegExp(`blob ${layer.digest}.*digest`)));
    assert.equal(blobGets(env.proxy, [layer.digest]).filter((r) => r.fault === 'flip').length, 1, 'the flip was served');
    assert.deepEqual(await leftovers(env), { staging: [], ingest: [], blobs: [] });
    await waitFor(() => jobs(env) === 0, 2000);
    assert.equal(jobs(env), 0, 'the failed image is forgotten');
  });
}

for (const decoder of ['unpigz', 'node:zlib'] as const) {
  test(`layer(): a gzip layer broken in the image itself (its digest matches) fails on gzip (${decoder}); nothing is left`, {
    skip,
    timeout: 120_000,
  }, async (t) => {
    const env = await pullEnv(t, { chunkSize: CHUNK, tools: DECODERS[decoder] });
    const img = await pushImage(env.direct, 'corrupt/image-bad', [{ files: randomFiles('app', 512 * 1024), alter: (b) => void (b[b.length >> 1]! ^= 0xff) }]);
    await assert.rejects(env.puller.layer(target(env, img, 0), await env.snapshotDir()), (e) => oneLine(e, /gzip/));
    assert.deepEqual(await leftovers(env), { staging: [], ingest: [], blobs: [] });
  });
}

test('image(): a flipped byte in the first layer fails its Prepare; the layers above stay staged, verified, for a retried pull to claim', {
  skip,
  timeout: 120_000,
}, async (t) => {
  const env = await pullEnv(t, { chunkSize: CHUNK });
  const layers = [randomFiles('base', 600 * 1024), randomFiles('mid', 300 * 1024), randomFiles('top', 300 * 1024)];
  const img = await pushImage(
    env.direct,
    'corrupt/image',
    layers.map((files) => ({ files })),
  );
  const [base, ...above] = img.layers as [PushedLayer, ...PushedLayer[]];
  env.proxy.add({ method: 'GET', path: `/blobs/${base.digest}`, headers: { range: `bytes=${2 * CHUNK}-` }, fault: { kind: 'flip', offset: 777 } });
  await assert.rejects(env.puller.image(target(env, img, 0), await env.snapshotDir()), (e) => oneLine(e, new RegExp(`blob ${base.digest}.*digest`)));

  // The layers above go on: verified, unpacked into staging, their blobs kept, nothing in ingest.
  assert.ok(await waitFor(() => pulled(env) === 2, 30_000), 'the other layers finished');
  await waitFor(async () => (await leftovers(env)).ingest.length === 0, 2000);
  const left = await leftovers(env);
  assert.equal(left.staging.length, 2, 'two staged layers');
  assert.deepEqual(left.ingest, []);
  assert.deepEqual(left.blobs.sort(), above.map((l) => l.digest.slice(7)).sort(), 'only the verified blobs are kept');
  assert.equal(jobs(env), 1, 'the image is remembered while layers wait to be claimed');

  // containerd pulls again: the first layer is fetched anew, the others come from staging.
  const gets = blobGets(
    env.proxy,
    img.layers.map((l) => l.digest),
  ).length;
  const dirs = await pullAll(env, img, 'image');
  for (const [i, dir] of dirs.entries()) await assertTree(dir, layers[i]!, `layer ${i}`);
  const again = blobGets(
    env.proxy,
    img.layers.map((l) => l.digest),
  ).slice(gets);
  assert.ok(again.length > 0 && again.every((r) => r.path.endsWith(base.digest)), 'only the failed layer is downloaded again');
  assert.deepEqual((await leftovers(env)).staging, []);
  assert.equal(jobs(env), 0);
});

test('image(): staged layers nobody claims after a failed Prepare are removed after their time to live', {
  skip,
  timeout: 120_000,
}, async (t) => {
  const env = await pullEnv(t, { chunkSize: CHUNK, discardUnpackedLayers: true });
  const img = await pushImage(env.direct, 'corrupt/expire', [{ files: randomFiles('base', 300 * 1024) }, { files: randomFiles('top', 300 * 1024) }]);
  const base = img.layers[0]!;
  // The top layer's download waits until the clock is mocked, so the time to live is set on the mocked clock.
  let go!: () => void;
  const gate = new Promise<void>((r) => (go = r));
  env.proxy.add({ method: 'GET', path: `/blobs/${img.layers[1]!.digest}`, times: 100, fault: { kind: 'hold', until: gate } });
  env.proxy.add({ method: 'GET', path: `/blobs/${base.digest}`, headers: { range: 'bytes=0-' }, fault: { kind: 'flip', offset: 20_000 } });
  await assert.rejects(env.puller.image(target(env, img, 0), await env.snapshotDir()), (e) => oneLine(e, /digest/));
  mock.timers.enable({ apis: ['setTimeout'] });
  t.after(() => mock.timers.reset());
  go();
  // setTimeout is mocked: poll on setImmediate.
  const until = async (ok: () => boolean | Promise<boolean>) => {
    for (let n = 0; n < 1_000_000 && !(await ok()); n++) await new Promise((r) => setImmediate(r));
    assert.ok(await ok());
  };
  await until(() => pulled(env) === 1);
  assert.equal((await leftovers(env)).staging.length, 1, 'the top layer is staged');
  mock.timers.tick(9 * 60 * 1000);
  assert.equal((await leftovers(env)).staging.length, 1, 'still staged before its time to live');
  mock.timers.tick(2 * 60 * 1000);
  await until(async () => (await leftovers(env)).staging.length === 0);
  assert.deepEqual(await leftovers(env), { staging: [], ingest: [], blobs: [] });
  assert.equal(jobs(env), 0, 'the image is forgotten');
});
