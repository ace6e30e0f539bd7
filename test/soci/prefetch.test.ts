/**
 * Prefetch artifacts as a unit: path keys, the topmost layer wins, spans merged per layer in layer
 * order (or in read order for a record, with only the spans of the ranges read), and the JSON
 * written here read back by parsePrefetch (other versions and junk ignored).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ANN, MT } from '../../src/oci/media-types.js';
import { digestOf } from '../../src/oci/digest.js';
import type { Descriptor } from '../../src/oci/types.js';
import { buildPrefetchArtifacts, mergeSpans, parsePrefetch, prefetchHits, prefetchKey } from '../../src/soci/prefetch.js';
import { buildZtoc, spanTable } from '../../src/ztoc/index.js';
import { fileBytes, makeLayer } from '../../harness/fixtures.js';
import { pseudoRandom } from '../../harness/images.js';
import { tempDir } from '../../harness/env.js';
import { validateSizes } from '../../src/soci/index-builder.js';
import { lineLogger, silentLogger } from '../../src/logger.js';

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
  const hits = (entries: Array<[string, number, number]>) => new Map(entries.map(([p, s, e]) => [p, [{ start_span: s, end_span: e }]]));
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
    ['/bin/sh', 'etc/os-release', './app/main.js', 'nope/missing'].map((path) => ({ path })),
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

test('prefetchHits: a whole file costs all its spans, recorded ranges only the spans holding them', async (t) => {
  const dir = await tempDir(t);
  const big = pseudoRandom(1_000_000, 7, 0.1);
  const fx = await makeLayer(dir, {
    name: 'ranges',
    entries: [
      { type: 'file', name: 'lib/big.so', data: big },
      { type: 'file', name: 'etc/small', data: 'x\n' },
    ],
  });
  const z = await buildZtoc(fileBytes(fx.gzPath), { compression: 'gzip', spanSize: 65536 });
  const table = spanTable(z);
  const e = z.toc.find((x) => x.name.toString('latin1') === 'lib/big.so')!;
  const at = (off: number) => table.spanIdForOffset(e.uncompressedOffset + off);
  const hits = prefetchHits(z, [
    {
      path: 'lib/big.so',
      ranges: [
        [500_000, 10],
        [0, 4096],
        [990_000, 50_000],
      ],
    },
    { path: '/etc/small' },
  ]);
  assert.deepEqual(hits.get('lib/big.so'), [
    { start_span: at(500_000), end_span: at(500_009) },
    { start_span: at(0), end_span: at(4095) },
    { start_span: at(990_000), end_span: at(999_999) }, // cut at the file's end
  ]);
  assert.ok(at(999_999) - at(0) > 5, 'the file spans many spans; the ranges need few of them');
  const whole = prefetchHits(z, [{ path: 'lib/big.so' }]).get('lib/big.so')!;
  assert.equal(whole[0]!.start_span, at(0));
  assert.ok(whole[0]!.end_span >= at(999_999));

  // In read order, a span already listed is not listed again; AWS's order sorts and merges.
  const l = layer(4);
  const read = buildPrefetchArtifacts([{ layer: l, hits }], [{ path: 'lib/big.so' }], [l], silentLogger, 'read');
  const spans = parsePrefetch(read[0]!.bytes)!;
  assert.deepEqual(spans[0], { start_span: at(500_000), end_span: at(500_009) }, 'the first range read comes first');
  const ids = spans.flatMap((r) => Array.from({ length: r.end_span - r.start_span + 1 }, (_, i) => r.start_span + i));
  assert.equal(new Set(ids).size, ids.length, 'no span twice');
  const sorted = parsePrefetch(buildPrefetchArtifacts([{ layer: l, hits }], [{ path: 'lib/big.so' }], [l])[0]!.bytes)!;
  assert.deepEqual(sorted, mergeSpans(spans));
});
