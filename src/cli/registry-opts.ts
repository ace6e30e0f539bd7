/** Registry client construction from CLI flags: --plain-http, --user, --insecure-registry, --debug. */
import { Command } from 'commander';
import { RegistryHosts, defaultCredentials, type RegistryClient } from '../registry/index.js';
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

let hosts: RegistryHosts | null = null;

/** One client per registry per process (keep-alive pool and token cache shared by all calls). */
export function registryClient(registry: string, f: RegistryFlags, debug: boolean): RegistryClient {
  hosts ??= new RegistryHosts({
    plainHttp: f.plainHttp ? true : 'localhost',
    insecure: f.insecureRegistry ?? [],
    credentials: defaultCredentials(f.user),
    userAgent: `soci-ts/${VERSION}`,
    ...(debug ? { debug: (line: string) => process.stderr.write(`debug: ${line}\n`) } : {}),
  });
  return hosts.get(registry);
}

export async function closeClients(): Promise<void> {
  const h = hosts;
  hosts = null;
  await h?.close();
}
