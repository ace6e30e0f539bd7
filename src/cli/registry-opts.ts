/** Registry client construction from CLI flags: --plain-http, --user, --insecure-registry, --debug. */
import { Command } from 'commander';
import { isLocalhost } from '../oci/reference.js';
import { RegistryClient, defaultCredentials } from '../registry/index.js';
import { VERSION } from '../version.js';

export interface RegistryFlags {
  plainHttp?: boolean;
  user?: string;
  insecureRegistry?: string[];
}

const collect = (v: string, prev: string[] = []) => [...prev, v];

export function addRegistryFlags(cmd: Command): Command {
  return cmd
    .option('--plain-http', 'use http instead of https (default for localhost/127.0.0.1 registries)', false)
    .option('-u, --user <user:password>', 'registry credentials (else ~/.docker/config.json, else anonymous)')
    .option('--insecure-registry <host>', 'https without certificate verification for this registry (repeatable)', collect, []);
}

const clients = new Map<string, RegistryClient>();

/** One client per registry per process (keep-alive pool and token cache shared by all calls). */
export function registryClient(registry: string, f: RegistryFlags, debug: boolean): RegistryClient {
  let c = clients.get(registry);
  if (!c) {
    c = new RegistryClient({
      registry,
      plainHttp: f.plainHttp || isLocalhost(registry),
      insecure: f.insecureRegistry?.includes(registry) ?? false,
      credentials: defaultCredentials(f.user),
      userAgent: `soci-ts/${VERSION}`,
      ...(debug ? { debug: (line: string) => process.stderr.write(`debug: ${line}\n`) } : {}),
    });
    clients.set(registry, c);
  }
  return c;
}

export async function closeClients(): Promise<void> {
  await Promise.all([...clients.values()].map((c) => c.close()));
  clients.clear();
}
