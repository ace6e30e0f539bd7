/**
 * Uploads (blobs: existence check, cross-repo mount, monolithic POST+PUT, chunked PATCH),
 * manifest PUT, and referrers (OCI 1.1 API with the `sha256-<hex>` tag-schema fallback).
 * Used through RegistryClient's methods; built on its transport (RegistryOps), not on the client.
 */
import { createHash } from 'node:crypto';
import { SociError } from '../errors.js';
import { pullScope, pushScope } from './auth.js';
import { checkDigest, digestOf } from '../oci/digest.js';
import { header, readBody, statusError, type HttpResponse, type Transport } from './transport.js';
import { MEDIA_TYPES, type Descriptor, type Manifest, type RegistryClientOptions } from './types.js';

/** A Buffer, or a factory giving the bytes as a stream (called again if the upload restarts). */
export type BlobData = Buffer | (() => AsyncIterable<Buffer>);

export interface PushBlobOptions {
  /** repository on the same registry that already has the blob: try a cross-repo mount first */
  mountFrom?: string;
  signal?: AbortSignal;
  /** skip the existence HEAD (default false) */
  noExistCheck?: boolean;
}

/** What uploads and referrers need of a registry client (RegistryClient is one): its transport, and two reads. */
export interface RegistryOps {
  readonly registry: string;
  readonly transport: Transport;
  readonly maxManifestBytes: number;
  readonly options: Pick<RegistryClientOptions, 'chunkSize'>;
  blobExists(repo: string, digest: string, signal?: AbortSignal): Promise<boolean>;
  getManifest(repo: string, reference: string, opts?: { signal?: AbortSignal; accept?: string }): Promise<Manifest>;
}

function fail(c: RegistryOps, res: HttpResponse, what: string): Promise<SociError> {
  return statusError(res, what, c.registry);
}

function sig(signal?: AbortSignal): { signal?: AbortSignal } {
  return signal ? { signal } : {};
}

export async function pushBlob(
  c: RegistryOps,
  repo: string,
  digest: string,
  size: number,
  data: BlobData,
  opts: PushBlobOptions = {},
): Promise<'exists' | 'mounted' | 'uploaded'> {
  const alg = checkDigest(digest);
  const t = c.transport;
  const what = `blob ${digest} to ${c.registry}/${repo}`;
  if (!opts.noExistCheck && (await c.blobExists(repo, digest, opts.signal))) return 'exists';
  if (Buffer.isBuffer(data)) {
    if (data.length !== size) throw new SociError('ERR_DIGEST_MISMATCH', `${what}: have ${data.length} bytes, expected ${size}`);
    if (digestOf(data, alg) !== digest) throw new SociError('ERR_DIGEST_MISMATCH', `${what}: content digest is ${digestOf(data, alg)}`);
  }

  let start: URL;
  const scopes = [pushScope(repo)];
  if (opts.mountFrom && opts.mountFrom !== repo) {
    scopes.push(pullScope(opts.mountFrom));
    const q = new URLSearchParams({ mount: digest, from: opts.mountFrom });
    const { res } = await t.sendRead(
      { method: 'POST', url: `/v2/${repo}/blobs/uploads/?${q}`, headers: { 'content-length': '0' }, scopes, what, ...sig(opts.signal) },
      64 * 1024,
      () => true,
    );
    if (res.status === 201) return 'mounted';
    if (res.status !== 202) throw await fail(c, res, `mount of ${what} from ${opts.mountFrom}`);
    start = location(res.headers.location, t.base, what);
  } else {
    const { res } = await t.sendRead(
      { method: 'POST', url: `/v2/${repo}/blobs/uploads/`, headers: { 'content-length': '0' }, scopes, what, ...sig(opts.signal) },
      64 * 1024,
      () => true,
    );
    if (res.status !== 202) throw await fail(c, res, `upload of ${what}`);
    start = location(res.headers.location, t.base, what);
  }

  const chunkSize = c.options.chunkSize ?? 16 * 1024 * 1024;
  let finish: URL;
  if (Buffer.isBuffer(data) && data.length <= chunkSize) {
    finish = start; // monolithic: the whole blob in the final PUT
    await putUpload(c, finish, digest, data, scopes, what, opts.signal);
    return 'uploaded';
  }
  // Chunked: PATCH fixed-size chunks, then an empty PUT with the digest.
  const hash = createHash(alg);
  let offset = 0;
  let loc = start;
  const source: AsyncIterable<Buffer> = Buffer.isBuffer(data) ? sliceBuffer(data, chunkSize) : rechunk(data(), chunkSize);
  for await (const chunk of source) {
    hash.update(chunk);
    const { res } = await t.sendRead(
      {
        method: 'PATCH',
        url: loc.href,
        headers: {
          'content-type': 'application/octet-stream',
          'content-length': String(chunk.length),
          'content-range': `${offset}-${offset + chunk.length - 1}`,
        },
        body: chunk,
        scopes,
        what,
        ...sig(opts.signal),
      },
      64 * 1024,
      () => true,
    );
    if (res.status !== 202) throw await fail(c, res, `chunk at ${offset} of ${what}`);
    loc = location(res.headers.location, t.base, what);
    offset += chunk.length;
    if (offset > size) throw new SociError('ERR_DIGEST_MISMATCH', `${what}: data is longer than ${size} bytes`);
  }
  const actual = `${alg}:${hash.digest('hex')}`;
  if (offset !== size || actual !== digest) {
    throw new SociError('ERR_DIGEST_MISMATCH', `${what}: data has ${offset} bytes with digest ${actual}, expected ${size} bytes`);
  }
  await putUpload(c, loc, digest, Buffer.alloc(0), scopes, what, opts.signal);
  return 'uploaded';
}

async function putUpload(c: RegistryOps, loc: URL, digest: string, body: Buffer, scopes: string[], what: string, signal?: AbortSignal): Promise<void> {
  const url = new URL(loc);
  url.searchParams.set('digest', digest);
  const { res } = await c.transport.sendRead(
    {
      method: 'PUT',
      url: url.href,
      headers: { 'content-type': 'application/octet-stream', 'content-length': String(body.length) },
      body,
      scopes,
      what,
      ...sig(signal),
    },
    64 * 1024,
    () => true,
  );
  if (res.status !== 201) {
    const err = await fail(c, res, `upload of ${what}`);
    if (res.status === 400 && /DIGEST_INVALID/.test(err.message)) throw new SociError('ERR_DIGEST_MISMATCH', err.message);
    throw err;
  }
}

function location(v: string | string[] | undefined, base: URL, what: string): URL {
  const s = Array.isArray(v) ? v[0] : v;
  if (!s) throw new SociError('ERR_REGISTRY', `upload of ${what}: registry sent no Location`);
  return new URL(s, base);
}

async function* sliceBuffer(b: Buffer, n: number): AsyncIterable<Buffer> {
  for (let i = 0; i < b.length; i += n) yield b.subarray(i, Math.min(b.length, i + n));
}

/** Regroups a stream into chunks of exactly n bytes (the last one shorter). */
async function* rechunk(src: AsyncIterable<Buffer>, n: number): AsyncIterable<Buffer> {
  let parts: Buffer[] = [];
  let have = 0;
  for await (const c of src) {
    let buf = c;
    while (buf.length > 0) {
      const take = Math.min(n - have, buf.length);
      parts.push(buf.subarray(0, take));
      have += take;
      buf = buf.subarray(take);
      if (have === n) {
        yield Buffer.concat(parts, have);
        parts = [];
        have = 0;
      }
    }
  }
  if (have > 0) yield Buffer.concat(parts, have);
}

export async function putManifest(c: RegistryOps, repo: string, reference: string, bytes: Buffer, mediaType: string, signal?: AbortSignal): Promise<string> {
  const byDigest = reference.includes(':');
  const alg = byDigest ? checkDigest(reference) : 'sha256';
  const digest = digestOf(bytes, alg);
  const what = `manifest ${c.registry}/${repo}${byDigest ? '@' : ':'}${reference}`;
  if (byDigest && digest !== reference) throw new SociError('ERR_DIGEST_MISMATCH', `${what}: content digest is ${digest}`);
  if (bytes.length > c.maxManifestBytes) throw new SociError('ERR_INVALID_MANIFEST', `${what} is larger than ${c.maxManifestBytes} bytes`);
  const { res } = await c.transport.sendRead(
    {
      method: 'PUT',
      url: `/v2/${repo}/manifests/${reference}`,
      headers: { 'content-type': mediaType, 'content-length': String(bytes.length) },
      body: bytes,
      scopes: [pushScope(repo)],
      what,
      ...sig(signal),
    },
    64 * 1024,
    () => true,
  );
  if (res.status !== 201 && res.status !== 200) throw await fail(c, res, `push of ${what}`);
  const announced = header(res, 'docker-content-digest');
  if (announced?.startsWith(`${alg}:`) && announced !== digest) {
    throw new SociError('ERR_DIGEST_MISMATCH', `${what}: registry stored ${announced}, content digest is ${digest}`);
  }
  return digest;
}

/** The tag-schema fallback tag for a subject: `sha256-<hex>`. */
export function referrersTag(subjectDigest: string): string {
  return subjectDigest.replace(':', '-');
}

function filterType(ds: Descriptor[], artifactType?: string): Descriptor[] {
  return artifactType ? ds.filter((d) => d.artifactType === artifactType) : ds;
}

export async function referrers(c: RegistryOps, repo: string, digest: string, artifactType?: string, signal?: AbortSignal): Promise<Descriptor[]> {
  checkDigest(digest);
  const what = `referrers of ${digest} in ${c.registry}/${repo}`;
  const q = artifactType ? `?${new URLSearchParams({ artifactType })}` : '';
  const { res, body } = await c.transport.sendRead(
    { method: 'GET', url: `/v2/${repo}/referrers/${digest}${q}`, headers: { accept: MEDIA_TYPES.ociIndex }, scopes: [pullScope(repo)], what, ...sig(signal) },
    c.maxManifestBytes,
    (s) => s === 200,
  );
  const ct = header(res, 'content-type')?.split(';')[0]?.trim();
  if (res.status === 200 && ct === MEDIA_TYPES.ociIndex) {
    const j = parseIndex(body, what);
    return filterType(j.manifests, artifactType);
  }
  if (res.status !== 200) await readBody(res.body, 64 * 1024).catch(() => undefined);
  // No referrers API (distribution answers 404): read the tag-schema index.
  try {
    const m = await c.getManifest(repo, referrersTag(digest), { ...sig(signal), accept: MEDIA_TYPES.ociIndex });
    return filterType(parseIndex(m.bytes, what).manifests, artifactType);
  } catch (e) {
    if (e instanceof SociError && e.code === 'ERR_NOT_FOUND') return [];
    throw e;
  }
}

interface Index {
  schemaVersion: number;
  mediaType?: string;
  manifests: Descriptor[];
  [k: string]: unknown;
}

function parseIndex(bytes: Buffer, what: string): Index {
  let j: Index;
  try {
    j = JSON.parse(bytes.toString('utf8')) as Index;
  } catch {
    throw new SociError('ERR_INVALID_MANIFEST', `${what}: index is not valid JSON`);
  }
  if (!j || typeof j !== 'object' || !Array.isArray(j.manifests)) throw new SociError('ERR_INVALID_MANIFEST', `${what}: not an image index`);
  return j;
}

/**
 * Fetch–update–push of the `sha256-<hex>` referrers index (what oras does for registries without
 * the API). Not atomic: two concurrent writers can lose an entry, as with every client.
 */
export async function addReferrerFallback(c: RegistryOps, repo: string, subjectDigest: string, descriptor: Descriptor, signal?: AbortSignal): Promise<void> {
  checkDigest(subjectDigest);
  const tag = referrersTag(subjectDigest);
  const what = `referrers index ${c.registry}/${repo}:${tag}`;
  let index: Index = { schemaVersion: 2, mediaType: MEDIA_TYPES.ociIndex, manifests: [] };
  try {
    const m = await c.getManifest(repo, tag, { ...sig(signal), accept: MEDIA_TYPES.ociIndex });
    index = parseIndex(m.bytes, what);
  } catch (e) {
    if (!(e instanceof SociError && e.code === 'ERR_NOT_FOUND')) throw e;
  }
  if (index.manifests.some((d) => d.digest === descriptor.digest)) return;
  index.manifests.push(descriptor);
  await putManifest(c, repo, tag, Buffer.from(JSON.stringify(index)), MEDIA_TYPES.ociIndex, signal);
}
