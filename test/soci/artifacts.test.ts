/** containerd GC references of a converted graph, and the order blobs are written in. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { gcLabels, saveBlobs } from '../../src/soci/artifacts.js';
import type { ArtifactBlobs } from '../../src/store/index.js';

const d = (c: string) => `sha256:${c.repeat(64)}`;
const json = (v: unknown) => Buffer.from(JSON.stringify(v));

const index = json({
  schemaVersion: 2,
  mediaType: 'application/vnd.oci.image.index.v1+json',
  manifests: [
    { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: d('1'), size: 10 },
    { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: d('2'), size: 10, artifactType: 'application/vnd.amazon.soci.index.v2+json' },
  ],
});
const image = json({
  schemaVersion: 2,
  mediaType: 'application/vnd.oci.image.manifest.v1+json',
  config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: d('c'), size: 5 },
  layers: [
    { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: d('a'), size: 1 },
    { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: d('b'), size: 1 },
  ],
});
const soci = json({
  schemaVersion: 2,
  mediaType: 'application/vnd.oci.image.manifest.v1+json',
  config: { mediaType: 'application/vnd.amazon.soci.index.v2+json', digest: d('e'), size: 2 },
  layers: [{ mediaType: 'application/octet-stream', digest: d('f'), size: 1 }],
});

test("GC labels are AWS's: m.<i> on an index, config + l.<i> on an image, config + ztoc.<i> on a SOCI index", () => {
  const p = 'containerd.io/gc.ref.content';
  assert.deepEqual(gcLabels(index), { [`${p}.m.0`]: d('1'), [`${p}.m.1`]: d('2') });
  assert.deepEqual(gcLabels(image), { [`${p}.config`]: d('c'), [`${p}.l.0`]: d('a'), [`${p}.l.1`]: d('b') });
  assert.deepEqual(gcLabels(soci), { [`${p}.config`]: d('e'), [`${p}.ztoc.0`]: d('f') });
  assert.deepEqual(gcLabels(Buffer.from('{}')), {});
  assert.deepEqual(gcLabels(Buffer.from([0x10, 0, 0, 0])), {}, 'a zTOC (flatbuffer) is a leaf');
});

test('blobs are written leaves first, the image index last', async () => {
  const order: string[] = [];
  const store = { put: async (_b: Buffer, digest: string) => void order.push(digest) } as unknown as ArtifactBlobs;
  await saveBlobs(
    store,
    new Map([
      [d('9'), index],
      [d('1'), image],
      [d('2'), soci],
      [d('f'), Buffer.from([1, 2, 3])],
      [d('e'), Buffer.from('{}')],
    ]),
  );
  assert.deepEqual(order.slice(0, 2).sort(), [d('e'), d('f')].sort());
  assert.deepEqual(order.slice(2), [d('2'), d('1'), d('9')]);
});
