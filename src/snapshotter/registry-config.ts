/**
 * The daemon's registry client settings from its config, with AWS's meanings:
 *  - [http] is every registry request (index, manifests, zTOCs, tokens): MaxRetries, MinWaitMsec,
 *    MaxWaitMsec, DialTimeoutMsec, ResponseHeaderTimeoutMsec and RequestTimeoutMsec (one attempt,
 *    headers and body; negative = no limit, as for Go's http.Client);
 *  - [blob] max_retries, min_wait_msec and max_wait_msec replace [http]'s for the layers' Range reads;
 *  - a mirror's request_timeout_sec replaces RequestTimeoutMsec for that mirror (negative = none);
 *  - [resolver] auth_client_ttl_sec: credentials and tokens are resolved again once this old
 *    (negative = never);
 *  - in parallel pull mode, connections per host follow max_concurrent_downloads.
 */
import type { RegistryHostsOptions } from '../registry/hosts.js';
import type { RetryOptions } from '../registry/types.js';
import { parallelPullMode, type Config } from './config.js';

export type DaemonRegistryOptions = Pick<
  RegistryHostsOptions,
  'retry' | 'blobRetry' | 'connectTimeoutMs' | 'headersTimeoutMs' | 'bodyTimeoutMs' | 'requestTimeoutMs' | 'requestTimeoutByHost' | 'authTtlMs' | 'connections'
>;

/** Backoff doubles from `min`; one wait is never longer than 30 s, whatever `max` says (a reader waits on it). */
function retry(maxRetries: number, minMs: number, maxMs: number): RetryOptions {
  return { maxAttempts: Math.max(1, maxRetries + 1), baseDelayMs: Math.max(1, minMs), maxDelayMs: Math.max(1, Math.min(maxMs, 30_000)) };
}

export function daemonRegistryOptions(config: Config): DaemonRegistryOptions {
  const { http, blob } = config;
  const byHost: Record<string, number> = {};
  for (const h of Object.values(config.resolver.host)) {
    for (const m of h.mirrors) if (m.request_timeout_sec !== 0) byHost[m.host] = m.request_timeout_sec < 0 ? 0 : m.request_timeout_sec * 1000;
  }
  return {
    retry: retry(http.MaxRetries, http.MinWaitMsec, http.MaxWaitMsec),
    blobRetry: retry(blob.max_retries, blob.min_wait_msec, blob.max_wait_msec),
    // AWS's dial timeout; a negative one fails every dial there, so it is taken as "at once" here too
    connectTimeoutMs: Math.max(1, http.DialTimeoutMsec),
    // A connection that sends nothing for this long is abandoned and the request retried on a new
    // one (AWS's response-header timeout; the same bound between body chunks, so a registry that
    // stalls mid-body does not hold a reader for minutes).
    headersTimeoutMs: http.ResponseHeaderTimeoutMsec,
    bodyTimeoutMs: Math.max(http.ResponseHeaderTimeoutMsec, 3000),
    requestTimeoutMs: Math.max(0, http.RequestTimeoutMsec),
    requestTimeoutByHost: byHost,
    authTtlMs: Math.max(0, config.resolver.auth_client_ttl_sec * 1000),
    ...(parallelPullMode(config) ? { connections: pullConnections(config) } : {}),
  };
}

/**
 * Connections per registry host when the daemon pulls whole layers: enough for every chunk request
 * `max_concurrent_downloads` allows (0, no cap, when it is unbounded, as AWS's Go transport), and
 * never fewer than the default 8 that lazy reads share.
 */
function pullConnections(config: Config): number {
  const max = config.pull_modes.parallel_pull_unpack.max_concurrent_downloads;
  return max > 0 ? Math.max(8, max) : 0;
}
