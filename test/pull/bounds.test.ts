/**
 * The download and unpack bounds, seen from outside the puller. Downloads: from the proxy's log,
 * each chunk GET spans from its arrival to its last body byte; a permit passes to the next chunk
 * only after that byte, so these spans overlap at most as often as the bound allows. The first
 * GETs are held at the proxy, so requests sent at once are seen at once and the bound is seen
 * reached (a pull serialised by mistake would fail), not only respected. Unpacks: the gzip tool is
 * a script that logs its start and end around `gzip -dc`; it runs from a layer's first read to its
 * end, inside the unpack permit. The layer downloads are held until the tools have started, so
 * every unpack that may run is running.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { needs, waitFor } from '../../harness/env.js';
import {
  assertTree,
  blobGets,
  holdGets,
  loggingGunzip,
  maxOverlap,
  pullAll,
  pullEnv,
  pushImage,
  randomFiles,
  sleep,
  spanOf,
  type PullEnv,
  type PushedImage,
} from './helpers.js';

const skip = needs({ root: true, tools: ['docker-registry', 'gzip'] });
const CHUNK = 64 * 1024;
/** how long nothing more may arrive once the bound is reached */
const QUIET_MS = 400;

async function threeLayers(env: PullEnv, repo: string): Promise<PushedImage> {
  return pushImage(
    env.direct,
    repo,
    ['base', 'mid', 'top'].map((p) => ({ files: randomFiles(p, 320 * 1024) })),
  );
}

/** A pull awaited later: a failed assertion before that must not leave its rejection unhandled. */
function background<T>(p: Promise<T>): Promise<T> {
  p.catch(() => undefined);
  return p;
}

const digests = (...imgs: PushedImage[]) => imgs.flatMap((i) => i.layers.map((l) => l.digest));

async function assertTrees(dirs: string[], img: PushedImage): Promise<void> {
  for (const [i, dir] of dirs.entries()) await assertTree(dir, img.layers[i]!.files, `${img.repo} layer ${i}`);
}

test('downloads: max_concurrent_downloads_per_image = 2 keeps one image at 2 chunk GETs in flight, and reaches 2', { skip, timeout: 120_000 }, async (t) => {
  const env = await pullEnv(t, { chunkSize: CHUNK, maxConcurrentDownloadsPerImage: 2 });
  const img = await threeLayers(env, 'bounds/one');
  const hold = holdGets(t, env.proxy, digests(img), 2);
  const pull = background(pullAll(env, img, 'image'));
  assert.ok(await waitFor(() => hold.arrived() >= 2, 20_000), 'two chunk GETs arrived');
  await sleep(QUIET_MS);
  assert.equal(hold.arrived(), 2, 'no third GET while two are held');
  hold.release();
  await assertTrees(await pull, img);

  const gets = blobGets(env.proxy, digests(img));
  assert.equal(
    gets.length,
    img.layers.reduce((n, l) => n + Math.ceil(l.size / CHUNK), 0),
    'one GET per chunk',
  );
  assert.equal(maxOverlap(gets.map(spanOf)), 2);
});

test('downloads: two images at once, max_concurrent_downloads = 3 (2 per image): never more than 3 overall, nor 2 for one image; both reached', {
  skip,
  timeout: 120_000,
}, async (t) => {
  const env = await pullEnv(t, { chunkSize: CHUNK, maxConcurrentDownloadsPerImage: 2, maxConcurrentDownloads: 3 });
  const [a, b] = [await threeLayers(env, 'bounds/a'), await threeLayers(env, 'bounds/b')];
  const hold = holdGets(t, env.proxy, digests(a, b), 3);
  const pulls = background(Promise.all([pullAll(env, a, 'image'), pullAll(env, b, 'image')]));
  assert.ok(await waitFor(() => hold.arrived() >= 3, 20_000), 'three chunk GETs arrived');
  await sleep(QUIET_MS);
  assert.equal(hold.arrived(), 3, 'no fourth GET while three are held');
  hold.release();
  const [dirsA, dirsB] = await pulls;
  await assertTrees(dirsA, a);
  await assertTrees(dirsB, b);

  assert.equal(maxOverlap(blobGets(env.proxy, digests(a, b)).map(spanOf)), 3, 'the daemon bound, reached');
  const perImage = [a, b].map((img) => maxOverlap(blobGets(env.proxy, digests(img)).map(spanOf)));
  assert.ok(
    perImage.every((n) => n <= 2),
    `each image within 2: ${perImage}`,
  );
  assert.equal(Math.max(...perImage), 2, 'the per-image bound, reached');
});

for (const [perImage, daemon, images] of [
  [1, -1, 1],
  [2, -1, 1],
  [2, 3, 2],
] as const) {
  test(`unpacks: max_concurrent_unpacks_per_image = ${perImage}${daemon > 0 ? `, max_concurrent_unpacks = ${daemon}` : ''}, ${images} image(s) of 3 layers: ${daemon > 0 ? daemon : perImage} at most, reached`, {
    skip,
    timeout: 120_000,
  }, async (t) => {
    const gunzip = await loggingGunzip(t);
    // Few downloads: held chunk GETs must leave the client's connections (8 per registry) free for
    // the next image's manifest and config, or its unpacks could not start while they are held.
    const env = await pullEnv(t, {
      chunkSize: CHUNK,
      maxConcurrentDownloadsPerImage: 2,
      maxConcurrentUnpacksPerImage: perImage,
      maxConcurrentUnpacks: daemon,
      tools: { gzip: gunzip.tool },
    });
    const imgs: PushedImage[] = [];
    for (let i = 0; i < images; i++) imgs.push(await threeLayers(env, `bounds/unpack${i}`));
    const bound = daemon > 0 ? daemon : perImage;
    const starts = async () => (await readFile(gunzip.log, 'utf8')).split('\n').filter((l) => l.startsWith('start')).length;
    const hold = holdGets(t, env.proxy, digests(...imgs), 1000);
    const pulls = background(Promise.all(imgs.map((img) => pullAll(env, img, 'image'))));
    assert.ok(await waitFor(async () => (await starts()) >= bound, 20_000), `${bound} unpacks started`);
    await sleep(QUIET_MS);
    assert.equal(await starts(), bound, 'no more while they wait for their bytes');
    hold.release();
    const dirs = await pulls;
    for (const [i, img] of imgs.entries()) await assertTrees(dirs[i]!, img);

    const spans = await gunzip.spans();
    assert.equal(spans.length, 3 * images, 'one decompressor per layer');
    assert.equal(maxOverlap(spans), bound);
  });
}
