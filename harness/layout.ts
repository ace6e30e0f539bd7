/**
 * The one OCI image-layout writer of the tests and benchmarks: blobs (bytes, or a file hard-linked
 * or copied in), a config carrying each layer's diff_id, one manifest per image, and index.json.
 * One image → index.json points at its manifest; several → at an image index (multi-platform).
 * Layer bytes are made by the callers (buildLayout, ociLayout, the bench image builders).
 */
import { copyFileSync, linkSync, mkdirSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { digestOf } from '../src/oci/digest.js';

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}
/** A layer blob already made: its bytes, or a file with its digest and size. */
export type LayoutLayer = { mediaType: string; diffId: string } & ({ bytes: Buffer } | { file: string; digest: string; size: number });
export interface LayoutImage {
  layers: LayoutLayer[];
  /** default linux/amd64 */
  platform?: Platform;
  /** config fields besides architecture/os/variant and rootfs; default `{ config: { Cmd: ['/bin/sh'] } }` */
  config?: Record<string, unknown>;
}
export interface LayoutOptions {
  /** docker media types for manifests, configs and the image index (layers keep theirs) */
  docker?: boolean;
  /** org.opencontainers.image.ref.name of the index.json entry; default `latest` */
  tag?: string;
  /** more annotations on the index.json entry (io.containerd.image.name, ...) */
  annotations?: Record<string, string>;
  /** the index.json entry of a single image carries its platform (as `ctr export` writes it) */
  platformInIndex?: boolean;
}
export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
}
export interface WrittenLayout {
  dir: string;
  root: Descriptor;
  manifests: string[];
  layers: string[][];
}

export const MEDIA_TYPES = {
  oci: {
    manifest: 'application/vnd.oci.image.manifest.v1+json',
    config: 'application/vnd.oci.image.config.v1+json',
    index: 'application/vnd.oci.image.index.v1+json',
  },
  docker: {
    manifest: 'application/vnd.docker.distribution.manifest.v2+json',
    config: 'application/vnd.docker.container.image.v1+json',
    index: 'application/vnd.docker.distribution.manifest.list.v2+json',
  },
} as const;

/** Writes `b` as a blob of the layout at `dir`. */
export function putBlob(dir: string, b: Buffer | string): { digest: string; size: number } {
  const bytes = Buffer.from(b);
  const d = digestOf(bytes);
  mkdirSync(join(dir, 'blobs', 'sha256'), { recursive: true });
  writeFileSync(join(dir, 'blobs', 'sha256', d.slice(7)), bytes);
  return { digest: d, size: bytes.length };
}

function putLayer(dir: string, l: LayoutLayer): Descriptor {
  if ('bytes' in l) return { mediaType: l.mediaType, ...putBlob(dir, l.bytes) };
  const to = join(dir, 'blobs', 'sha256', l.digest.slice(7));
  if (!existsSync(to)) {
    try {
      linkSync(l.file, to);
    } catch {
      copyFileSync(l.file, to);
    }
  }
  return { mediaType: l.mediaType, digest: l.digest, size: l.size };
}

export function writeLayout(dir: string, images: LayoutImage[], opts: LayoutOptions = {}): WrittenLayout {
  const mt = MEDIA_TYPES[opts.docker ? 'docker' : 'oci'];
  mkdirSync(join(dir, 'blobs', 'sha256'), { recursive: true });
  writeFileSync(join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  const manifests: Array<Descriptor & { platform: Platform }> = [];
  const layerDigests: string[][] = [];
  for (const img of images) {
    const platform = img.platform ?? { os: 'linux', architecture: 'amd64' };
    const layers = img.layers.map((l) => putLayer(dir, l));
    layerDigests.push(layers.map((l) => l.digest));
    const config = {
      architecture: platform.architecture,
      os: platform.os,
      ...(platform.variant ? { variant: platform.variant } : {}),
      ...(img.config ?? { config: { Cmd: ['/bin/sh'] } }),
      rootfs: { type: 'layers', diff_ids: img.layers.map((l) => l.diffId) },
    };
    const cfg = { mediaType: mt.config, ...putBlob(dir, JSON.stringify(config)) };
    const manifest = JSON.stringify({ schemaVersion: 2, mediaType: mt.manifest, config: cfg, layers });
    manifests.push({ mediaType: mt.manifest, ...putBlob(dir, manifest), platform });
  }
  let root: Descriptor & { platform?: Platform };
  if (manifests.length === 1) {
    const { platform, ...m } = manifests[0]!;
    root = opts.platformInIndex ? { ...m, platform } : m;
  } else {
    root = { mediaType: mt.index, ...putBlob(dir, JSON.stringify({ schemaVersion: 2, mediaType: mt.index, manifests })) };
  }
  const annotations = { ...opts.annotations, 'org.opencontainers.image.ref.name': opts.tag ?? 'latest' };
  writeFileSync(join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, mediaType: MEDIA_TYPES.oci.index, manifests: [{ ...root, annotations }] }));
  const { platform: _p, ...rootDesc } = root;
  return { dir, root: rootDesc, manifests: manifests.map((m) => m.digest), layers: layerDigests };
}
