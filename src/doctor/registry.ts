/**
 * The registry half of `soci doctor`, measured on a real blob of the image: Range honoured (206
 * with the same bytes as the plain GET), multi-range, redirects to storage, the referrers API (or
 * the tag fallback, or a login page in its place), and where credentials come from for the user
 * running the command and for root (the snapshotter runs as root and reads root's docker config).
 */
import { join } from 'node:path';
import type { Descriptor } from '../oci/types.js';
import { dockerConfigCredentials, envCredentials } from '../registry/credentials.js';
import type { RegistryClient } from '../registry/index.js';
import type { Report } from './report.js';

const header = (h: Record<string, string | string[] | undefined>, name: string) => {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
};

/** Range, multi-range and redirects on `blob` (the image's largest layer). */
export async function checkRanges(r: Report, client: RegistryClient, repo: string, blob: Descriptor): Promise<void> {
  const path = `blobs/${blob.digest}`;
  const n = Math.min(1024, blob.size);
  const plain = await client.probe(repo, path, {}, n);
  const ranged = await client.probe(repo, path, { range: `bytes=0-${n - 1}` }, n + 1);
  const redirected = ranged.url.origin !== plain.url.origin || !ranged.url.pathname.endsWith(path);
  if (redirected) r.info('registry.redirect', `blobs are served from ${ranged.url.host} (a redirect to storage)`);
  if (ranged.status === 206 && ranged.body.equals(plain.body.subarray(0, n)) && /^bytes 0-/.test(header(ranged.headers, 'content-range') ?? '')) {
    r.ok('registry.range', `Range honoured on ${blob.digest} (206, the same ${n} bytes as a plain GET)`);
  } else if (ranged.status === 200) {
    r.fail(
      'registry.range',
      `the registry ignores Range: a read of ${n} bytes was answered 200 with the whole blob (${blob.size} bytes); lazy loading cannot work here, each span read costs a download up to the span`,
      'pull from a registry that honours Range (distribution, ECR, …), not through a proxy cache that drops it',
    );
    return;
  } else {
    r.fail(
      'registry.range',
      `a Range read answered ${ranged.status} ${ranged.status === 206 ? 'with other bytes than the blob has' : ''}`.trim(),
      'check proxies between this host and the registry',
    );
    return;
  }
  if (blob.size < 64) return;
  const multi = await client.probe(repo, path, { range: 'bytes=0-9,32-41' }, 4096);
  const type = header(multi.headers, 'content-type') ?? '';
  if (multi.status === 206 && type.startsWith('multipart/byteranges')) r.ok('registry.multi-range', 'multi-range requests honoured (multipart/byteranges)');
  else
    r.warn(
      'registry.multi-range',
      `a multi-range request answered ${multi.status}${type ? ` (${type})` : ''}`,
      "none needed for this snapshotter (it reads one range per request); AWS's needs single ranges only too",
    );
}

/** The referrers API, for v1 discovery: supported, absent (tag fallback), or answered by something else. */
export async function checkReferrers(r: Report, client: RegistryClient, repo: string, manifestDigest: string): Promise<void> {
  const res = await client.probe(repo, `referrers/${manifestDigest}`, { accept: 'application/vnd.oci.image.index.v1+json' });
  const type = header(res.headers, 'content-type') ?? '';
  if (res.status === 200 && /json/.test(type)) r.ok('registry.referrers', 'the OCI referrers API answers (v1 discovery uses it)');
  else if (res.status === 404) r.info('registry.referrers', `no referrers API (404): v1 discovery uses the tag fallback ${manifestDigest.replace(':', '-')}`);
  else if (/html/.test(type))
    r.fail(
      'registry.referrers',
      `the referrers call answered ${res.status} with an HTML page (a login page or a proxy)`,
      'let /v2/*/referrers/* reach the registry',
    );
  else r.warn('registry.referrers', `the referrers call answered ${res.status}${type ? ` (${type})` : ''}`, 'v1 discovery falls back to the tag schema');
}

/**
 * Whether the registry wants credentials, and where they would come from: for this user (env, docker
 * config or a credential helper) and for root. `needsAuth` is what the anonymous probe saw.
 */
export async function checkAuth(r: Report, registry: string, needsAuth: boolean, userFlag: boolean, env: NodeJS.ProcessEnv = process.env): Promise<void> {
  if (!needsAuth) {
    r.ok('registry.auth', `${registry} serves this image anonymously`);
    return;
  }
  const isRoot = process.getuid?.() === 0;
  const userConfig = join(env.DOCKER_CONFIG ?? join(env.HOME ?? '', '.docker'), 'config.json');
  const sources: Array<[string, () => Promise<unknown>]> = [
    ['--user', async () => (userFlag ? true : undefined)],
    ['SOCI_REGISTRY_AUTH', () => envCredentials(env)(registry)],
    [userConfig, () => dockerConfigCredentials({ env })(registry)],
  ];
  let found = '';
  for (const [name, get] of sources) {
    const c = await get().catch(() => undefined);
    if (c) {
      found = name;
      break;
    }
  }
  const who = isRoot ? 'root' : (env.USER ?? 'this user');
  if (found) r.ok('registry.auth', `${registry} needs credentials; ${who} has them (${found})`);
  else
    r.fail(
      'registry.auth',
      `${registry} needs credentials and ${who} has none (no --user, no SOCI_REGISTRY_AUTH, nothing for ${registry} in ${userConfig})`,
      isRoot ? `run \`nerdctl login ${registry}\` (or docker login) as root; the snapshotter reads root's docker config` : `log in to ${registry}`,
    );
  if (!isRoot) {
    const rootConfig = '/root/.docker/config.json';
    const c = await dockerConfigCredentials({ configPath: rootConfig })(registry).catch(() => 'unreadable');
    if (c === 'unreadable')
      r.warn('registry.auth-root', `cannot read ${rootConfig} as ${who}`, 'run soci doctor as root to check the credentials the snapshotter uses');
    else if (!c) r.fail('registry.auth-root', `root has no credentials for ${registry} in ${rootConfig}`, `run \`sudo nerdctl login ${registry}\``);
    else r.ok('registry.auth-root', `root has credentials for ${registry} (${rootConfig})`);
  }
}
