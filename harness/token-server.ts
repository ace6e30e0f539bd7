/**
 * A Docker token-auth server for tests (the `auth.token` realm of a docker-registry).
 *
 * Exports:
 *   startTokenServer(t, opts?) → TokenServer
 *     opts.users        {name: password} (default {alice: 'wonderland'})
 *     opts.access(user, repo) → actions granted (default: known user → pull,push on every repo;
 *                        anonymous → pull on repos starting with "public/", nothing elsewhere)
 *   TokenServer: { url, realm, service, issuer, certPath, requests, expireNext, postOnly,
 *                  refreshTokens, stop() }
 *     requests: every token request {method, user, scopes, granted}
 *     expireNext = n: the next n tokens are issued already expired (but claim expires_in 300),
 *                  to test refresh-on-401
 *     postOnly = true: GET answers 405 (tests the OAuth2 POST fallback)
 *     refreshTokens: {token: user} accepted for grant_type=refresh_token
 * Tokens are RS256 JWTs carrying the signing cert in `x5c`; the registry trusts that cert through
 * `rootcertbundle`. A wrong password gets 401; a scope the user may not have is left out of the
 * token (as Docker Hub does), so the registry then answers 401 insufficient_scope.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { execFileSync } from 'node:child_process';
import { createPrivateKey, randomUUID, sign, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { tempDir } from './env.js';

export interface TokenRequestRecord {
  method: string;
  user: string | undefined;
  scopes: string[];
  granted: Array<{ type: string; name: string; actions: string[] }>;
}

export interface TokenServer {
  url: string;
  realm: string;
  service: string;
  issuer: string;
  certPath: string;
  requests: TokenRequestRecord[];
  expireNext: number;
  postOnly: boolean;
  refreshTokens: Record<string, string>;
  stop(): Promise<void>;
}

export interface TokenServerOptions {
  users?: Record<string, string>;
  access?: (user: string | undefined, repo: string) => string[];
}

const b64url = (b: Buffer | string) => Buffer.from(b).toString('base64url');

export async function startTokenServer(t: { after: (fn: () => unknown) => void }, opts: TokenServerOptions = {}): Promise<TokenServer> {
  const dir = await tempDir(t, 'soci-token-');
  const keyPath = join(dir, 'key.pem');
  const certPath = join(dir, 'cert.pem');
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyPath, '-out', certPath, '-days', '2', '-subj', '/CN=soci-test-token-issuer'],
    { stdio: 'ignore' },
  );
  const key = createPrivateKey(readFileSync(keyPath));
  const certDer = new X509Certificate(readFileSync(certPath)).raw;
  const users = opts.users ?? { alice: 'wonderland' };
  const access = opts.access ?? ((user, repo) => (user ? ['pull', 'push'] : repo.startsWith('public/') ? ['pull'] : []));
  const service = 'soci-test-registry';
  const issuer = 'soci-test-issuer';

  const state: Omit<TokenServer, 'url' | 'realm' | 'stop'> = { service, issuer, certPath, requests: [], expireNext: 0, postOnly: false, refreshTokens: {} };

  function issue(user: string | undefined, scopes: string[], method: string): { token: string; expires_in: number } {
    const granted: TokenRequestRecord['granted'] = [];
    for (const s of scopes) {
      const m = /^repository:([^:]+):(.+)$/.exec(s);
      if (!m) continue;
      const allowed = access(user, m[1]!);
      const actions = m[2]!.split(',').filter((a) => allowed.includes(a));
      granted.push({ type: 'repository', name: m[1]!, actions });
    }
    state.requests.push({ method, user, scopes, granted });
    const now = Math.floor(Date.now() / 1000);
    // Expired beyond distribution's 60 s leeway, while claiming to be valid.
    const exp = state.expireNext > 0 ? now - 300 : now + 300;
    if (state.expireNext > 0) state.expireNext--;
    const headerJ = { typ: 'JWT', alg: 'RS256', x5c: [certDer.toString('base64')] };
    const claims = { iss: issuer, sub: user ?? '', aud: service, exp, nbf: now - 600, iat: now - 600, jti: randomUUID(), access: granted };
    const input = `${b64url(JSON.stringify(headerJ))}.${b64url(JSON.stringify(claims))}`;
    const sig = sign('sha256', Buffer.from(input), key);
    return { token: `${input}.${b64url(sig)}`, expires_in: 300 };
  }

  function basicUser(req: IncomingMessage): string | undefined | false {
    const h = req.headers.authorization;
    if (!h) return undefined;
    const m = /^Basic (.+)$/.exec(h);
    if (!m) return false;
    const [u, ...rest] = Buffer.from(m[1]!, 'base64').toString('utf8').split(':');
    return u !== undefined && users[u] !== undefined && users[u] === rest.join(':') ? u : false;
  }

  const server: Server = createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://x');
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (u.pathname !== '/token') return send(404, { error: 'not found' });
    if (req.method === 'GET') {
      if (state.postOnly) return send(405, { error: 'use POST' });
      const user = basicUser(req);
      if (user === false) return send(401, { error: 'invalid credentials' });
      return send(200, issue(user, u.searchParams.getAll('scope'), 'GET'));
    }
    if (req.method === 'POST') {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const f = new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
        let user: string | undefined;
        if (f.get('grant_type') === 'password') {
          const name = f.get('username') ?? '';
          if (users[name] === undefined || users[name] !== f.get('password')) return send(401, { error: 'invalid credentials' });
          user = name;
        } else if (f.get('grant_type') === 'refresh_token') {
          user = state.refreshTokens[f.get('refresh_token') ?? ''];
          if (!user) return send(401, { error: 'invalid refresh token' });
        } else return send(400, { error: 'unsupported grant_type' });
        const scopes = (f.get('scope') ?? '').split(' ').filter(Boolean);
        const tok = issue(user, scopes, 'POST');
        send(200, { access_token: tok.token, expires_in: tok.expires_in });
      });
      return;
    }
    send(405, { error: 'method' });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const ts: TokenServer = Object.assign(state, {
    url,
    realm: `${url}/token`,
    stop: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  });
  t.after(() => ts.stop());
  return ts;
}
