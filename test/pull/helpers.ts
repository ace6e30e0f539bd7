/**
 * Shared by the parallel pull tests (src/pull): a real registry behind the fault proxy, images
 * pushed from files held in memory (so an unpacked tree is compared byte for byte with what went
 * into its layer), an ImagePuller over private staging and content dirs, and the interval
 * arithmetic the concurrency checks use.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { gzipSync } from 'node:zlib';
import type { FaultProxy, ProxiedRequest } from '../../harness/fault-proxy.js';
import { recordingLogger, tempDir } from '../../harness/env.js';
import { packTar } from '../../harness/images.js';
import { registryWithProxy } from '../../harness/indexed-image.js';
import { SociError } from '../../src/errors.js';
import { digestOf } from '../../src/oci/digest.js';
import { decompressTools, ImagePuller, type ParallelPullSettings, type PullTarget } from '../../src/pull/index.js';
import { RegistryClient } from '../../src/registry/index.js';
import type { AfterHost } from '../../harness/process.js';

export type Files = Record<string, Buffer>;
export type Compression = 'gzip' | 'zstd' | 'none';

const LAYER_TYPE: Record<Compression, string> = {
  gzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  zstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  none: 'application/vnd.oci.image.layer.v1.tar',
};

export interface PushedLayer {
  digest: string;
  size: number;
  mediaType: string;
  files: Files;
}

export interface PushedImage {
  repo: string;
  manifestDigest: string;
  layers: PushedLayer[];
}

/** Random (incompressible) files of about `bytes` in all, in a few sizes, under `prefix/`. */
export function randomFiles(prefix: string, bytes: number): Files {
  return {
    [`${prefix}/big.bin`]: randomBytes(Math.floor(bytes * 0.6)),
    [`${prefix}/sub/mid.bin`]: randomBytes(Math.floor(bytes * 0.3)),
    [`${prefix}/sub/small.bin`]: randomBytes(Math.floor(bytes * 0.1)),
    [`${prefix}/empty`]: Buffer.alloc(0),
    [`${prefix}/note.txt`]: Buffer.from(`layer ${prefix}\n`),
  };
}

/** Pushes an image of these layers (bottom first) with `direct`, a client that bypasses the proxy. */
export async function pushImage(
  direct: RegistryClient,
  repo: string,
  layers: Array<{ files: Files; compression?: Compression /** changes the blob before it is pushed (a broken image) */; alter?: (blob: Buffer) => void }>,
): Promise<PushedImage> {
  const pushed: PushedLayer[] = [];
  const diffIds: string[] = [];
  for (const l of layers) {
    const tar = await packTar(Object.entries(l.files).map(([name, data]) => ({ name, data })));
    const c = l.compression ?? 'gzip';
    const blob = c === 'gzip' ? gzipSync(tar) : c === 'zstd' ? execFileSync('zstd', ['-q', '-c'], { input: tar, maxBuffer: 1 << 28 }) : Buffer.from(tar);
    l.alter?.(blob);
    await direct.pushBlob(repo, digestOf(blob), blob.length, blob);
    pushed.push({ digest: digestOf(blob), size: blob.length, mediaType: LAYER_TYPE[c], files: l.files });
    diffIds.push(digestOf(tar));
  }
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: {}, rootfs: { type: 'layers', diff_ids: diffIds } }));
  await direct.pushBlob(repo, digestOf(config), config.length, config);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: digestOf(config), size: config.length },
      layers: pushed.map(({ mediaType, digest, size }) => ({ mediaType, digest, size })),
    }),
  );
  const manifestDigest = await direct.putManifest(repo, 'v1', manifest, 'application/vnd.oci.image.manifest.v1+json');
  return { repo, manifestDigest, layers: pushed };
}

export const DEFAULT_SETTINGS: ParallelPullSettings = {
  maxConcurrentDownloads: -1,
  maxConcurrentDownloadsPerImage: 4,
  chunkSize: 64 * 1024,
  maxConcurrentUnpacks: -1,
  maxConcurrentUnpacksPerImage: -1,
  discardUnpackedLayers: false,
  tools: decompressTools({}),
};

export interface PullEnv {
  proxy: FaultProxy;
  /** straight to the registry (pushes) */
  direct: RegistryClient;
  puller: ImagePuller;
  logger: ReturnType<typeof recordingLogger>;
  top: string;
  stagingDir: string;
  contentDir: string;
  /** a new empty snapshot dir */
  snapshotDir(): Promise<string>;
}

/** A registry, the fault proxy in front, and an ImagePuller whose client goes through the proxy (quick retries). */
export async function pullEnv(t: AfterHost, settings: Partial<ParallelPullSettings> = {}): Promise<PullEnv> {
  const { client: direct, proxy } = await registryWithProxy(t);
  const client = new RegistryClient({
    registry: proxy.host,
    plainHttp: true,
    retry: { maxAttempts: 5, baseDelayMs: 10, maxDelayMs: 100, maxTotalMs: 30_000 },
    headersTimeoutMs: 20_000,
    bodyTimeoutMs: 20_000,
  });
  t.after(() => client.close());
  const top = await tempDir(t, 'soci-pull-');
  const [stagingDir, contentDir] = [join(top, 'staging'), join(top, 'content')];
  const logger = recordingLogger();
  const puller = await ImagePuller.open({ stagingDir, contentDir, clientFor: () => client, logger, settings: { ...DEFAULT_SETTINGS, ...settings } });
  let n = 0;
  const snapshotDir = async () => {
    const d = join(top, 'snapshots', String(++n));
    await mkdir(d, { recursive: true });
    return d;
  };
  return { proxy, direct, puller, logger, top, stagingDir, contentDir, snapshotDir };
}

/** What the puller needs to pull layer `i` of `img` (through the proxy), with its size when `sized`. */
export function target(env: PullEnv, img: PushedImage, i: number, sized = true): PullTarget {
  const l = img.layers[i]!;
  return { registry: env.proxy.host, repository: img.repo, manifestDigest: img.manifestDigest, layerDigest: l.digest, ...(sized ? { size: l.size } : {}) };
}

/**
 * Pulls every layer of `img` as containerd's Prepares would: bottom first, each waiting for the
 * last, with `image()` (the first starts them all) or `layer()`. Returns the snapshot dirs.
 */
export async function pullAll(env: PullEnv, img: PushedImage, mode: 'image' | 'layer' = 'image'): Promise<string[]> {
  const dirs: string[] = [];
  for (let i = 0; i < img.layers.length; i++) {
    const dir = await env.snapshotDir();
    await env.puller[mode](target(env, img, i), dir);
    dirs.push(dir);
  }
  return dirs;
}

/** Regular files under `dir`, by path relative to it. */
export async function filesUnder(dir: string): Promise<Files> {
  const out: Files = {};
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!e.isFile()) continue;
    const abs = join(e.parentPath ?? (e as unknown as { path: string }).path, e.name);
    out[relative(dir, abs)] = await readFile(abs);
  }
  return out;
}

/** `dir` holds exactly these files with exactly these bytes. */
export async function assertTree(dir: string, files: Files, what = dir): Promise<void> {
  const got = await filesUnder(dir);
  assert.deepEqual(Object.keys(got).sort(), Object.keys(files).sort(), `${what}: the layer's files`);
  for (const [name, want] of Object.entries(files)) assert.ok(got[name]!.equals(want), `${what}: ${name} differs from what went into the layer`);
}

/** Names in the staging dir, the ingest dir (downloads in progress) and the kept blobs. */
export async function leftovers(env: PullEnv): Promise<{ staging: string[]; ingest: string[]; blobs: string[] }> {
  return {
    staging: await readdir(env.stagingDir),
    ingest: await readdir(join(env.contentDir, 'ingest')),
    blobs: await readdir(join(env.contentDir, 'blobs', 'sha256')),
  };
}

/**
 * Images the puller still remembers (metadata, bounds, staged layers). Private state, read here
 * because nothing public shows it: a failed pull must not leave its image in the daemon forever.
 */
export function jobs(env: PullEnv): number {
  return (env.puller as unknown as { jobs: Map<string, unknown> }).jobs.size;
}

/** Layers the puller logged as pulled and unpacked (a failed one logs nothing). */
export function pulled(env: PullEnv): number {
  return env.logger.lines.filter((l) => l.msg === 'layer pulled and unpacked in parallel').length;
}

/** A one-line SociError whose message matches `re`. */
export function oneLine(e: unknown, re: RegExp): true {
  assert.ok(e instanceof SociError, `a SociError, got ${String(e)}`);
  assert.ok(!e.message.includes('\n'), `one line: ${JSON.stringify(e.message)}`);
  assert.match(e.message, re);
  return true;
}

/** The proxy's GETs of these blobs. */
export function blobGets(proxy: FaultProxy, digests: string[]): ProxiedRequest[] {
  return proxy.requests.filter((r) => r.method === 'GET' && digests.some((d) => r.path.endsWith(`/blobs/${d}`)));
}

/** [first, last] byte of a request's `Range: bytes=a-b`. */
export function rangeOf(r: ProxiedRequest): [number, number] {
  const m = /^bytes=(\d+)-(\d+)$/.exec(String(r.headers.range ?? ''));
  assert.ok(m, `a closed Range header on ${r.path}: ${String(r.headers.range)}`);
  return [Number(m[1]), Number(m[2])];
}

/**
 * The most intervals [start, end) open at once. Half-open: one that ends when another starts does
 * not overlap it (with ms timestamps, a request sent right after the last one's last byte can
 * carry the same time).
 */
export function maxOverlap(spans: Array<[number, number]>): number {
  const events = spans.flatMap(
    ([s, e]): Array<[number, number]> => [
      [s, 1],
      [e, -1],
    ],
  );
  events.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let open = 0;
  let max = 0;
  for (const [, d] of events) max = Math.max(max, (open += d));
  return max;
}

/** A proxied request's span from the client's side: from its arrival to its last body byte (or its end). */
export function spanOf(r: ProxiedRequest): [number, number] {
  const end = r.lastByte ?? r.end;
  assert.ok(end !== undefined, `${r.method} ${r.path} has ended`);
  return [r.start, end];
}

/**
 * A gzip decompress tool that logs when it starts and ends (ns) to a file, around `gzip -dc`: the
 * unpack of a layer runs its decompressor from its first read to its end, so these spans are the
 * layers' unpacks.
 */
export async function loggingGunzip(t: AfterHost): Promise<{ tool: { path: string; args: string[] }; log: string; spans(): Promise<Array<[number, number]>> }> {
  const dir = await tempDir(t, 'soci-pull-tool-');
  const [path, log] = [join(dir, 'gunzip-logged'), join(dir, 'spans.log')];
  await writeFile(path, '#!/bin/sh\nlog="$1"\necho "start $$ $(date +%s%N)" >> "$log"\ngzip -dc\nrc=$?\necho "end $$ $(date +%s%N)" >> "$log"\nexit $rc\n');
  await chmod(path, 0o755);
  await writeFile(log, '');
  const spans = async () => {
    const open = new Map<string, number>();
    const out: Array<[number, number]> = [];
    for (const line of (await readFile(log, 'utf8')).split('\n').filter(Boolean)) {
      const [kind, pid, ns] = line.split(' ') as [string, string, string];
      const ms = Number(BigInt(ns) / 1000n) / 1000;
      if (kind === 'start') open.set(pid, ms);
      else out.push([open.get(pid)!, ms]);
    }
    return out;
  };
  return { tool: { path, args: [log] }, log, spans };
}

/**
 * Holds the first `n` GETs of these blobs at the proxy until `release()`: requests the puller sends
 * at once overlap for sure, whatever the timing, so a bound is seen reached, not just respected.
 */
export function holdGets(t: AfterHost, proxy: FaultProxy, digests: string[], n: number): { release(): void; arrived(): number } {
  let release!: () => void;
  const until = new Promise<void>((r) => (release = r));
  proxy.add({ method: 'GET', path: new RegExp(`/blobs/(${digests.join('|')})$`), times: n, fault: { kind: 'hold', until } });
  t.after(() => release()); // a failed test lets its pulls end
  return { release, arrived: () => blobGets(proxy, digests).length };
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
