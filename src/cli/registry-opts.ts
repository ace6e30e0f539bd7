/**
 * Registry client construction from CLI flags (AWS soci's registry flags): --plain-http, -u/--user,
 * --refresh, -k/--skip-verify, --insecure-registry, --hosts-dir, --tlscacert/--tlscert/--tlskey,
 * --http-dump/--http-trace (both: our --debug line per request, never headers or secrets).
 */
import type { Command } from 'commander';
import { RegistryHosts, defaultCredentials, type CredentialProvider, type RegistryClient, type RegistryHostsOptions } from '../registry/index.js';
import { readTlsFile } from '../registry/hosts-dir.js';
import { SociError } from '../errors.js';
import { VERSION } from '../version.js';
import { lineLogger } from '../logger.js';

export interface RegistryFlags {
  plainHttp?: boolean;
  user?: string;
  refresh?: string;
  skipVerify?: boolean;
  insecureRegistry?: string[];
  hostsDir?: string;
  tlscacert?: string;
  tlscert?: string;
  tlskey?: string;
  httpDump?: boolean;
  httpTrace?: boolean;
}

const collect = (v: string, prev: string[] = []) => [...prev, v];

export function addRegistryFlags(cmd: Command): Command {
  return cmd
    .option('--plain-http', 'use http instead of https (default for localhost/127.0.0.1 registries)', false)
    .option('-u, --user <user:password>', 'registry credentials (else ~/.docker/config.json, else anonymous)')
    .option('--refresh <token>', 'refresh token for the authorization server (instead of --user or the Docker config)')
    .option('-k, --skip-verify', 'skip TLS certificate verification for every registry', false)
    .option('--insecure-registry <host>', 'https without certificate verification for this registry (repeatable)', collect, [])
    .option('--hosts-dir <dir>', 'containerd-style hosts directory (e.g. /etc/containerd/certs.d): per-registry CAs, client certs, hosts.toml')
    .option('--tlscacert <file>', 'extra CA certificate (PEM) for registries')
    .option('--tlscert <file>', 'TLS client certificate (PEM), with --tlskey')
    .option('--tlskey <file>', 'TLS client key (PEM), with --tlscert')
    .option('--http-dump', 'log each HTTP request (like --debug)', false)
    .option('--http-trace', 'log each HTTP request (like --debug)', false);
}

/** RegistryHosts options for the flags of one command; bad flags or unreadable files are ERR_USAGE. */
export function registryHostsOptions(f: RegistryFlags, debug: boolean): RegistryHostsOptions {
  if (f.user && f.refresh) throw new SociError('ERR_USAGE', 'specify --user or --refresh, not both');
  if (Boolean(f.tlscert) !== Boolean(f.tlskey)) throw new SociError('ERR_USAGE', '--tlscert and --tlskey must be given together');
  const refresh = f.refresh;
  const credentials: CredentialProvider = refresh ? async () => ({ identityToken: refresh }) : defaultCredentials(f.user);
  const log = debug || f.httpDump || f.httpTrace;
  return {
    plainHttp: f.plainHttp ? true : 'localhost',
    insecure: f.skipVerify ? true : (f.insecureRegistry ?? []),
    credentials,
    userAgent: `soci-ts/${VERSION}`,
    ...(f.hostsDir ? { hostsDir: f.hostsDir } : {}),
    ...(f.tlscacert ? { ca: readTlsFile(f.tlscacert, '--tlscacert') } : {}),
    ...(f.tlscert && f.tlskey ? { clientCert: { cert: readTlsFile(f.tlscert, '--tlscert'), key: readTlsFile(f.tlskey, '--tlskey') } } : {}),
    ...(log ? { debug: lineLogger((line) => process.stderr.write(`debug: ${line}\n`)) } : {}),
  };
}

let hosts: RegistryHosts | null = null;

/** One client per registry per process (keep-alive pool and token cache shared by all calls). */
export function registryClient(registry: string, f: RegistryFlags, debug: boolean): RegistryClient {
  hosts ??= new RegistryHosts(registryHostsOptions(f, debug));
  return hosts.get(registry);
}

export async function closeClients(): Promise<void> {
  const h = hosts;
  hosts = null;
  await h?.close();
}
