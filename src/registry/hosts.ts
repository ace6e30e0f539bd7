/**
 * One RegistryClient per registry host, sharing options (credentials, retries, logger), so token
 * caches and keep-alive connections are reused across images. Per-host transport settings:
 *   plainHttp: true | host list | 'localhost' (http for localhost/127.x/::1, as SOCI's resolver does)
 *   insecure:  host list that skips TLS verification
 */
import { isLocalhost } from '../oci/reference.js';
import { RegistryClient } from './client.js';
import type { RegistryClientOptions } from './types.js';

export interface RegistryHostsOptions extends Omit<RegistryClientOptions, 'registry' | 'plainHttp' | 'insecure'> {
  plainHttp?: boolean | 'localhost' | string[];
  insecure?: boolean | string[];
}

export class RegistryHosts {
  private readonly clients = new Map<string, RegistryClient>();

  constructor(private readonly opts: RegistryHostsOptions = {}) {}

  /** The (cached) client for a registry name as in the reference (docker.io, host:port). */
  get(registry: string): RegistryClient {
    let c = this.clients.get(registry);
    if (!c) {
      const { plainHttp, insecure, ...rest } = this.opts;
      const plain = plainHttp === true || (plainHttp === 'localhost' && isLocalhost(registry)) || (Array.isArray(plainHttp) && plainHttp.includes(registry));
      const skipVerify = insecure === true || (Array.isArray(insecure) && insecure.includes(registry));
      c = new RegistryClient({ ...rest, registry, plainHttp: plain, insecure: skipVerify });
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
