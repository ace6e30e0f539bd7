/**
 * The registry dying in the middle of a chunk: a chunk's response is cut (connection reset, or a
 * short body that ends cleanly) after some bytes while other chunks of the layer are in flight.
 * The chunk's retry asks for the rest of the chunk only (its Range starts where the cut was and
 * ends at the chunk's end), so the registry sends the chunk about once, not twice, and the
 * unpacked tree is exactly what went into the layer.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { needs } from '../../harness/env.js';
import { assertTree, blobGets, leftovers, maxOverlap, pullAll, pullEnv, pushImage, randomFiles, rangeOf, spanOf, target } from './helpers.js';

const skip = needs({ root: true, tools: ['docker-registry', 'unpigz'] });
const CHUNK = 64 * 1024;
/** a chunk well inside the layer, so chunks before and after it are in flight around it */
const CUT_CHUNK = 5;
const CUT_AFTER = 40_000;

for (const kind of ['reset', 'truncate'] as const) {
  test(`layer(): a chunk ${kind === 'reset' ? 'reset' : 'cut short'} after ${CUT_AFTER} bytes resumes from there; the tree is byte-exact`, {
    skip,
    timeout: 120_000,
  }, async (t) => {
    const env = await pullEnv(t, { chunkSize: CHUNK, maxConcurrentDownloadsPerImage: 4 });
    const files = randomFiles('app', 1024 * 1024);
    const img = await pushImage(env.direct, `resume/${kind}`, [{ files }]);
    const layer = img.layers[0]!;
    assert.ok(layer.size > 14 * CHUNK, `a layer of many chunks (${layer.size} bytes)`);
    const chunkStart = CUT_CHUNK * CHUNK;
    const chunkLast = chunkStart + CHUNK - 1;
    env.proxy.add({
      method: 'GET',
      path: `/blobs/${layer.digest}`,
      headers: { range: `bytes=${chunkStart}-${chunkLast}` },
      fault: { kind, afterBytes: CUT_AFTER },
    });

    const dir = await env.snapshotDir();
    await env.puller.layer(target(env, img, 0), dir);
    await assertTree(dir, files);

    const gets = blobGets(env.proxy, [layer.digest]);
    const cut = gets.filter((r) => r.fault === kind);
    assert.equal(cut.length, 1, 'the fault hit one request');
    assert.deepEqual(rangeOf(cut[0]!), [chunkStart, chunkLast]);
    assert.equal(cut[0]!.bytes, CUT_AFTER, 'the proxy sent that many bytes of it, then cut');
    // The retry: the only other request that ends at the chunk's end, sent after the cut.
    const retries = gets.filter((r) => r !== cut[0] && rangeOf(r)[1] === chunkLast);
    assert.equal(retries.length, 1, `one retry for the chunk: ${retries.map((r) => r.headers.range).join(', ')}`);
    const [from, to] = rangeOf(retries[0]!);
    assert.equal(to, chunkLast, 'the retry ends at the chunk end');
    assert.ok(from > chunkStart, `the retry starts past the chunk start (${from} > ${chunkStart})`);
    // A clean short body is all read before the end; a reset can drop bytes in the receiver's buffer.
    if (kind === 'truncate') assert.equal(from, chunkStart + CUT_AFTER, 'the retry starts at the byte the body broke at');
    else assert.ok(from <= chunkStart + CUT_AFTER, `the retry asks for nothing past the cut (${from})`);
    // Resume, not restart: the registry sent the chunk about once.
    const sent = cut[0]!.bytes + retries[0]!.bytes;
    assert.equal(retries[0]!.bytes, chunkLast + 1 - from, 'the retry got what it asked for');
    assert.ok(sent < CHUNK + CUT_AFTER, `${sent} bytes sent for a chunk of ${CHUNK} (a restart would send ${CHUNK + CUT_AFTER})`);
    if (kind === 'truncate') assert.equal(sent, CHUNK, 'not a byte twice');

    // Every other chunk was asked for once, exactly its own range, and several were in flight at once.
    const chunks = Math.ceil(layer.size / CHUNK);
    const firsts = gets.filter((r) => r !== retries[0]).map(rangeOf);
    assert.deepEqual(
      firsts.map(([a]) => a).sort((a, b) => a - b),
      Array.from({ length: chunks }, (_, i) => i * CHUNK),
    );
    assert.ok(maxOverlap(gets.map(spanOf)) > 1, 'chunks overlapped');
    assert.ok(maxOverlap(gets.map(spanOf)) <= 4, 'within the per-image bound');
    // The verified blob is kept; nothing else is left.
    assert.deepEqual(await leftovers(env), { staging: [], ingest: [], blobs: [layer.digest.slice(7)] });
  });
}

test('image(): a reset chunk in one layer and a cut one in another, while all layers download; every tree is byte-exact', {
  skip,
  timeout: 120_000,
}, async (t) => {
  const env = await pullEnv(t, { chunkSize: CHUNK, maxConcurrentDownloadsPerImage: 4, discardUnpackedLayers: true });
  const layers = [randomFiles('base', 600 * 1024), randomFiles('mid', 600 * 1024), randomFiles('top', 600 * 1024)];
  const img = await pushImage(
    env.direct,
    'resume/image',
    layers.map((files) => ({ files })),
  );
  const [base, top] = [img.layers[0]!, img.layers[2]!];
  const range = `bytes=${3 * CHUNK}-${4 * CHUNK - 1}`;
  env.proxy.add({ method: 'GET', path: `/blobs/${base.digest}`, headers: { range }, fault: { kind: 'reset', afterBytes: 1000 } });
  env.proxy.add({ method: 'GET', path: `/blobs/${top.digest}`, headers: { range }, fault: { kind: 'truncate', afterBytes: 20_000 } });

  const dirs = await pullAll(env, img, 'image');
  for (const [i, dir] of dirs.entries()) await assertTree(dir, layers[i]!, `layer ${i}`);
  for (const [l, cutAt] of [
    [base, 1000],
    [top, 20_000],
  ] as const) {
    const gets = blobGets(env.proxy, [l.digest]);
    const both = gets.filter((r) => rangeOf(r)[1] === 4 * CHUNK - 1);
    assert.equal(both.length, 2, `${l.digest}: the chunk and its retry`);
    assert.equal(both.filter((r) => r.fault !== undefined).length, 1, `${l.digest}: the fault hit once`);
    const from = rangeOf(both.find((r) => r.fault === undefined)!)[0];
    assert.ok(from > 3 * CHUNK && from <= 3 * CHUNK + cutAt, `${l.digest}: resumed from ${from}`);
  }
  assert.deepEqual(await leftovers(env), { staging: [], ingest: [], blobs: [] }, 'blobs discarded after unpack, staged layers claimed');
});
