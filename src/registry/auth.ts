/**
 * Registry authentication state for one registry: the challenge it sent (Basic or Bearer), and a
 * token cache keyed by the sorted scope set. Concurrent requests for the same scopes share one
 * token fetch. Tokens and passwords never leave this file except in Authorization headers.
 */
import { SociError } from '../errors.js';
import type { Challenge } from './challenge.js';
import type { CredentialProvider, Credentials } from './types.js';

export interface TokenHttpResponse {
  status: number;
  body: Buffer;
}
/** Performs one token-server request (with retries on 5xx/network errors). */
export type TokenRequester = (
  method: 'GET' | 'POST',
  url: URL,
  headers: Record<string, string>,
  body?: Buffer,
  signal?: AbortSignal,
) => Promise<TokenHttpResponse>;

interface CachedToken {
  header: string;
  expiresAt: number;
}

export function pullScope(repo: string): string {
  return `repository:${repo}:pull`;
}
export function pushScope(repo: string): string {
  return `repository:${repo}:pull,push`;
}

export class Authenticator {
  private challenge: Challenge | undefined;
  private readonly tokens = new Map<string, CachedToken>();
  private readonly inflight = new Map<string, Promise<CachedToken>>();
  private credsPromise: Promise<Credentials | undefined> | undefined;
  private since = Date.now();

  /** `ttlMs` > 0: credentials and tokens are resolved again once they are this old (AWS's auth_client_ttl_sec). */
  constructor(
    private readonly registry: string,
    private readonly credentials: CredentialProvider | undefined,
    private readonly request: TokenRequester,
    private readonly ttlMs = 0,
  ) {}

  /** Remember how this registry wants to be authenticated (from a 401's WWW-Authenticate). */
  learn(ch: Challenge): void {
    // The scope in a challenge belongs to the request that got it; keep realm/service only.
    const { scope: _scope, error: _error, ...params } = ch.params;
    this.challenge = { scheme: ch.scheme, params };
  }

  get scheme(): 'basic' | 'bearer' | undefined {
    return this.challenge?.scheme;
  }

  /**
   * The Authorization header for these scopes, or undefined before any challenge was seen.
   * `fresh` bypasses the token cache.
   */
  async authorization(scopes: string[], fresh = false, signal?: AbortSignal): Promise<string | undefined> {
    const ch = this.challenge;
    if (!ch) return undefined;
    if (this.ttlMs > 0 && Date.now() - this.since >= this.ttlMs) {
      this.since = Date.now();
      this.credsPromise = undefined;
      this.tokens.clear();
    }
    // After a refusal, read credentials again: helpers and config files may have rotated them.
    if (fresh) this.credsPromise = undefined;
    if (ch.scheme === 'basic') {
      const c = await this.creds();
      if (!c || c.username === undefined || c.password === undefined) {
        this.credsPromise = undefined; // none yet: the next request asks again (a keychain may have them by then)
        throw new SociError('ERR_AUTH', `authentication failed for ${this.registry}: registry requires a username and password and none are configured`);
      }
      return `Basic ${Buffer.from(`${c.username}:${c.password}`).toString('base64')}`;
    }
    const all = normalizeScopes(scopes);
    const key = scopeKey(all);
    const cached = this.tokens.get(key);
    if (!fresh && cached && cached.expiresAt > Date.now()) return cached.header;
    let p = this.inflight.get(key);
    if (!p) {
      p = this.fetchToken(ch, all, signal).finally(() => this.inflight.delete(key));
      this.inflight.set(key, p);
    }
    const t = await p;
    this.tokens.set(key, t);
    return t.header;
  }

  private creds(): Promise<Credentials | undefined> {
    // Resolved once per client: credential helpers are processes, not free.
    this.credsPromise ??= this.credentials ? this.credentials(this.registry) : Promise.resolve(undefined);
    return this.credsPromise;
  }

  private async fetchToken(ch: Challenge, scopes: string[], signal?: AbortSignal): Promise<CachedToken> {
    const realm = ch.params.realm;
    if (!realm) throw new SociError('ERR_AUTH', `authentication failed for ${this.registry}: bearer challenge without a realm`);
    let url: URL;
    try {
      url = new URL(realm);
    } catch {
      throw new SociError('ERR_AUTH', `authentication failed for ${this.registry}: invalid token realm`);
    }
    const service = ch.params.service;
    const c = await this.creds();
    let res: TokenHttpResponse;
    if (c?.identityToken) {
      res = await this.oauthPost(url, service, scopes, { grant_type: 'refresh_token', refresh_token: c.identityToken }, signal);
    } else {
      const q = new URL(url);
      if (service) q.searchParams.set('service', service);
      for (const s of scopes) q.searchParams.append('scope', s);
      const headers: Record<string, string> = {};
      if (c?.username !== undefined && c.password !== undefined) {
        headers.authorization = `Basic ${Buffer.from(`${c.username}:${c.password}`).toString('base64')}`;
      }
      res = await this.request('GET', q, headers, undefined, signal);
      // Some token servers only implement the OAuth2 POST form (containerd falls back the other way).
      if ((res.status === 404 || res.status === 405) && c?.username !== undefined && c.password !== undefined) {
        res = await this.oauthPost(url, service, scopes, { grant_type: 'password', username: c.username, password: c.password }, signal);
      }
    }
    if (res.status === 401 || res.status === 403) {
      this.credsPromise = undefined; // refused or absent: the next token fetch reads them again
      throw new SociError(
        'ERR_AUTH',
        `authentication failed for ${this.registry}: token server refused ${c ? 'the credentials' : 'anonymous access'} (${res.status})`,
      );
    }
    if (res.status < 200 || res.status >= 300) {
      throw new SociError('ERR_AUTH', `authentication failed for ${this.registry}: token server returned ${res.status}`);
    }
    let j: { token?: string; access_token?: string; expires_in?: number };
    try {
      j = JSON.parse(res.body.toString('utf8'));
    } catch {
      throw new SociError('ERR_AUTH', `authentication failed for ${this.registry}: token server returned invalid JSON`);
    }
    const token = j.token ?? j.access_token;
    if (!token) throw new SociError('ERR_AUTH', `authentication failed for ${this.registry}: token server returned no token`);
    // Docker's spec: default lifetime 60 s; renew a little early.
    const life = typeof j.expires_in === 'number' && j.expires_in > 0 ? j.expires_in : 60;
    return { header: `Bearer ${token}`, expiresAt: Date.now() + Math.max(1, life - Math.min(10, life / 10)) * 1000 };
  }

  private oauthPost(url: URL, service: string | undefined, scopes: string[], grant: Record<string, string>, signal?: AbortSignal) {
    const form = new URLSearchParams({ ...grant, client_id: 'soci-ts', ...(service ? { service } : {}), scope: scopes.join(' ') });
    return this.request('POST', url, { 'content-type': 'application/x-www-form-urlencoded' }, Buffer.from(form.toString()), signal);
  }
}

/**
 * Merges scopes naming the same resource (`repository:a:pull` + `repository:a:push,pull` →
 * `repository:a:pull,push`) so equal access always maps to one cache key and one token request.
 */
export function normalizeScopes(scopes: string[]): string[] {
  const byResource = new Map<string, Set<string>>();
  for (const s of scopes.flatMap((x) => x.split(' ')).filter(Boolean)) {
    const i = s.lastIndexOf(':');
    if (i <= 0) continue;
    const res = s.slice(0, i);
    const set = byResource.get(res) ?? new Set<string>();
    for (const a of s.slice(i + 1).split(',')) if (a) set.add(a);
    byResource.set(res, set);
  }
  const order = (a: string) => (a === 'pull' ? 0 : a === 'push' ? 1 : 2);
  return [...byResource].map(([res, set]) => `${res}:${[...set].sort((a, b) => order(a) - order(b) || a.localeCompare(b)).join(',')}`).sort();
}

function scopeKey(scopes: string[]): string {
  return [...scopes].sort().join(' ');
}
