/**
 * Prefetch artifacts as a unit: path keys, the topmost layer wins, spans merged per layer in layer
 * order, and the JSON written here read back by parsePrefetch (other versions and junk ignored).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ANN, MT } from '../../src/oci/media-types.js';
import { digestOf } from '../../src/oci/digest.js';
import type { Descriptor } from '../../src/oci/types.js';
import { buildPrefetchArtifacts, mergeSpans, parsePrefetch, prefetchKey } from '../../src/soci/prefetch.js';
import { validateSizes } from '../../src/soci/index-builder.js';
import { lineLogger } from '../../src/logger.js';

const layer = (n: number): Descriptor => ({ mediaType: MT.ociLayerGzip, digest: `sha256:${String(n).repeat(64)}`, size: 100 });

test('prefetchKey: the cleaned tar name a path is matched with', () => {
  assert.equal(prefetchKey('/usr/bin/python3'), 'usr/bin/python3');
  assert.equal(prefetchKey('./app//main.js'), 'app/main.js');
  assert.equal(prefetchKey('a/../b'), 'b');
  assert.equal(prefetchKey('../../etc/passwd'), 'etc/passwd', 'never above the root');
});

test('mergeSpans: sorted, overlapping and adjacent ranges merged', () => {
  assert.deepEqual(
    mergeSpans([
      { start_span: 5, end_span: 6 },
      { start_span: 0, end_span: 1 },
      { start_span: 2, end_span: 2 },
      { start_span: 6, end_span: 9 },
      { start_span: 12, end_span: 12 },
    ]),
    [
      { start_span: 0, end_span: 2 },
      { start_span: 5, end_span: 9 },
      { start_span: 12, end_span: 12 },
    ],
  );
  assert.deepEqual(mergeSpans([]), []);
});

test('buildPrefetchArtifacts: the topmost layer holding a path wins; one artifact per layer, in layer order; parsePrefetch reads it back', () => {
  const [l0, l1, l2] = [layer(1), layer(2), layer(3)];
  const hits = (entries: Array<[string, number, number]>) => new Map(entries.map(([p, s, e]) => [p, { start_span: s, end_span: e }]));
  const warnings: string[] = [];
  const out = buildPrefetchArtifacts(
    [
      {
        layer: l0,
        hits: hits([
          ['bin/sh', 0, 0],
          ['etc/os-release', 3, 3],
        ]),
      },
      {
        layer: l2,
        hits: hits([
          ['bin/sh', 7, 8],
          ['app/main.js', 1, 2],
        ]),
      },
    ],
    ['/bin/sh', 'etc/os-release', './app/main.js', 'nope/missing'],
    [l0, l1, l2],
    lineLogger((line) => warnings.push(line)),
  );
  assert.deepEqual(
    out.map((a) => a.layer.digest),
    [l0.digest, l2.digest],
  );
  assert.deepEqual(parsePrefetch(out[0]!.bytes), [{ start_span: 3, end_span: 3 }], 'bin/sh is served by the top layer');
  assert.deepEqual(parsePrefetch(out[1]!.bytes), [
    { start_span: 1, end_span: 2 },
    { start_span: 7, end_span: 8 },
  ]);
  for (const a of out) {
    assert.equal(a.desc.mediaType, MT.sociPrefetch);
    assert.equal(a.desc.digest, digestOf(a.bytes));
    assert.equal(a.desc.size, a.bytes.length);
    assert.equal(a.desc.annotations?.[ANN.layerDigest], a.layer.digest);
  }
  assert.deepEqual(warnings, ['warning: prefetch file nope/missing not found in any layer']);
});

test('parsePrefetch: other versions, junk and bad entries are ignored', () => {
  assert.equal(parsePrefetch(Buffer.from('{"version":"2.0","prefetch_spans":[]}')), null);
  assert.equal(parsePrefetch(Buffer.from('not json')), null);
  assert.equal(parsePrefetch(Buffer.from('{"version":"1.0"}')), null);
  assert.deepEqual(
    parsePrefetch(Buffer.from('{"version":"1.0","prefetch_spans":[{"start_span":1,"end_span":2},{"start_span":"x"},null,{"start_span":1.5,"end_span":2}]}')),
    [{ start_span: 1, end_span: 2 }],
  );
});

test('validateSizes: negative or fractional span and layer sizes are usage errors', () => {
  validateSizes(0, 0);
  validateSizes(4 << 20, 10 << 20);
  assert.throws(() => validateSizes(-1, 0), /span size must be >= 0/);
  assert.throws(() => validateSizes(1.5, 0), /span size must be >= 0/);
  assert.throws(() => validateSizes(1, -5), /min layer size must be >= 0/);
});
