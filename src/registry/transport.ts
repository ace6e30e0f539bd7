/**
 * HTTP transport for one registry on an undici Agent (keep-alive, HTTP/1.1): authentication
 * (challenge → Authorization), retries (RetryBudget), redirects (keeping Range, dropping
 * Authorization when the origin changes), per-request timeouts, and one debug line per request.
 */
import { Readable } from 'node:stream';
import { rootCertificates } from 'node:tls';
import { Agent, type Dispatcher } from 'undici';
import { SociError } from '../errors.js';
import { VERSION } from '../version.js';
import { apiHost } from '../oci/reference.js';
import { Authenticator, type TokenHttpResponse } from './auth.js';
import { parseChallenge } from './challenge.js';
import { requestHeaders } from './request-headers.js';
import { RequestTimeoutError, RetryBudget, ShortBodyError, isRetriableError, isRetriableStatus, networkError, parseRetryAfter } from './retry.js';
import type { RegistryClientOptions, RetryOptions } from './types.js';

export type Body = Buffer | (() => AsyncIterable<Buffer>);

export interface SendRequest {
  method: 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** path + query on the registry (starting with /v2/), or an absolute URL (upload locations) */
  url: string;
  headers?: Record<string, string>;
  body?: Body;
  /** token scopes this request needs */
  scopes: string[];
  signal?: AbortSignal;
  /** what the request is, for error messages (e.g. `blob sha256:… in repo`) */
  what: string;
  /** send no Authorization and return 401/403 as is (cached storage URLs) */
  anonymous?: boolean;
}

export interface HttpResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Dispatcher.ResponseData['body'];
  /** final URL after redirects */
  url: URL;
  /** the body, once sendRead has read it */
  bytes?: Buffer;
}

const SAFE_QUERY = new Set(['digest', 'mount', 'from', 'n', 'last', 'artifactType', 'service', 'scope']);

/** URL for logs: query values other than a few harmless ones are replaced (upload state, signatures). */
export function redactUrl(u: URL): string {
  const parts: string[] = [];
  for (const [k, v] of u.searchParams) parts.push(`${k}=${SAFE_QUERY.has(k) ? v : '…'}`);
  return `${u.origin}${u.pathname}${parts.length ? `?${parts.join('&')}` : ''}`;
}

export function header(res: { headers: HttpResponse['headers'] }, name: string): string | undefined {
  const v = res.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** Reads a whole body, refusing more than `limit` bytes. */
export async function readBody(body: HttpResponse['body'], limit = Infinity): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of body as AsyncIterable<Buffer>) {
    n += c.length;
    if (n > limit) {
      body.destroy();
      throw new RangeError('body too large');
    }
    chunks.push(c);
  }
  return Buffer.concat(chunks, n);
}

/**
 * Bytes [start, end) of a body that holds a whole blob (a registry that ignored Range): what comes
 * before is dropped as it streams, and the connection is closed once `end` is reached, so a 1 GB
 * blob costs at most `end` bytes of transfer and never more than end-start of memory.
 */
export async function readWindow(body: HttpResponse['body'], start: number, end: number): Promise<Buffer> {
  const out = Buffer.alloc(end - start);
  let pos = 0;
  for await (const c of body as AsyncIterable<Buffer>) {
    const from = Math.max(start, pos);
    const to = Math.min(end, pos + c.length);
    if (to > from) c.copy(out, from - start, from - pos, to - pos);
    pos += c.length;
    if (pos >= end) {
      body.destroy();
      return out;
    }
  }
  throw new ShortBodyError('short body');
}

/** One-line description of a registry error body (distribution's `{"errors":[{code,message}]}`). */
export async function errorDetail(res: HttpResponse): Promise<string> {
  try {
    const b = res.bytes ?? (await readBody(res.body, 64 * 1024));
    const j = JSON.parse(b.toString('utf8')) as { errors?: Array<{ code?: string; message?: string }> };
    const e = j.errors?.[0];
    if (e) return `${e.code ?? ''}${e.message ? ` ${e.message}` : ''}`.trim().replace(/\s+/g, ' ').slice(0, 200);
  } catch {
    /* not JSON */
  }
  return '';
}

/** Maps a final unexpected status to a one-line SociError (and drains the body). */
export async function statusError(res: HttpResponse, what: string, registry: string): Promise<SociError> {
  const detail = await errorDetail(res).catch(() => '');
  if (res.status === 404) return new SociError('ERR_NOT_FOUND', `${what} not found${detail ? ` (${detail})` : ''}`);
  if (res.status === 401 || res.status === 403) return new SociError('ERR_AUTH', `authentication failed for ${registry}: ${what} (${res.status})`);
  if (res.status === 415) return new SociError('ERR_UNSUPPORTED', `${what}: registry refused the media type (415)${detail ? ` ${detail}` : ''}`);
  return new SociError('ERR_REGISTRY', `${what}: HTTP ${res.status}${detail ? ` ${detail}` : ''}`);
}

export class Transport {
  readonly agent: Agent;
  readonly base: URL;
  readonly auth: Authenticator;
  private readonly userAgent: string;

  constructor(readonly opts: RegistryClientOptions) {
    const ca = opts.ca === undefined ? undefined : [...rootCertificates, ...(Array.isArray(opts.ca) ? opts.ca : [opts.ca])];
    this.agent = new Agent({
      keepAliveTimeout: 30_000,
      connections: opts.connections === 0 ? null : (opts.connections ?? 8),
      connect: {
        rejectUnauthorized: !opts.insecure,
        ...(ca ? { ca } : {}),
        ...(opts.clientCert ? { cert: opts.clientCert.cert, key: opts.clientCert.key } : {}),
        timeout: opts.connectTimeoutMs ?? 10_000,
      },
    });
    this.base = new URL(`${opts.plainHttp ? 'http' : 'https'}://${apiHost(opts.registry)}`);
    this.userAgent = opts.userAgent ?? `soci-ts/${VERSION}`;
    this.auth = new Authenticator(opts.registry, opts.credentials, (m, u, h, b, s) => this.tokenRequest(m, u, h, b, s), opts.authTtlMs);
  }

  close(): Promise<void> {
    return this.agent.close();
  }

  newBudget(signal?: AbortSignal, retry: RetryOptions | undefined = this.opts.retry): RetryBudget {
    return new RetryBudget(retry, signal);
  }

  /**
   * The signal of one attempt: the caller's, plus the whole-request timeout when one is set. `done`
   * clears the timer; the caller calls it when the body is consumed or abandoned.
   */
  private attemptSignal(signal: AbortSignal | undefined): { signal: AbortSignal | undefined; done?: () => void } {
    const limit = this.opts.requestTimeoutMs;
    if (!limit || limit <= 0) return { signal };
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(new RequestTimeoutError(`request timeout of ${limit} ms exceeded`)), limit);
    timer.unref();
    return { signal: signal ? AbortSignal.any([signal, ac.signal]) : ac.signal, done: () => clearTimeout(timer) };
  }

  /** One HTTP round trip without auth/retry/redirect handling. */
  async once(method: string, url: URL, headers: Record<string, string>, body: Body | undefined, signal?: AbortSignal): Promise<HttpResponse> {
    const t0 = Date.now();
    const log = this.opts.debug;
    const attempt = this.attemptSignal(signal);
    try {
      const res = await this.agent.request({
        origin: url.origin,
        path: url.pathname + url.search,
        method: method as Dispatcher.HttpMethod,
        headers: { 'user-agent': this.userAgent, ...requestHeaders(), ...headers },
        body: body === undefined ? null : Buffer.isBuffer(body) ? body : Readable.from(body()),
        signal: attempt.signal ?? null,
        headersTimeout: this.opts.headersTimeoutMs ?? 30_000,
        bodyTimeout: this.opts.bodyTimeoutMs ?? 30_000,
      });
      log?.debug({}, `${method} ${redactUrl(url)} ${res.statusCode} ${Date.now() - t0}ms`);
      if (attempt.done) res.body.once('close', attempt.done);
      return { status: res.statusCode, headers: res.headers, body: res.body, url };
    } catch (e) {
      attempt.done?.();
      log?.debug({}, `${method} ${redactUrl(url)} failed ${(e as { code?: string }).code ?? 'error'} ${Date.now() - t0}ms`);
      throw e;
    }
  }

  /**
   * Sends a request with auth, retries and redirects. Returns any response that is not a
   * retriable failure or an auth failure; the caller checks the status and consumes the body.
   */
  async send(req: SendRequest, budget = this.newBudget(req.signal)): Promise<HttpResponse> {
    const start = new URL(req.url, this.base);
    const replayable = req.body === undefined || Buffer.isBuffer(req.body) || req.method !== 'PATCH';
    let authRounds = 0;
    let scopes = req.scopes;
    let authz = req.anonymous ? undefined : await this.auth.authorization(scopes, false, req.signal);
    for (;;) {
      let res: HttpResponse;
      try {
        res = await this.followRedirects(req, start, authz);
      } catch (e) {
        if (e instanceof SociError || !isRetriableError(e) || !replayable || !(await budget.next())) {
          req.signal?.throwIfAborted();
          throw networkError(e, `${req.method} ${req.what} from ${this.opts.registry}`, budget.attempts);
        }
        continue;
      }
      if (req.anonymous && (res.status === 401 || res.status === 403)) return res;
      if (res.status === 401 && res.url.origin === start.origin) {
        const ch = parseChallenge(res.headers['www-authenticate']);
        res.body.resume();
        const sentBasic = authz?.startsWith('Basic ');
        // Basic credentials refused: read them once more, as containerd's authorizer does (a
        // keychain or a credential helper may have rotated them since); retried only if they changed.
        const basicAgain =
          sentBasic && ch?.scheme === 'basic' && authRounds === 0 ? await this.auth.authorization(scopes, true, req.signal).catch(() => undefined) : undefined;
        if (!ch || authRounds >= 2 || (sentBasic && ch.scheme === 'basic' && (basicAgain === undefined || basicAgain === authz))) {
          const why = ch?.params.error ? `: ${ch.params.error.replace(/[^\w .-]/g, '')}` : '';
          throw new SociError('ERR_AUTH', `authentication failed for ${this.opts.registry}: ${req.method} ${req.what} unauthorized (401${why})`);
        }
        if (basicAgain !== undefined) authz = basicAgain;
        else {
          this.auth.learn(ch);
          if (ch.params.scope) scopes = [...scopes, ch.params.scope];
          // A token we already had may have expired or lost its scope: ask for a fresh one.
          authz = await this.auth.authorization(scopes, authz !== undefined, req.signal);
        }
        authRounds++;
        continue;
      }
      if (res.status === 403) {
        const detail = await errorDetail(res);
        throw new SociError(
          'ERR_AUTH',
          `authentication failed for ${this.opts.registry}: ${req.method} ${req.what} denied (403)${detail ? `: ${detail}` : ''}`,
        );
      }
      if (isRetriableStatus(res.status)) {
        const retryAfter = parseRetryAfter(res.headers['retry-after']);
        const detail = await errorDetail(res);
        if (replayable && (await budget.next(retryAfter))) continue;
        throw new SociError(
          'ERR_REGISTRY',
          `${req.method} ${req.what} from ${this.opts.registry}: HTTP ${res.status}${detail ? ` ${detail}` : ''} after ${budget.attempts} attempts`,
        );
      }
      return res;
    }
  }

  /** GET/HEAD follow 3xx Location; Range is kept, Authorization only sent to the original origin. */
  private async followRedirects(req: SendRequest, start: URL, authz: string | undefined): Promise<HttpResponse> {
    let url = start;
    const max = this.opts.maxRedirects ?? 5;
    for (let i = 0; ; i++) {
      const headers: Record<string, string> = { ...req.headers };
      if (authz && url.origin === start.origin) headers.authorization = authz;
      const res = await this.once(req.method, url, headers, req.body, req.signal);
      const loc = header(res, 'location');
      const isRedirect = [301, 302, 303, 307, 308].includes(res.status) && loc !== undefined;
      if (!isRedirect || (req.method !== 'GET' && req.method !== 'HEAD')) return res;
      res.body.resume();
      if (i >= max) throw new SociError('ERR_REGISTRY', `${req.method} ${req.what} from ${this.opts.registry}: more than ${max} redirects`);
      url = new URL(loc, url);
    }
  }

  /** Like send, then reads the body; a body that fails mid-way is retried within the same budget. */
  /**
   * send() and read the body, retrying a body cut short within the same budget. `read`, when given,
   * reads the body its own way (and checks its length itself); else the whole body, up to `limit`.
   */
  async sendRead(
    req: SendRequest,
    limit = Infinity,
    okStatus: (s: number) => boolean = (s) => s >= 200 && s < 300,
    retry?: RetryOptions,
    read?: (res: HttpResponse) => Promise<Buffer>,
  ): Promise<{ res: HttpResponse; body: Buffer }> {
    const budget = this.newBudget(req.signal, retry ?? this.opts.retry);
    for (;;) {
      const res = await this.send(req, budget);
      if (!okStatus(res.status)) return { res, body: Buffer.alloc(0) };
      try {
        if (read) return { res, body: await read(res) };
        const body = req.method === 'HEAD' ? Buffer.alloc(0) : await readBody(res.body, limit);
        const len = header(res, 'content-length');
        if (req.method !== 'HEAD' && len !== undefined && Number(len) !== body.length) throw new ShortBodyError('short body');
        res.bytes = body;
        return { res, body };
      } catch (e) {
        if (e instanceof RangeError) throw e;
        if (!isRetriableError(e) || !(await budget.next())) {
          req.signal?.throwIfAborted();
          throw networkError(e, `${req.method} ${req.what} from ${this.opts.registry}`, budget.attempts);
        }
      }
    }
  }

  private async tokenRequest(
    method: 'GET' | 'POST',
    url: URL,
    headers: Record<string, string>,
    body?: Buffer,
    signal?: AbortSignal,
  ): Promise<TokenHttpResponse> {
    const budget = this.newBudget(signal);
    for (;;) {
      try {
        const res = await this.once(method, url, headers, body, signal);
        if (isRetriableStatus(res.status)) {
          res.body.resume();
          if (await budget.next(parseRetryAfter(res.headers['retry-after']))) continue;
          return { status: res.status, body: Buffer.alloc(0) };
        }
        return { status: res.status, body: await readBody(res.body, 1024 * 1024) };
      } catch (e) {
        if (!isRetriableError(e) || !(await budget.next())) {
          signal?.throwIfAborted();
          throw networkError(e, `token request for ${this.opts.registry}`, budget.attempts);
        }
      }
    }
  }
}
