/**
 * A `kubernetes.io/dockerconfigjson` Secret read as Docker's config file reads it (AWS's kubeconfig
 * keychain reads Secrets with Docker's configfile package), and the registry lookup over several
 * Secrets, for the kubeconfig keychain (kubeconfig-keychain.ts).
 *
 * In a Secret's `auths`, the key equal to the registry (`https://index.docker.io/v1/` for docker.io),
 * else a key whose hostname is the registry (`host`, `host:port`, `https://host/v1/`); `auth`
 * (base64 user:password) overrides `username`/`password`; an `identitytoken` is used instead of them;
 * `registrytoken` is ignored, as AWS's does; field names match as Go's encoding/json matches them
 * (case-insensitively). Unlike AWS's, docker.io also matches keys whose hostname is docker.io,
 * index.docker.io or registry-1.docker.io. A malformed document throws MalformedSecret, whose text
 * never quotes the data.
 */
import type { V1Secret } from '@kubernetes/client-node';
import type { Credentials } from '../registry/types.js';

export const DOCKERCONFIGJSON_TYPE = 'kubernetes.io/dockerconfigjson';
const DATA_KEY = '.dockerconfigjson';
const HUB_KEY = 'https://index.docker.io/v1/';
const HUB_HOSTS = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io']);

/** One `auths` entry; `credentials` undefined when it holds none. */
export interface AuthEntry {
  key: string;
  /** the key's hostname (`host[:port]`, lowercase; docker.io for Docker Hub's names) */
  host: string;
  credentials?: Credentials;
}

/** Why a Secret is skipped: fixed text that never quotes its data. */
export class MalformedSecret extends Error {}

/** Docker's hostname of an `auths` key or a registry name: scheme, path and userinfo dropped. */
export function authKeyHost(key: string): string {
  let s = key.trim();
  const scheme = s.indexOf('://');
  if (scheme >= 0) s = s.slice(scheme + 3);
  s = s.split(/[/?#]/)[0]!;
  s = s.slice(s.lastIndexOf('@') + 1).toLowerCase();
  return HUB_HOSTS.has(s) ? 'docker.io' : s;
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** A member matched as Go's encoding/json matches a field: the exact name, else case-insensitively. */
function member(o: Obj, name: string): unknown {
  if (Object.hasOwn(o, name)) return o[name];
  const k = Object.keys(o).find((x) => x.toLowerCase() === name);
  return k === undefined ? undefined : o[k];
}

function text(o: Obj, name: string): string {
  const v = member(o, name);
  if (v === undefined || v === null) return '';
  if (typeof v !== 'string') throw new MalformedSecret(`an "auths" entry's "${name}" is not a string`);
  return v;
}

function base64(s: string, what: string): Buffer {
  const b = s.replace(/[\r\n]/g, '');
  if (b.length % 4 !== 0 || !BASE64.test(b)) throw new MalformedSecret(`${what} is not base64`);
  return Buffer.from(b, 'base64');
}

/** The `auths` of a `.dockerconfigjson` document; throws MalformedSecret. */
export function parseDockerConfigJson(data: Buffer | string): AuthEntry[] {
  let doc: unknown;
  try {
    doc = JSON.parse(typeof data === 'string' ? data : data.toString('utf8'));
  } catch {
    throw new MalformedSecret('not valid JSON'); // JSON.parse's message quotes the input
  }
  if (!isObj(doc)) throw new MalformedSecret('not a JSON object');
  const auths = member(doc, 'auths');
  if (auths === undefined || auths === null) return [];
  if (!isObj(auths)) throw new MalformedSecret('"auths" is not an object');
  const out: AuthEntry[] = [];
  for (const [key, v] of Object.entries(auths)) {
    if (v === null) continue;
    if (!isObj(v)) throw new MalformedSecret('an "auths" entry is not an object');
    let username = text(v, 'username');
    let password = text(v, 'password');
    const auth = text(v, 'auth');
    if (auth) {
      const s = base64(auth, 'an "auth" value').toString('utf8');
      const i = s.indexOf(':');
      if (i <= 0) throw new MalformedSecret('an "auth" value is not base64 of "user:password"');
      [username, password] = [s.slice(0, i), s.slice(i + 1).replace(/^\0+|\0+$/g, '')];
    }
    const identityToken = text(v, 'identitytoken');
    let credentials: Credentials | undefined;
    if (identityToken) credentials = { identityToken };
    else if (username || password) credentials = { username, password };
    out.push({ key, host: authKeyHost(key), ...(credentials ? { credentials } : {}) });
  }
  return out;
}

/** The entries of a Secret's `.dockerconfigjson` (the API's base64 `data`); throws MalformedSecret. */
export function secretEntries(secret: Pick<V1Secret, 'data'>): AuthEntry[] {
  const data = secret.data?.[DATA_KEY];
  if (typeof data !== 'string') throw new MalformedSecret(`no "${DATA_KEY}" key`);
  return parseDockerConfigJson(base64(data, `"${DATA_KEY}"`));
}

/** The first credentials for `registry` in `secrets` (in order), and which Secret had them. */
export function lookupCredentials(secrets: Iterable<[string, AuthEntry[]]>, registry: string): { secret: string; credentials: Credentials } | undefined {
  const host = authKeyHost(registry);
  const exact = host === 'docker.io' ? HUB_KEY : registry;
  for (const [secret, entries] of secrets) {
    const e = entries.find((a) => a.key === exact) ?? entries.find((a) => a.host === host);
    if (e?.credentials) return { secret, credentials: e.credentials };
  }
  return undefined;
}
