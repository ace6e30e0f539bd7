/**
 * Interop vectors from AWS soci-snapshotter (/work/shared/interop/gzip-checkpoints): every vector
 * listed in vectors.json, with every engine — blob bytes identical to AWS's, checkpoints equal, and
 * every span extracted from its checkpoint equal to the gunzipped layer.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { decodeCheckpoints, parseCheckpoints } from '../../src/compression/index.js';
import { indexBlob, testEngines, verifySpans } from './helpers.js';
import { sha256Hex } from '../../src/oci/digest.js';

const DIR = process.env.SOCI_INTEROP_DIR ?? '/work/shared/interop/gzip-checkpoints';
const vectorsFile = join(DIR, 'vectors.json');

interface Vector {
  layer: string;
  layer_sha256: string;
  layer_size: number;
  span_size: number;
  checkpoints_blob: string;
  blob_sha256: string;
  checkpoint_count: number;
  checkpoints: Array<{ in: number; out: number; bits: number }>;
}

const vectors: Vector[] = existsSync(vectorsFile) ? (JSON.parse(readFileSync(vectorsFile, 'utf8')) as { vectors: Vector[] }).vectors : [];

test('interop vectors are present', () => {
  assert.ok(vectors.length >= 4, `expected interop vectors in ${DIR}`);
});

for (const v of vectors) {
  test(`interop ${v.layer}: AWS zinfo blob is decoded and its spans extract`, async () => {
    const layer = readFileSync(join(DIR, v.layer));
    assert.equal(sha256Hex(layer), v.layer_sha256);
    assert.equal(layer.length, v.layer_size);
    const expected = readFileSync(join(DIR, v.checkpoints_blob));
    assert.equal(sha256Hex(expected), v.blob_sha256);
    const dec = decodeCheckpoints(expected);
    assert.equal(dec.version, 2);
    assert.equal(dec.spanSize, v.span_size);
    assert.deepEqual(
      dec.checkpoints.map((c) => ({ in: c.in, out: c.out, bits: c.bits })),
      v.checkpoints,
    );
    const plain = gunzipSync(layer);
    const table = parseCheckpoints(expected, 'gzip', layer.length, plain.length);
    assert.equal(table.spans.length, v.checkpoint_count);
  });

  for (const engine of testEngines()) {
    test(`interop ${v.layer} [${engine}]: checkpoint blob is byte-identical to AWS SOCI`, async () => {
      const layer = readFileSync(join(DIR, v.layer));
      const expected = readFileSync(join(DIR, v.checkpoints_blob));
      // an odd chunk size: chunking must not influence the result
      const { result, plain } = indexBlob(layer, 'gzip', v.span_size, engine, 40_009);
      assert.equal(sha256Hex(result.checkpoints), v.blob_sha256);
      assert.ok(result.checkpoints.equals(expected));
      assert.equal(result.maxSpanId, v.checkpoint_count - 1);
      assert.equal(result.compressedSize, v.layer_size);
      assert.ok(plain.equals(gunzipSync(layer)), 'onData delivers the whole uncompressed layer in order');
      await verifySpans(layer, plain, result);
    });
  }
}
