/**
 * containerd-style hosts directory (`--hosts-dir`, like /etc/containerd/certs.d, compatible with
 * /etc/docker/certs.d): per-registry TLS settings read from `<dir>/<host>/`, where host is the
 * registry name as written in the reference (`127.0.0.1:5000`, `docker.io`).
 *
 *   *.crt                 extra CA certificates
 *   X.cert + X.key        client certificate and key (a .cert without its .key is an error)
 *   hosts.toml            top-level keys of containerd's hosts.toml (docs/hosts.md):
 *                           server = "http://…"  plain http for this host ("https://…": TLS)
 *                           ca = "file" | ["file", …]      extra CAs
 *                           client = "file" | [cert, key] | [[cert, key], …]  (first pair;
 *                                    a single file or an empty key holds both cert and key)
 *                           skip_verify = true
 *                         Paths are relative to the host directory unless absolute. Mirror
 *                         sections ([host."…"]) and other keys are ignored.
 *
 * Cert files and hosts.toml add up (CAs from both; the hosts.toml client wins over a .cert pair).
 * A missing host directory means no settings. Files are read synchronously (CLI start-up).
 */
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { parse } from 'smol-toml';
import { SociError } from '../errors.js';
import type { ClientCert } from './types.js';

export interface HostSettings {
  ca?: Buffer[];
  clientCert?: ClientCert;
  skipVerify?: boolean;
  plainHttp?: boolean;
}

/** Reads a file for a TLS setting; `what` names its origin (flag or hosts.toml) in the error. */
export function readTlsFile(file: string, what: string): Buffer {
  try {
    return readFileSync(file);
  } catch (e) {
    throw new SociError('ERR_USAGE', `${what}: cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
  }
}

export function readHostsDir(dir: string, registry: string): HostSettings {
  const hostDir = join(dir, registry);
  if (!existsSync(hostDir) || !statSync(hostDir).isDirectory()) return {};
  const out: HostSettings = {};
  const files = readdirSync(hostDir).sort();
  const ca = files.filter((f) => f.endsWith('.crt')).map((f) => readTlsFile(join(hostDir, f), hostDir));
  const cert = files.find((f) => f.endsWith('.cert'));
  if (cert) {
    const key = `${cert.slice(0, -'.cert'.length)}.key`;
    if (!files.includes(key)) throw new SociError('ERR_USAGE', `${hostDir}: client certificate ${cert} has no ${key}`);
    out.clientCert = { cert: readTlsFile(join(hostDir, cert), hostDir), key: readTlsFile(join(hostDir, key), hostDir) };
  }
  if (files.includes('hosts.toml')) {
    const t = parseHostsToml(hostDir, join(hostDir, 'hosts.toml'));
    Object.assign(out, t, { ca: [...ca, ...(t.ca ?? [])] });
  } else out.ca = ca;
  if (!out.ca?.length) delete out.ca;
  return out;
}

function parseHostsToml(hostDir: string, file: string): HostSettings {
  const bad = (why: string) => new SociError('ERR_USAGE', `invalid hosts file ${file}: ${why}`);
  let t: Record<string, unknown>;
  try {
    t = parse(readTlsFile(file, 'hosts.toml').toString('utf8'));
  } catch (e) {
    if (e instanceof SociError) throw e;
    throw bad(
      String((e as Error).message)
        .split('\n')[0]!
        .trim(),
    );
  }
  const abs = (p: unknown, key: string): string => {
    if (typeof p !== 'string' || p === '') throw bad(`${key} must be a path or a list of paths`);
    return isAbsolute(p) ? p : join(hostDir, p);
  };
  const read = (p: string) => readTlsFile(p, file);
  const out: HostSettings = {};
  if (t.server !== undefined) {
    const m = typeof t.server === 'string' ? /^(https?):\/\//i.exec(t.server) : null;
    if (!m) throw bad('server must be an http:// or https:// URL');
    out.plainHttp = m[1]!.toLowerCase() === 'http';
  }
  if (t.ca !== undefined) out.ca = (Array.isArray(t.ca) ? t.ca : [t.ca]).map((p) => read(abs(p, 'ca')));
  if (t.client !== undefined) {
    let pair: unknown[] = Array.isArray(t.client) ? t.client : [t.client];
    if (Array.isArray(pair[0])) pair = pair[0];
    if (pair.length < 1 || pair.length > 2) throw bad('client must be a path or a [cert, key] pair');
    const cert = read(abs(pair[0], 'client'));
    const key = pair[1] === undefined || pair[1] === '' ? cert : read(abs(pair[1], 'client'));
    out.clientCert = { cert, key };
  }
  if (t.skip_verify !== undefined) {
    if (typeof t.skip_verify !== 'boolean') throw bad('skip_verify must be true or false');
    out.skipVerify = t.skip_verify;
  }
  return out;
}
