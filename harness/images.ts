/**
 * Builds OCI image layouts for tests, deterministically, with full control over media types:
 *   buildLayout(dir, { images: [{ platform, layers: [{ files, compression }] }], docker?, tag? })
 * Layers are made with GNU tar (sorted, fixed mtime/owner) and gzip -n / zstd; configs carry diff_ids.
 * One image → index.json points at its manifest; several → at an image index (multi-platform).
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, writeFileSync, rmSync, mkdtempSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import tar from 'tar-stream';
import { digestOf } from '../src/oci/digest.js';
import { type WrittenLayout, writeLayout } from './layout.js';
import { xorshift32 } from './random.js';

export interface LayerSpec {
  /** path → content (string/Buffer), or { symlink } / { dir: true } */
  files: Record<string, string | Buffer | { symlink: string } | { dir: true } | { content: string | Buffer; mode: number }>;
  compression?: 'gzip' | 'none' | 'zstd';
  /** tar member names start with `./` (like `tar -C dir .`); default: plain `app/x` names */
  dotSlash?: boolean;
}
export interface ImageSpec {
  platform?: { os: string; architecture: string; variant?: string };
  layers: LayerSpec[];
  /** config fields besides architecture/os and rootfs (default `{ config: { Cmd: ['/bin/sh'] } }`) */
  config?: Record<string, unknown>;
}
export interface LayoutSpec {
  images: ImageSpec[];
  docker?: boolean;
  tag?: string;
}

const OCI_LAYER = {
  gzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  none: 'application/vnd.oci.image.layer.v1.tar',
  zstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
} as const;
const DOCKER_LAYER = { ...OCI_LAYER, gzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip', none: 'application/vnd.docker.image.rootfs.diff.tar' } as const;

/** A tar entry for packTar: a file (the default), a directory or a symlink; owner 0, mtime 0. */
export interface TarEntry {
  name: string;
  type?: 'file' | 'directory' | 'symlink';
  mode?: number;
  data?: Buffer;
  linkname?: string;
}

/** A tar of these entries in this order, byte-for-byte the same on every run (tar-stream, no host tar). */
export async function packTar(entries: TarEntry[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on('data', (c: unknown) => {
    chunks.push(c as Buffer);
  });
  const done = new Promise<void>((resolve, reject) => {
    pack.on('end', resolve);
    pack.on('error', reject);
  });
  for (const e of entries) {
    const type = e.type ?? 'file';
    const header = {
      name: e.name,
      type,
      mode: e.mode ?? (type === 'directory' ? 0o755 : 0o644),
      mtime: new Date(0),
      uid: 0,
      gid: 0,
      ...(e.linkname ? { linkname: e.linkname } : {}),
    } as tar.Header;
    await new Promise<void>((resolve, reject) => {
      const cb = (err?: Error | null) => (err ? reject(err) : resolve());
      if (type === 'file') pack.entry(header, e.data ?? Buffer.alloc(0), cb);
      else pack.entry(header, cb);
    });
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

/** A tar made by the host's GNU tar from files written to a scratch dir (PAX headers, as `docker build` layers). */
export function makeLayerTar(spec: LayerSpec): Buffer {
  const src = mkdtempSync('/tmp/soci-layer-');
  try {
    const names: string[] = [];
    for (const [name, v] of Object.entries(spec.files)) {
      const p = join(src, name);
      mkdirSync(dirname(p), { recursive: true });
      if (typeof v === 'object' && !Buffer.isBuffer(v) && 'symlink' in v) execFileSync('ln', ['-s', v.symlink, p]);
      else if (typeof v === 'object' && !Buffer.isBuffer(v) && 'dir' in v) mkdirSync(p, { recursive: true });
      else if (typeof v === 'object' && !Buffer.isBuffer(v) && 'content' in v) {
        writeFileSync(p, v.content);
        chmodSync(p, v.mode);
      } else writeFileSync(p, v as string | Buffer);
      names.push(name);
    }
    const top = [...new Set(names.map((n) => n.split('/')[0]!))].sort();
    const members = spec.dotSlash ? ['.'] : top;
    return execFileSync(
      'tar',
      [
        '--sort=name',
        '--mtime=@1700000000',
        '--owner=0',
        '--group=0',
        '--numeric-owner',
        '--format=posix',
        '--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime',
        '-C',
        src,
        '-cf',
        '-',
        ...members,
      ],
      { maxBuffer: 1 << 30 },
    );
  } finally {
    rmSync(src, { recursive: true, force: true });
  }
}

export function buildLayout(dir: string, spec: LayoutSpec): WrittenLayout {
  const layerType = spec.docker ? DOCKER_LAYER : OCI_LAYER;
  const images = spec.images.map((img) => ({
    ...(img.platform ? { platform: img.platform } : {}),
    ...(img.config ? { config: img.config } : {}),
    layers: img.layers.map((l) => {
      const tarBytes = makeLayerTar(l);
      const c = l.compression ?? 'gzip';
      const bytes =
        c === 'gzip'
          ? execFileSync('gzip', ['-n', '-6'], { input: tarBytes, maxBuffer: 1 << 30 })
          : c === 'zstd'
            ? execFileSync('zstd', ['-q', '-c'], { input: tarBytes, maxBuffer: 1 << 30 })
            : tarBytes;
      return { mediaType: layerType[c], diffId: digestOf(tarBytes), bytes };
    }),
  }));
  return writeLayout(dir, images, { ...(spec.docker ? { docker: true } : {}), tag: spec.tag ?? 'latest' });
}

/** An OCI layout (tag `tag`) from gzip'd tar layers, bottom first. Returns the layer digests. */
export async function ociLayout(dir: string, gzLayers: Buffer[], tag = 'v1'): Promise<string[]> {
  const layers = gzLayers.map((bytes) => ({ mediaType: OCI_LAYER.gzip, diffId: digestOf(gunzipSync(bytes)), bytes }));
  return writeLayout(dir, [{ layers, config: { config: {} } }], { tag }).layers[0]!;
}

/** Deterministic pseudo-random bytes (compressible to a tunable degree) for big test files. */
export function pseudoRandom(size: number, seed: number, textRatio = 0.5): Buffer {
  const out = Buffer.alloc(size);
  const next = xorshift32(seed);
  let x = 0;
  const words = ['lorem', 'ipsum', 'layer', 'span', 'checkpoint', 'container', 'snapshot', 'registry', '\n'];
  let i = 0;
  while (i < size) {
    x = next();
    if ((x & 0xff) / 255 < textRatio) {
      const w = words[x % words.length]!;
      out.write(w + ' ', i, 'latin1');
      i += w.length + 1;
    } else {
      for (let k = 0; k < 64 && i < size; k++) out[i++] = next() & 0xff;
    }
  }
  return out.subarray(0, size);
}

export function readJson(path: string): any {
  return JSON.parse(readFileSync(path, 'utf8'));
}
