/**
 * Image reference parsing with Docker's defaults and distribution's grammar
 * (github.com/distribution/reference): `ubuntu` → docker.io/library/ubuntu:latest.
 *
 * Exports: parseReference, Reference, apiHost, isLocalhost, DOCKER_HUB.
 *
 * Scheme choice (documented here because callers ask): the registry client defaults to HTTPS for
 * every host, including localhost, like `ctr`/skopeo without flags. Callers opt into plain HTTP with
 * `plainHttp` (CLI `--plain-http`) or per-registry config. `isLocalhost` is exported so the
 * snapshotter can mirror SOCI's resolver (which uses http for localhost) explicitly.
 */
import { SociError } from '../errors.js';

export const DOCKER_HUB = 'docker.io';
/** the host Docker Hub's registry API is actually served from */
const DOCKER_HUB_API = 'registry-1.docker.io';

export interface Reference {
  /** registry host[:port] as written (docker.io for Docker Hub; index.docker.io normalized to docker.io) */
  readonly registry: string;
  /** repository path, e.g. library/ubuntu */
  readonly repository: string;
  readonly tag?: string;
  readonly digest?: string;
  /** fully qualified form: registry/repository[:tag][@digest] */
  string(): string;
  /** what to put in /v2/<repo>/manifests/<x>: the digest when present, else the tag */
  reference(): string;
}

const domainComponent = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const ipv6 = '\\[(?:[a-fA-F0-9:]+)\\]';
const domainRe = new RegExp(`^(?:${ipv6}|${domainComponent}(?:\\.${domainComponent})*)(?::[0-9]+)?$`);
const pathComponentRe = /^[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*$/;
const tagRe = /^[\w][\w.-]{0,127}$/;
const digestRe = /^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9A-Fa-f]{32,}$/;
const MAX_NAME = 255;

function invalid(s: string, why: string): never {
  throw new SociError('ERR_INVALID_REFERENCE', `invalid reference ${JSON.stringify(s)}: ${why}`);
}

/** Parse and validate an image reference, applying Docker Hub defaults. */
export function parseReference(s: string): Reference {
  if (typeof s !== 'string' || s.length === 0) invalid(String(s), 'empty');
  if (s !== s.trim() || /\s/.test(s)) invalid(s, 'contains whitespace');
  let rest = s;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!digestRe.test(digest)) invalid(s, 'malformed digest');
    const [alg, hex] = digest.split(':') as [string, string];
    if (alg === 'sha256' && !/^[0-9a-f]{64}$/.test(hex)) invalid(s, 'sha256 digest must be 64 lowercase hex characters');
    if (alg === 'sha512' && !/^[0-9a-f]{128}$/.test(hex)) invalid(s, 'sha512 digest must be 128 lowercase hex characters');
  }
  // A tag is after the last ':' that comes after the last '/', so host:port stays intact.
  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf('/');
  const colon = rest.indexOf(':', lastSlash + 1);
  let name = rest;
  if (colon >= 0) {
    tag = rest.slice(colon + 1);
    name = rest.slice(0, colon);
    if (!tagRe.test(tag)) invalid(s, 'malformed tag');
  }
  if (name.length === 0) invalid(s, 'missing repository name');

  let registry: string;
  let repository: string;
  const slash = name.indexOf('/');
  const first = slash >= 0 ? name.slice(0, slash) : '';
  // Docker's rule: the first component is a registry host when it looks like one.
  if (slash >= 0 && (first.includes('.') || first.includes(':') || first === 'localhost' || first !== first.toLowerCase())) {
    registry = first;
    repository = name.slice(slash + 1);
    if (!domainRe.test(registry)) invalid(s, `malformed registry host "${registry}"`);
  } else {
    registry = DOCKER_HUB;
    repository = name;
  }
  if (registry === 'index.docker.io' || registry === DOCKER_HUB_API) registry = DOCKER_HUB;
  if (registry === DOCKER_HUB && !repository.includes('/')) repository = `library/${repository}`;
  if (repository !== repository.toLowerCase()) invalid(s, 'repository name must be lowercase');
  for (const part of repository.split('/')) {
    if (!pathComponentRe.test(part)) invalid(s, `malformed repository path component "${part}"`);
  }
  if (registry.length + 1 + repository.length > MAX_NAME) invalid(s, `name longer than ${MAX_NAME} characters`);
  if (tag === undefined && digest === undefined) tag = 'latest';
  return makeReference(registry, repository, tag, digest);
}

function makeReference(registry: string, repository: string, tag?: string, digest?: string): Reference {
  return {
    registry,
    repository,
    ...(tag !== undefined ? { tag } : {}),
    ...(digest !== undefined ? { digest } : {}),
    string() {
      return `${registry}/${repository}${tag !== undefined ? `:${tag}` : ''}${digest !== undefined ? `@${digest}` : ''}`;
    },
    reference() {
      return digest ?? tag ?? 'latest';
    },
  };
}

/** Host to send registry API calls to: Docker Hub's API lives at registry-1.docker.io. */
export function apiHost(registry: string): string {
  return registry === DOCKER_HUB || registry === 'index.docker.io' ? DOCKER_HUB_API : registry;
}

/** True for localhost, 127.0.0.0/8 and ::1, with or without a port. */
export function isLocalhost(host: string): boolean {
  let h = host;
  if (h.startsWith('[')) h = h.slice(1, h.indexOf(']'));
  else if (h.includes(':') && h.split(':').length === 2) h = h.split(':')[0]!;
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}
