/**
 * OCI distribution client for one registry (reads here; uploads and referrers in push.ts).
 *
 *   const c = new RegistryClient({ registry: '127.0.0.1:5000', plainHttp: true, credentials });
 *   const m = await c.getManifest('library/ubuntu', 'latest');     // {bytes, mediaType, digest, size}
 *   for await (const chunk of c.fetchBlob(repo, digest, { size })) …  // verified at the end
 *   const buf = await c.fetchBlobRange(repo, digest, start, end);   // [start, end), exact length
 *   const src = c.blobSource(repo, digest, size);                    // BlobSource for the span manager
 *
 * Range reads remember where the registry redirected a blob (5 min, dropped on any failure) and
 * go there directly, without Authorization; whole-blob streams always ask the registry.
 */
import { createHash } from 'node:crypto';
import { SociError } from '../errors.js';
import { checkDigest, digestOf } from '../oci/digest.js';
import type { BlobSource } from '../oci/blob-source.js';
import { pullScope } from './auth.js';
import { isRetriableError, networkError, ShortBodyError } from './retry.js';
import { Transport, header, readBody, readWindow, statusError, type HttpResponse } from './transport.js';
import { pushBlob, putManifest, referrers, addReferrerFallback, type PushBlobOptions, type BlobData } from './push.js';
import { MANIFEST_ACCEPT, MANIFEST_MEDIA_TYPES, type Descriptor, type Manifest, type RegistryClientOptions } from './types.js';

/** How long a blob's redirected storage URL is reused (presigned URLs usually live 10+ min). */
const REDIRECT_TTL_MS = 5 * 60 * 1000;
function baseMediaType(ct: string | undefined): string | undefined {
  return ct?.split(';')[0]?.trim().toLowerCase() || undefined;
}

export class RegistryClient {
  readonly registry: string;
  /** @internal shared with push.ts */
  readonly transport: Transport;
  readonly maxManifestBytes: number;
  /** repo@digest → storage URL the registry redirected a blob GET to */
  private readonly redirects = new Map<string, { url: string; expiresAt: number }>();

  constructor(readonly options: RegistryClientOptions) {
    this.registry = options.registry;
    this.transport = new Transport(options);
    this.maxManifestBytes = options.maxManifestBytes ?? 4 * 1024 * 1024;
  }

  /** Release pooled connections. */
  close(): Promise<void> {
    return this.transport.close();
  }

  /** GET /v2/ — checks reachability and that credentials (if any are needed) work. */
  async ping(signal?: AbortSignal): Promise<void> {
    const { res } = await this.transport.sendRead(
      { method: 'GET', url: '/v2/', scopes: [], what: 'API version check', ...(signal ? { signal } : {}) },
      64 * 1024,
      () => true,
    );
    if (res.status !== 200) {
      res.body.resume();
      throw new SociError('ERR_REGISTRY', `${this.registry} is not an OCI registry: GET /v2/ returned ${res.status}`);
    }
  }

  /** Manifest or index by tag or digest; digest verified, size limited, media type checked. */
  async getManifest(repo: string, reference: string, opts: { signal?: AbortSignal; accept?: string } = {}): Promise<Manifest> {
    const byDigest = reference.includes(':');
    const alg = byDigest ? checkDigest(reference) : 'sha256';
    const what = `manifest ${this.registry}/${repo}${byDigest ? '@' : ':'}${reference}`;
    let out;
    try {
      out = await this.transport.sendRead(
        {
          method: 'GET',
          url: `/v2/${repo}/manifests/${reference}`,
          headers: { accept: opts.accept ?? MANIFEST_ACCEPT },
          scopes: [pullScope(repo)],
          what,
          ...(opts.signal ? { signal: opts.signal } : {}),
        },
        this.maxManifestBytes,
      );
    } catch (e) {
      if (e instanceof RangeError) throw new SociError('ERR_INVALID_MANIFEST', `${what} is larger than ${this.maxManifestBytes} bytes`);
      throw e;
    }
    const { res, body } = out;
    if (res.status !== 200) throw await statusError(res, what, this.registry);
    const bytes = body;
    let mediaType = baseMediaType(header(res, 'content-type'));
    // Some registries answer a generic type; the document's own mediaType decides then. A specific
    // type we do not handle (Docker schema 1, OCI artifact manifest) is refused as is.
    const generic = !mediaType || ['application/json', 'text/plain', 'application/octet-stream'].includes(mediaType);
    if (generic) {
      try {
        const j = JSON.parse(bytes.toString('utf8')) as { mediaType?: unknown; manifests?: unknown; schemaVersion?: unknown };
        if (typeof j.mediaType === 'string') mediaType = j.mediaType;
        else if (j.schemaVersion === 2)
          mediaType = Array.isArray(j.manifests) ? 'application/vnd.oci.image.index.v1+json' : 'application/vnd.oci.image.manifest.v1+json';
      } catch {
        throw new SociError('ERR_INVALID_MANIFEST', `${what} is not valid JSON`);
      }
    }
    if (!mediaType || !MANIFEST_MEDIA_TYPES.has(mediaType)) {
      throw new SociError('ERR_UNSUPPORTED', `${what} has unsupported media type "${mediaType ?? 'none'}"`);
    }
    const digest = digestOf(bytes, alg);
    if (byDigest && digest !== reference) {
      throw new SociError('ERR_DIGEST_MISMATCH', `${what}: content digest is ${digest}`);
    }
    const announced = header(res, 'docker-content-digest');
    if (!byDigest && announced && announced.startsWith('sha256:') && announced !== digest) {
      throw new SociError('ERR_DIGEST_MISMATCH', `${what}: registry announced ${announced} but content digest is ${digest}`);
    }
    return { bytes, mediaType, digest, size: bytes.length };
  }

  /** HEAD a manifest: its descriptor without the body (falls back to GET when the digest header is missing). */
  async headManifest(repo: string, reference: string, signal?: AbortSignal): Promise<Descriptor> {
    const what = `manifest ${this.registry}/${repo}${reference.includes(':') ? '@' : ':'}${reference}`;
    const { res } = await this.transport.sendRead(
      {
        method: 'HEAD',
        url: `/v2/${repo}/manifests/${reference}`,
        headers: { accept: MANIFEST_ACCEPT },
        scopes: [pullScope(repo)],
        what,
        ...(signal ? { signal } : {}),
      },
      0,
      () => true,
    );
    if (res.status !== 200) throw await statusError(res, what, this.registry);
    const digest = header(res, 'docker-content-digest');
    const mediaType = baseMediaType(header(res, 'content-type'));
    const size = Number(header(res, 'content-length'));
    if (!digest || !mediaType || !MANIFEST_MEDIA_TYPES.has(mediaType) || !Number.isFinite(size)) {
      const m = await this.getManifest(repo, reference, signal ? { signal } : {});
      return { mediaType: m.mediaType, digest: m.digest, size: m.size };
    }
    if (reference.includes(':') && digest !== reference) throw new SociError('ERR_DIGEST_MISMATCH', `${what}: registry announced ${digest}`);
    return { mediaType, digest, size };
  }

  /** Size of a blob, or undefined when the repository does not have it. */
  async headBlob(repo: string, digest: string, signal?: AbortSignal): Promise<number | undefined> {
    checkDigest(digest);
    const what = `blob ${digest} in ${repo}`;
    const { res } = await this.transport.sendRead(
      { method: 'HEAD', url: `/v2/${repo}/blobs/${digest}`, scopes: [pullScope(repo)], what, ...(signal ? { signal } : {}) },
      0,
      () => true,
    );
    if (res.status === 404) return undefined;
    if (res.status !== 200) throw await statusError(res, what, this.registry);
    return Number(header(res, 'content-length'));
  }

  async blobExists(repo: string, digest: string, signal?: AbortSignal): Promise<boolean> {
    return (await this.headBlob(repo, digest, signal)) !== undefined;
  }

  /**
   * Streams a whole blob. Interrupted bodies resume with a Range request. At the end the size
   * (when given) and digest are checked; on mismatch the iteration throws ERR_DIGEST_MISMATCH
   * instead of finishing, so a consumer must not commit data before the loop completes.
   */
  async *fetchBlob(repo: string, digest: string, opts: { size?: number; signal?: AbortSignal } = {}): AsyncGenerator<Buffer, void, undefined> {
    const alg = checkDigest(digest);
    const hash = createHash(alg);
    let got = 0;
    for await (const chunk of this.streamBytes(repo, digest, 0, opts.size, false, opts.signal)) {
      got += chunk.length;
      hash.update(chunk);
      yield chunk;
    }
    const actual = `${alg}:${hash.digest('hex')}`;
    if (actual !== digest)
      throw new SociError('ERR_DIGEST_MISMATCH', `blob ${digest} in ${this.registry}/${repo}: received ${got} bytes with digest ${actual}`);
  }

  /**
   * Streams bytes [start, end) of a blob, exactly end-start of them, for chunked downloads. An
   * interrupted body resumes with a Range request from the byte it broke at. Nothing here is
   * verified: the caller hashes the whole blob in order before any of it is used.
   */
  streamBlobRange(repo: string, digest: string, start: number, end: number, signal?: AbortSignal): AsyncGenerator<Buffer, void, undefined> {
    checkDigest(digest);
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end <= start) {
      throw new SociError('ERR_INTERNAL', `invalid range [${start}, ${end}) for blob ${digest}`);
    }
    return this.streamBytes(repo, digest, start, end, true, signal);
  }

  /**
   * The body of a blob from `start` to `end` (its end when undefined). A `ranged` read asks for
   * [start, end) and stops at `end` even when the server ignores Range; a whole-blob read asks for
   * a range only to resume, and more than `end` bytes fail it as a mismatch. Every retry asks for
   * the bytes not yet received; a 200 (Range ignored) is skipped up to them.
   */
  private async *streamBytes(
    repo: string,
    digest: string,
    start: number,
    end: number | undefined,
    ranged: boolean,
    signal?: AbortSignal,
  ): AsyncGenerator<Buffer, void, undefined> {
    const what = `blob ${digest} in ${this.registry}/${repo}`;
    const budget = this.transport.newBudget(signal);
    let pos = start;
    for (;;) {
      const last = end === undefined ? '' : String(end - 1);
      const res = await this.transport.send(
        {
          method: 'GET',
          url: `/v2/${repo}/blobs/${digest}`,
          headers: pos > 0 || ranged ? { range: `bytes=${pos}-${last}`, 'accept-encoding': 'identity' } : {},
          scopes: [pullScope(repo)],
          what,
          ...(signal ? { signal } : {}),
        },
        budget,
      );
      let skip = 0;
      if (res.status === 206) {
        const m = /bytes (\d+)-/.exec(header(res, 'content-range') ?? '');
        if (!m || Number(m[1]) !== pos) {
          res.body.resume();
          throw new SociError('ERR_REGISTRY', `${what}: registry answered a request from byte ${pos} with range "${header(res, 'content-range') ?? ''}"`);
        }
      } else if (res.status === 200) {
        if (pos > 0) this.options.onRangeIgnored?.({ registry: this.registry, repo, digest });
        skip = pos; // server ignored Range: drop what we already have
      } else {
        throw await statusError(res, what, this.registry);
      }
      try {
        for await (const c of res.body as AsyncIterable<Buffer>) {
          let chunk = c;
          if (skip > 0) {
            const n = Math.min(skip, chunk.length);
            skip -= n;
            chunk = chunk.subarray(n);
            if (chunk.length === 0) continue;
          }
          if (end !== undefined && pos + chunk.length > end) {
            // A 200 body goes on past the range: keep what was asked for and stop there.
            if (res.status === 206 || !ranged) throw new SociError('ERR_DIGEST_MISMATCH', `${what}: more than the expected ${end - start} bytes`);
            chunk = chunk.subarray(0, end - pos);
          }
          pos += chunk.length;
          if (chunk.length > 0) yield chunk;
          if (end !== undefined && pos === end) break;
        }
        if (end !== undefined && pos < end) throw new ShortBodyError('short body');
        break;
      } catch (e) {
        res.body.destroy();
        if (e instanceof SociError || !isRetriableError(e) || !(await budget.next())) {
          signal?.throwIfAborted();
          throw networkError(e, `GET ${what}`, budget.attempts);
        }
      } finally {
        if (!res.body.destroyed) res.body.destroy();
      }
    }
  }

  /** Bytes [start, end) of a blob, exactly end-start of them (the caller verifies span digests). */
  async fetchBlobRange(repo: string, digest: string, start: number, end: number, signal?: AbortSignal): Promise<Buffer> {
    checkDigest(digest);
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start) {
      throw new SociError('ERR_INTERNAL', `invalid range [${start}, ${end}) for blob ${digest}`);
    }
    if (end === start) return Buffer.alloc(0);
    const what = `blob ${digest} bytes ${start}-${end - 1} in ${this.registry}/${repo}`;
    const headers = { range: `bytes=${start}-${end - 1}`, 'accept-encoding': 'identity' };
    const ok = (s: number) => s === 200 || s === 206;
    // A 206 body longer than asked for is refused as it streams (a broken or hostile server).
    const read = (res: HttpResponse) =>
      res.status === 200
        ? readWindow(res.body, start, end)
        : readBody(res.body, end - start).catch((e: unknown) => {
            throw e instanceof RangeError ? new SociError('ERR_REGISTRY', `${what}: more bytes than asked for`) : e;
          });
    const key = `${repo}@${digest}`;
    const cached = this.redirects.get(key);
    let out: { res: HttpResponse; body: Buffer } | undefined;
    if (cached && cached.expiresAt > Date.now()) {
      // Straight to the storage URL the registry redirected to before (S3/CDN), as SOCI does.
      out = await this.transport.sendRead(
        { method: 'GET', url: cached.url, headers, scopes: [], what, anonymous: true, ...(signal ? { signal } : {}) },
        Infinity,
        ok,
        this.options.blobRetry,
        read,
      );
      if (!ok(out.res.status)) {
        out.res.body.resume();
        this.redirects.delete(key); // expired signature or moved: ask the registry again
        out = undefined;
      }
    }
    if (!out) {
      out = await this.transport.sendRead(
        { method: 'GET', url: `/v2/${repo}/blobs/${digest}`, headers, scopes: [pullScope(repo)], what, ...(signal ? { signal } : {}) },
        Infinity,
        ok,
        this.options.blobRetry,
        read,
      );
      if (ok(out.res.status) && out.res.url.origin !== this.transport.base.origin) {
        if (this.redirects.size >= 1024) this.redirects.delete(this.redirects.keys().next().value!);
        this.redirects.set(key, { url: out.res.url.href, expiresAt: Date.now() + REDIRECT_TTL_MS });
      }
    }
    const { res, body } = out;
    if (res.status === 206) {
      const m = /bytes (\d+)-(\d+)/.exec(header(res, 'content-range') ?? '');
      if (!m || Number(m[1]) !== start) throw new SociError('ERR_REGISTRY', `${what}: unexpected Content-Range "${header(res, 'content-range') ?? ''}"`);
      if (body.length !== end - start) throw new SociError('ERR_REGISTRY', `${what}: got ${body.length} bytes (range beyond the blob's end?)`);
      return body;
    }
    if (res.status === 200) {
      this.options.onRangeIgnored?.({ registry: this.registry, repo, digest });
      return body;
    }
    throw await statusError(res, what, this.registry);
  }

  /** scheme://host[:port] the client speaks to */
  get origin(): string {
    return this.transport.base.origin;
  }

  /**
   * One authenticated GET of `/v2/<repo>/<path>` for diagnostics (`soci doctor`): the status, the
   * headers, the URL it ended at after redirects, and at most `limit` bytes of the body.
   */
  async probe(
    repo: string,
    path: string,
    headers: Record<string, string> = {},
    limit = 64 * 1024,
  ): Promise<{ status: number; headers: HttpResponse['headers']; url: URL; body: Buffer }> {
    const res = await this.transport.send({
      method: 'GET',
      url: `/v2/${repo}/${path}`,
      headers,
      scopes: [pullScope(repo)],
      what: `${path} in ${this.registry}/${repo}`,
    });
    const chunks: Buffer[] = [];
    let n = 0;
    for await (const c of res.body as AsyncIterable<Buffer>) {
      chunks.push(c);
      n += c.length;
      if (n >= limit) break; // leaving the loop closes the body
    }
    return { status: res.status, headers: res.headers, url: res.url, body: Buffer.concat(chunks).subarray(0, limit) };
  }

  blobSource(repo: string, digest: string, size: number): BlobSource {
    checkDigest(digest);
    return {
      size,
      read: (start: number, end: number, signal?: AbortSignal) => {
        if (end > size) return Promise.reject(new SociError('ERR_INTERNAL', `read [${start}, ${end}) beyond blob ${digest} of ${size} bytes`));
        return this.fetchBlobRange(repo, digest, start, end, signal);
      },
    };
  }

  pushBlob(repo: string, digest: string, size: number, data: BlobData, opts: PushBlobOptions = {}): Promise<'exists' | 'mounted' | 'uploaded'> {
    return pushBlob(this, repo, digest, size, data, opts);
  }

  /** PUT a manifest by tag or digest; returns its digest. */
  putManifest(repo: string, reference: string, bytes: Buffer, mediaType: string, signal?: AbortSignal): Promise<string> {
    return putManifest(this, repo, reference, bytes, mediaType, signal);
  }

  /** Referrers of a manifest: OCI 1.1 API, else the `sha256-<hex>` tag index. */
  referrers(repo: string, digest: string, artifactType?: string, signal?: AbortSignal): Promise<Descriptor[]> {
    return referrers(this, repo, digest, artifactType, signal);
  }

  /** Adds a descriptor to the `sha256-<hex>` referrers tag index (for registries without the API). */
  addReferrerFallback(repo: string, subjectDigest: string, descriptor: Descriptor, signal?: AbortSignal): Promise<void> {
    return addReferrerFallback(this, repo, subjectDigest, descriptor, signal);
  }
}

export { readBody };
