/**
 * One RegistryClient per registry host, sharing options (credentials, retries, logger), so token
 * caches and keep-alive connections are reused across images. Per-host transport settings:
 *   plainHttp: true | host list | 'localhost' (http for localhost/127.x/::1, as SOCI's resolver does)
 *   insecure:  true | host list that skips TLS verification
 *   hostsDir:  containerd-style hosts directory (src/registry/hosts-dir.ts): per-host CAs (added to
 *              `ca`), client certificate (wins over `clientCert`), skip_verify, http/https server
 *              (wins over the 'localhost' default, not over plainHttp true or a listed host)
 */
import { isLocalhost } from '../oci/reference.js';
import { RegistryClient } from './client.js';
import { readHostsDir } from './hosts-dir.js';
import type { RegistryClientOptions } from './types.js';

export interface RegistryHostsOptions extends Omit<RegistryClientOptions, 'registry' | 'plainHttp' | 'insecure'> {
  plainHttp?: boolean | 'localhost' | string[];
  insecure?: boolean | string[];
  hostsDir?: string;
  /** requestTimeoutMs for these hosts instead (0 = no limit) */
  requestTimeoutByHost?: Record<string, number>;
}

export class RegistryHosts {
  private readonly clients = new Map<string, RegistryClient>();

  constructor(private readonly opts: RegistryHostsOptions = {}) {}

  /** The (cached) client for a registry name as in the reference (docker.io, host:port). */
  get(registry: string): RegistryClient {
    let c = this.clients.get(registry);
    if (!c) {
      const { plainHttp, insecure, hostsDir, ca, clientCert, requestTimeoutByHost, ...rest } = this.opts;
      const h = hostsDir ? readHostsDir(hostsDir, registry) : {};
      const listed = plainHttp === true || (Array.isArray(plainHttp) && plainHttp.includes(registry));
      const plain = listed || (h.plainHttp ?? (plainHttp === 'localhost' && isLocalhost(registry)));
      const skipVerify = insecure === true || (Array.isArray(insecure) && insecure.includes(registry)) || h.skipVerify === true;
      const cas = [...(ca === undefined ? [] : Array.isArray(ca) ? ca : [ca]), ...(h.ca ?? [])];
      const cert = h.clientCert ?? clientCert;
      const timeout = requestTimeoutByHost?.[registry];
      c = new RegistryClient({
        ...rest,
        ...(timeout !== undefined ? { requestTimeoutMs: timeout } : {}),
        registry,
        plainHttp: plain,
        insecure: skipVerify,
        ...(cas.length ? { ca: cas } : {}),
        ...(cert ? { clientCert: cert } : {}),
      });
      this.clients.set(registry, c);
    }
    return c;
  }

  async close(): Promise<void> {
    const all = [...this.clients.values()];
    this.clients.clear();
    await Promise.all(all.map((c) => c.close()));
  }
}
