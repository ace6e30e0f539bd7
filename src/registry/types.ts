/**
 * Shared types and constants of the registry client (media types, options, credentials, logger).
 */
import type { Logger } from '../logger.js';

export const MEDIA_TYPES = {
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
} as const;

/** Accept header for manifest GET/HEAD: every manifest kind we can handle. */
export const MANIFEST_ACCEPT = [MEDIA_TYPES.ociIndex, MEDIA_TYPES.ociManifest, MEDIA_TYPES.dockerList, MEDIA_TYPES.dockerManifest].join(', ');

export const MANIFEST_MEDIA_TYPES: ReadonlySet<string> = new Set(Object.values(MEDIA_TYPES));

/** The OCI descriptor (one definition for the project: src/oci/types.ts). */
export type { Descriptor } from '../oci/types.js';

export interface Credentials {
  username?: string;
  password?: string;
  /** OAuth2 refresh token (Docker's `identitytoken`, helper Username `<token>`) */
  identityToken?: string;
}

/**
 * Returns the credentials for a registry name as written in the reference (`docker.io`,
 * `127.0.0.1:5000`), or undefined when it has none.
 */
export type CredentialProvider = (registry: string) => Promise<Credentials | undefined>;

export interface RetryOptions {
  /** total attempts per request including the first (default 6) */
  maxAttempts?: number;
  /** first backoff in ms (default 100); doubles each attempt, +0–25 % jitter */
  baseDelayMs?: number;
  /** cap of one backoff in ms, also caps Retry-After (default 10 000) */
  maxDelayMs?: number;
  /** no new attempt starts after this many ms since the first (default 120 000) */
  maxTotalMs?: number;
}

export interface ClientCert {
  cert: string | Buffer;
  key: string | Buffer;
}

export interface RegistryClientOptions {
  /** registry name as in the reference: docker.io, ghcr.io, 127.0.0.1:5000 */
  registry: string;
  /** use http:// instead of https:// (default false, see src/oci/reference.ts on why) */
  plainHttp?: boolean;
  /** HTTPS without certificate verification (per registry; use for self-signed test registries) */
  insecure?: boolean;
  /** extra CA certificate(s) (PEM) trusted in addition to the system store */
  ca?: string | Buffer | Array<string | Buffer>;
  /** TLS client certificate and its private key (PEM; both may be the same combined file) */
  clientCert?: ClientCert;
  credentials?: CredentialProvider;
  retry?: RetryOptions;
  /** retries of blob Range reads (default: `retry`), like AWS's [blob] settings beside [http] */
  blobRetry?: RetryOptions;
  /**
   * Called when a Range read was answered 200 with the whole blob (registries or proxies that ignore
   * Range). The read still returns the right bytes, taken from the stream; lazy loading then costs
   * up to the whole blob per read.
   */
  onRangeIgnored?: (info: { registry: string; repo: string; digest: string }) => void;
  /** ms after which credentials and tokens are resolved again (default: never) */
  authTtlMs?: number;
  /** ms one attempt may take as a whole, headers and body (default: no limit; AWS's RequestTimeoutMsec) */
  requestTimeoutMs?: number;
  /** ms a TCP (and TLS) connect may take (default 10 000) */
  connectTimeoutMs?: number;
  /** ms to wait for response headers (default 30 000) */
  headersTimeoutMs?: number;
  /** ms a response body may stall between chunks (default 30 000) */
  bodyTimeoutMs?: number;
  /** redirects followed per request (default 5) */
  maxRedirects?: number;
  /** manifests larger than this are refused (default 4 MiB) */
  maxManifestBytes?: number;
  /** chunk size for chunked (PATCH) uploads, and the size above which Buffers are uploaded in chunks (default 16 MiB) */
  chunkSize?: number;
  /** connections per origin (default 8; 0 = no cap, as Go's http.Transport) */
  connections?: number;
  userAgent?: string;
  /** one debug line per HTTP round trip (method, redacted URL, status, time) */
  debug?: Logger;
}

export interface Manifest {
  bytes: Buffer;
  mediaType: string;
  digest: string;
  size: number;
}
