/**
 * Credential providers. A provider maps a registry name (as in the reference) to credentials.
 *
 * Exports:
 *   staticCredentials('user:pass', registry?)  explicit --user; registry limits it to one host
 *   envCredentials(env?)      SOCI_REGISTRY_AUTH="user:pass", optional SOCI_REGISTRY_AUTH_HOST="host[:port]"
 *                             (without the host variable the credentials go to every registry)
 *   dockerConfigCredentials({configPath?, env?})  $DOCKER_CONFIG/config.json or ~/.docker/config.json:
 *                             credHelpers[host] → credsStore → auths[host] (base64 `auth`,
 *                             username/password, identitytoken)
 *   chainCredentials(...providers)  first non-empty result wins
 *   defaultCredentials(user?) explicit user, then env, then Docker config (like SOCI's CLI: --user, config)
 */
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { SociError } from '../errors.js';
import type { CredentialProvider, Credentials } from './types.js';

function splitUserPass(s: string, what: string): Credentials {
  const i = s.indexOf(':');
  if (i <= 0) throw new SociError('ERR_USAGE', `${what} must be "user:password"`);
  return { username: s.slice(0, i), password: s.slice(i + 1) };
}

export function staticCredentials(userPass: string, registry?: string): CredentialProvider {
  const creds = splitUserPass(userPass, 'credentials');
  return async (reg) => (registry === undefined || sameRegistry(reg, registry) ? creds : undefined);
}

export function envCredentials(env: NodeJS.ProcessEnv = process.env): CredentialProvider {
  return async (reg) => {
    const v = env.SOCI_REGISTRY_AUTH;
    if (!v) return undefined;
    const host = env.SOCI_REGISTRY_AUTH_HOST;
    if (host && !sameRegistry(reg, host)) return undefined;
    return splitUserPass(v, 'SOCI_REGISTRY_AUTH');
  };
}

export function chainCredentials(...providers: Array<CredentialProvider | undefined>): CredentialProvider {
  return async (reg) => {
    for (const p of providers) {
      if (!p) continue;
      const c = await p(reg);
      if (c && (c.username || c.password || c.identityToken)) return c;
    }
    return undefined;
  };
}

export function defaultCredentials(userPass?: string): CredentialProvider {
  return chainCredentials(userPass ? staticCredentials(userPass) : undefined, envCredentials(), dockerConfigCredentials());
}

const HUB_NAMES = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io', 'https://index.docker.io/v1/']);

function hostOf(key: string): string {
  let k = key.trim();
  if (HUB_NAMES.has(k)) return 'docker.io';
  k = k.replace(/^[a-z]+:\/\//i, '');
  k = k.split('/')[0]!;
  return HUB_NAMES.has(k) ? 'docker.io' : k.toLowerCase();
}

function sameRegistry(a: string, b: string): boolean {
  return hostOf(a) === hostOf(b);
}

/** What Docker passes to credential helpers for a registry. */
function helperServerUrl(reg: string): string {
  return hostOf(reg) === 'docker.io' ? 'https://index.docker.io/v1/' : reg;
}

interface DockerConfig {
  auths?: Record<string, { auth?: string; username?: string; password?: string; identitytoken?: string }>;
  credsStore?: string;
  credHelpers?: Record<string, string>;
}

export function dockerConfigCredentials(opts: { configPath?: string; env?: NodeJS.ProcessEnv } = {}): CredentialProvider {
  const env = opts.env ?? process.env;
  return async (reg) => {
    const path = opts.configPath ?? join(env.DOCKER_CONFIG ?? join(env.HOME ?? homedir(), '.docker'), 'config.json');
    let cfg: DockerConfig;
    try {
      cfg = JSON.parse(await readFile(path, 'utf8')) as DockerConfig;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new SociError('ERR_USAGE', `cannot read docker config ${path}: ${(e as Error).message.split('\n')[0]}`);
    }
    const want = hostOf(reg);
    const helperKey = Object.keys(cfg.credHelpers ?? {}).find((k) => hostOf(k) === want);
    if (helperKey) return runHelper(cfg.credHelpers![helperKey]!, helperServerUrl(reg), env);
    const authKey = Object.keys(cfg.auths ?? {}).find((k) => hostOf(k) === want);
    const entry = authKey ? cfg.auths![authKey]! : undefined;
    if (cfg.credsStore) {
      const c = await runHelper(cfg.credsStore, helperServerUrl(reg), env);
      if (c) return c;
    }
    if (!entry) return undefined;
    const out: Credentials = {};
    if (entry.auth) {
      const decoded = Buffer.from(entry.auth, 'base64').toString('utf8');
      Object.assign(out, splitUserPass(decoded, `"auth" for ${want} in ${path}`));
    }
    if (entry.username) out.username = entry.username;
    if (entry.password) out.password = entry.password;
    if (entry.identitytoken) out.identityToken = entry.identitytoken;
    return out;
  };
}

/** Runs `docker-credential-<name> get` with the server URL on stdin (Docker's helper protocol). */
function runHelper(name: string, serverUrl: string, env: NodeJS.ProcessEnv): Promise<Credentials | undefined> {
  const bin = `docker-credential-${name}`;
  return new Promise((resolve, reject) => {
    const child = spawn(bin, ['get'], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    child.on('error', (e) => reject(new SociError('ERR_AUTH', `credential helper ${bin} failed to start: ${(e as NodeJS.ErrnoException).code ?? e.message}`)));
    child.on('close', (code) => {
      const stdout = Buffer.concat(out).toString('utf8').trim();
      if (code !== 0) {
        // Helpers print "credentials not found in native keychain" when they have nothing.
        if (/not found/i.test(stdout + Buffer.concat(err).toString('utf8'))) return resolve(undefined);
        return reject(new SociError('ERR_AUTH', `credential helper ${bin} exited with code ${code} for ${serverUrl}`));
      }
      try {
        const j = JSON.parse(stdout) as { Username?: string; Secret?: string };
        if (!j.Secret) return resolve(undefined);
        if (j.Username === '<token>') return resolve({ identityToken: j.Secret });
        resolve({ username: j.Username ?? '', password: j.Secret });
      } catch {
        reject(new SociError('ERR_AUTH', `credential helper ${bin} returned invalid JSON for ${serverUrl}`));
      }
    });
    child.stdin.on('error', () => {});
    child.stdin.end(serverUrl);
  });
}
