/**
 * Runtime SOCI index discovery and artifact fetch: explicit digest first,
 * then v2 (the image manifest's `com.amazon.soci.index-digest` annotation; a dangling annotation is
 * an error, never a v1 fallback), then v1 referrers (off by default; first match wins). Every fetched
 * artifact is digest-verified; a local ContentStore, when given, is read first and filled.
 */
import type { Semaphore } from '../concurrency.js';
import { SociError, isSociError } from '../errors.js';
import { ANN, MT } from '../oci/media-types.js';
import { decodeManifest, type Descriptor, type Manifest } from '../oci/types.js';
import { digestOf } from '../oci/digest.js';
import type { RegistryClient } from '../registry/index.js';
import type { ArtifactBlobs } from '../store/artifact-blobs.js';
import { unmarshalZtoc, type Ztoc } from '../ztoc/index.js';
import { parsePrefetch } from '../soci/prefetch.js';
import type { SpanRange } from '../ztoc/index.js';

export type SociIndexVersion = 'v1' | 'v2';

/** Where artifacts may already be: our content store, or containerd's (read only). */
export type ArtifactReader = Pick<ArtifactBlobs, 'has' | 'get'> & Partial<Pick<ArtifactBlobs, 'put'>>;

export interface FindSociIndexOptions {
  /** `--soci-index-digest` / label containerd.io/snapshot/remote/soci.index.digest */
  explicitDigest?: string;
  /** v1 referrers discovery (default false) */
  v1?: boolean;
  /** v2 annotation discovery (default true) */
  v2?: boolean;
  /** read first for zTOCs and prefetch artifacts, and filled when it can be written */
  store?: ArtifactReader;
  signal?: AbortSignal;
  /** each artifact download takes a turn here (the daemon's bound across images) */
  gate?: Semaphore;
}

export interface FoundSociIndex {
  desc: Descriptor;
  manifest: Manifest;
  /** 'explicit' when the digest was given */
  version: SociIndexVersion | 'explicit';
}

export async function findSociIndex(client: RegistryClient, repo: string, manifestDigest: string, opts: FindSociIndexOptions = {}): Promise<FoundSociIndex> {
  if (opts.explicitDigest) {
    const { desc, manifest } = await fetchIndexManifest(client, repo, opts.explicitDigest, opts);
    return { desc, manifest, version: 'explicit' };
  }
  const v2 = opts.v2 ?? true;
  const v1 = opts.v1 ?? false;
  if (!v1 && !v2) throw new SociError('ERR_NO_INDEX', 'all lazy pull modes (SOCI v1 and v2) are disabled');
  if (v2) {
    const image = await imageManifest(client, repo, manifestDigest, opts);
    const ann = decodeManifest(image, `manifest ${manifestDigest}`).annotations?.[ANN.indexDigest];
    if (ann) {
      // Dangling annotation: the fetch fails and the image gets no lazy loading (no v1 fallback).
      try {
        const { desc, manifest } = await fetchIndexManifest(client, repo, ann, opts);
        return { desc, manifest, version: 'v2' };
      } catch (e) {
        throw new SociError('ERR_NO_INDEX', `image ${manifestDigest} names SOCI index ${ann}, which cannot be fetched: ${(e as Error).message}`, { cause: e });
      }
    }
  }
  if (v1) {
    const refs = await client.referrers(repo, manifestDigest, MT.sociIndexV1, opts.signal);
    const first = refs.find((d) => d.artifactType === MT.sociIndexV1) ?? refs[0];
    if (first) {
      const { desc, manifest } = await fetchIndexManifest(client, repo, first.digest, opts);
      return { desc, manifest, version: 'v1' };
    }
  }
  throw new SociError('ERR_NO_INDEX', `no SOCI index found for image ${manifestDigest}${v1 ? '' : ' (v1 referrers discovery is off)'}`);
}

/** The image manifest by digest: from the store when it holds it (and fills it), else the registry. */
async function imageManifest(client: RegistryClient, repo: string, digest: string, opts: FindSociIndexOptions): Promise<Buffer> {
  const held = await storedBlob(opts, digest);
  if (held) return held;
  const m = await client.getManifest(repo, digest, opts.signal ? { signal: opts.signal } : {});
  if (digestOf(m.bytes) !== digest) throw new SociError('ERR_DIGEST_MISMATCH', `manifest ${digest} does not match its digest`);
  if (opts.store?.put) await opts.store.put(m.bytes, digest).catch(() => undefined);
  return m.bytes;
}

/** A blob the store holds, when its bytes match `digest`. */
async function storedBlob(opts: FindSociIndexOptions, digest: string): Promise<Buffer | undefined> {
  if (!opts.store || !(await opts.store.has(digest))) return undefined;
  const b = await opts.store.get(digest);
  return digestOf(b) === digest ? b : undefined;
}

async function fetchIndexManifest(
  client: RegistryClient,
  repo: string,
  digest: string,
  opts: FindSociIndexOptions,
): Promise<{ desc: Descriptor; manifest: Manifest }> {
  let bytes = await storedBlob(opts, digest);
  let mediaType: string = MT.ociManifest;
  if (!bytes) {
    const m = await client.getManifest(repo, digest, opts.signal ? { signal: opts.signal } : {});
    bytes = m.bytes;
    mediaType = m.mediaType;
    if (opts.store?.put) await opts.store.put(bytes, digest).catch(() => undefined);
  }
  const manifest = decodeManifest(bytes, `SOCI index ${digest}`);
  const cfgType = manifest.config.mediaType;
  if (cfgType !== MT.sociIndexV1 && cfgType !== MT.sociIndexV2 && manifest.artifactType !== MT.sociIndexV1 && manifest.artifactType !== MT.sociIndexV2) {
    throw new SociError('ERR_NO_INDEX', `${digest} is not a SOCI index (config media type "${cfgType}")`);
  }
  return { desc: { mediaType, digest, size: bytes.length }, manifest };
}

/** image layer digest → its zTOC descriptor (mediaType exactly application/octet-stream). */
export function layerZtocMap(index: Manifest): Map<string, Descriptor> {
  return byLayer(index, MT.ztoc);
}

/** image layer digest → its prefetch artifact descriptor. */
export function layerPrefetchMap(index: Manifest): Map<string, Descriptor> {
  return byLayer(index, MT.sociPrefetch);
}

function byLayer(index: Manifest, mediaType: string): Map<string, Descriptor> {
  const out = new Map<string, Descriptor>();
  for (const d of index.layers) {
    const layer = d.annotations?.[ANN.layerDigest];
    if (d.mediaType === mediaType && layer && !out.has(layer)) out.set(layer, d);
  }
  return out;
}

export interface SociArtifacts {
  index: FoundSociIndex;
  /** layer digest → zTOC descriptor + parsed zTOC */
  ztocs: Map<string, { desc: Descriptor; ztoc: Ztoc }>;
  /** layer digest → prefetch spans (version "1.0" artifacts only) */
  prefetch: Map<string, SpanRange[]>;
  /**
   * layer digest → why its prefetch artifact could not be used (missing, corrupt, not JSON): a
   * prefetch is an optimisation, so the layer still mounts and reads fetch on demand
   */
  prefetchErrors: Map<string, string>;
}

/**
 * Finds the index and fetches every zTOC and prefetch artifact it lists (concurrently, digest
 * verified, from the same repository). Any failure → ERR_NO_INDEX for the whole image, like the
 * reference (the image then gets no lazy loading).
 */
export async function fetchSociArtifacts(
  client: RegistryClient,
  repo: string,
  manifestDigest: string,
  opts: FindSociIndexOptions = {},
): Promise<SociArtifacts> {
  return fetchIndexArtifacts(client, repo, await findSociIndex(client, repo, manifestDigest, opts), opts);
}

/**
 * The second half of fetchSociArtifacts, for callers that act on the index before its zTOCs
 * arrive (the snapshotter starts unpacking non-indexed layers meanwhile).
 */
export async function fetchIndexArtifacts(
  client: RegistryClient,
  repo: string,
  index: FoundSociIndex,
  opts: FindSociIndexOptions = {},
): Promise<SociArtifacts> {
  const ztocs = new Map<string, { desc: Descriptor; ztoc: Ztoc }>();
  const prefetch = new Map<string, SpanRange[]>();
  const prefetchErrors = new Map<string, string>();
  try {
    await Promise.all([
      ...[...layerZtocMap(index.manifest)].map(async ([layer, desc]) => {
        const bytes = await gated(opts, () => fetchVerifiedBlob(client, repo, desc, opts));
        ztocs.set(layer, { desc, ztoc: unmarshalZtoc(bytes) });
      }),
      ...[...layerPrefetchMap(index.manifest)].map(async ([layer, desc]) => {
        try {
          const bytes = await gated(opts, () => fetchVerifiedBlob(client, repo, desc, opts));
          const spans = parsePrefetch(bytes);
          if (spans) prefetch.set(layer, spans);
          else prefetchErrors.set(layer, `prefetch artifact ${desc.digest} is not a version 1.0 prefetch artifact`);
        } catch (e) {
          prefetchErrors.set(layer, `prefetch artifact ${desc.digest}: ${(e as Error).message}`);
        }
      }),
    ]);
  } catch (e) {
    if (isSociError(e, 'ERR_NO_INDEX')) throw e;
    throw new SociError('ERR_NO_INDEX', `SOCI index ${index.desc.digest}: cannot fetch its artifacts: ${(e as Error).message}`, { cause: e });
  }
  return { index, ztocs, prefetch, prefetchErrors };
}

function gated<T>(opts: FindSociIndexOptions, fn: () => Promise<T>): Promise<T> {
  return opts.gate ? opts.gate.run(fn) : fn();
}

async function fetchVerifiedBlob(client: RegistryClient, repo: string, desc: Descriptor, opts: FindSociIndexOptions): Promise<Buffer> {
  const held = await storedBlob(opts, desc.digest);
  if (held) return held;
  const parts: Buffer[] = [];
  // fetchBlob verifies size and digest of the whole body.
  for await (const c of client.fetchBlob(repo, desc.digest, { size: desc.size, ...(opts.signal ? { signal: opts.signal } : {}) })) parts.push(c);
  const bytes = Buffer.concat(parts);
  if (digestOf(bytes) !== desc.digest) throw new SociError('ERR_DIGEST_MISMATCH', `blob ${desc.digest} does not match its digest`);
  if (opts.store?.put) await opts.store.put(bytes, desc.digest).catch(() => undefined);
  return bytes;
}
