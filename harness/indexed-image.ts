/**
 * A two-layer test image pushed to a registry with a hand-made SOCI v2 index: a zTOC for the top
 * layer only (16 KiB spans), optionally altered before it is marshalled (a lying zTOC). Returns what
 * the snapshotter's Prepare labels need.
 */
import { Readable } from 'node:stream';
import { RegistryClient } from '../src/registry/index.js';
import { startFaultProxy, type FaultProxy } from './fault-proxy.js';
import { ANN, EMPTY_CONFIG, MT } from '../src/oci/media-types.js';
import { encodeManifest } from '../src/oci/types.js';
import { LABELS } from '../src/snapshotter/labels.js';
import { buildZtoc, marshalZtoc, type Ztoc } from '../src/ztoc/index.js';
import { pushTestImage, startRegistry, type TestRegistry } from './registry.js';
import { digestOf } from '../src/oci/digest.js';
import type { AfterHost } from './process.js';

export interface IndexedImage {
  repo: string;
  manifestDigest: string;
  base: string;
  top: string;
  /** hex of the zTOC blob digest (for fault-proxy paths) */
  ztocHex: string;
  indexDigest: string;
}

export async function pushIndexedImage(reg: TestRegistry, client: RegistryClient, repo: string, alter?: (z: Ztoc) => void): Promise<IndexedImage> {
  const img = await pushTestImage(reg, repo, { layers: 2 });
  const m = img.manifests[0]!;
  const [base, top] = [m.layers[0]!, m.layers[1]!];
  const z = await buildZtoc(Readable.from([top.bytes]), { compression: 'gzip', spanSize: 16 * 1024 });
  alter?.(z);
  const ztoc = marshalZtoc(z);
  for (const b of [ztoc, EMPTY_CONFIG.bytes]) await client.pushBlob(repo, digestOf(b), b.length, b);
  const index = encodeManifest({
    schemaVersion: 2,
    mediaType: MT.ociManifest,
    artifactType: MT.sociIndexV2,
    config: { mediaType: MT.sociIndexV2, digest: EMPTY_CONFIG.digest, size: EMPTY_CONFIG.size },
    layers: [{ mediaType: MT.ztoc, digest: digestOf(ztoc), size: ztoc.length, annotations: { [ANN.layerDigest]: top.digest } }],
  });
  const indexDigest = await client.putManifest(repo, digestOf(index), index, MT.ociManifest);
  return { repo, manifestDigest: m.digest, base: base.digest, top: top.digest, ztocHex: digestOf(ztoc).slice(7), indexDigest };
}

/** Prepares the image's top layer at `dir` through a SOCI mounter, with the labels containerd's CRI sends (image pulled via `host`). */
export async function mountTopLayer(
  mounter: { mount(dir: string, labels: Record<string, string>, ctx: { namespace: string; key: string }): Promise<void> },
  dir: string,
  host: string,
  img: IndexedImage,
  extraLabels: Record<string, string> = {},
): Promise<void> {
  await mounter.mount(
    dir,
    {
      ...extraLabels,
      [LABELS.imageRef]: `${host}/${img.repo}:latest`,
      [LABELS.manifestDigest]: img.manifestDigest,
      [LABELS.indexDigest]: img.indexDigest,
      [LABELS.layerDigest]: img.top,
    },
    { namespace: 'default', key: img.repo },
  );
}

/** A CNCF registry and a client for it: where the SOCI mounter tests start. */
export async function registryWithClient(t: AfterHost): Promise<{ reg: TestRegistry; client: RegistryClient }> {
  const reg = await startRegistry(t);
  const client = new RegistryClient({ registry: reg.host, plainHttp: true });
  t.after(() => client.close());
  return { reg, client };
}

/** The same, with a recording fault proxy in front. */
export async function registryWithProxy(t: AfterHost): Promise<{ reg: TestRegistry; client: RegistryClient; proxy: FaultProxy }> {
  const { reg, client } = await registryWithClient(t);
  return { reg, client, proxy: await startFaultProxy(t, reg.host) };
}
