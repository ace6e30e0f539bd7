/**
 * Real registries for tests: Debian's `docker-registry` (CNCF distribution 2.8) on 127.0.0.1 with a
 * random port and a private temp root, stopped (by PID) after the test.
 *
 * Exports:
 *   startRegistry(t, {auth?: 'none'|'htpasswd'|'token', tokenServer?, tls?}) → TestRegistry
 *     'htpasswd': user "alice" / generated password (distribution 2.8 allows htpasswd over plain HTTP)
 *     'token':    needs a TokenServer (harness/token-server.ts); started for you when omitted
 *     tls: true   serve HTTPS with a fresh self-signed cert for 127.0.0.1 (reg.caPem trusts it; url is https://)
 *   TestRegistry: { host '127.0.0.1:PORT', url 'http://…', user?, password?, tokenServer?, root,
 *                   logPath, accessLog(): Promise<AccessLogEntry[]> (method, path, status per request;
 *                   the registry does not log Range headers: put harness/fault-proxy.ts in front
 *                   to see request headers),
 *                   stop() }
 *   pushTestImage(reg, repo, {layers?, platforms?, tag?, layerBytes?}) → TestImage
 *     builds an OCI layout by hand (gzip tar layers of random files) and pushes it with
 *     `skopeo copy --all oci:DIR:tag docker://HOST/repo:tag`; multi-platform gives an OCI index.
 *     The result carries every blob's bytes so tests can compare byte for byte.
 *   skopeoInspectRaw(reg, ref) → Buffer   (`skopeo inspect --raw`, with the registry's creds)
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { get as httpGet } from 'node:http';
import { get as httpsGet } from 'node:https';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { tempDir } from './env.js';
import { writeLayout } from './layout.js';
import { packTar } from './images.js';
import { startTokenServer, type TokenServer } from './token-server.js';
import { digestOf } from '../src/oci/digest.js';

const pexecFile = promisify(execFile);
type After = { after: (fn: () => unknown) => void };

export interface AccessLogEntry {
  method: string;
  path: string;
  status: number;
}

export interface TestRegistry {
  host: string;
  url: string;
  user?: string;
  password?: string;
  tokenServer?: TokenServer;
  /** PEM of the self-signed certificate when started with tls: true */
  caPem?: string;
  root: string;
  /** private temp dir of this registry (config, log, root, pushed layouts); removed after the test */
  workDir: string;
  logPath: string;
  accessLog(): Promise<AccessLogEntry[]>;
  /** the docker-registry process (tests that freeze it with SIGSTOP) */
  pid: number;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

export async function startRegistry(
  t: After,
  opts: {
    auth?: 'none' | 'htpasswd' | 'token';
    tokenServer?: TokenServer;
    tls?: boolean /** keep blobs here across runs (benchmarks) instead of the temp dir */;
    storageDir?: string;
  } = {},
): Promise<TestRegistry> {
  const dir = await tempDir(t, 'soci-registry-');
  const auth = opts.auth ?? 'none';
  let user: string | undefined;
  let password: string | undefined;
  let tokenServer = opts.tokenServer;
  let authYaml = '';
  if (auth === 'htpasswd') {
    user = 'alice';
    password = randomBytes(9).toString('base64url');
    const { stdout } = await pexecFile('htpasswd', ['-Bbn', user, password]);
    await writeFile(join(dir, 'htpasswd'), stdout);
    authYaml = `auth:\n  htpasswd:\n    realm: soci-test\n    path: ${join(dir, 'htpasswd')}\n`;
  } else if (auth === 'token') {
    tokenServer ??= await startTokenServer(t);
    user = 'alice';
    password = 'wonderland';
    authYaml = `auth:\n  token:\n    realm: ${tokenServer.realm}\n    service: ${tokenServer.service}\n    issuer: ${tokenServer.issuer}\n    rootcertbundle: ${tokenServer.certPath}\n`;
  }
  let tlsYaml = '';
  let caPem: string | undefined;
  if (opts.tls) {
    const [k, c] = [join(dir, 'tls.key'), join(dir, 'tls.crt')];
    await pexecFile('openssl', [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      k,
      '-out',
      c,
      '-days',
      '2',
      '-subj',
      '/CN=127.0.0.1',
      '-addext',
      'subjectAltName=IP:127.0.0.1,DNS:localhost',
    ]);
    caPem = await readFile(c, 'utf8');
    tlsYaml = `  tls:\n    certificate: ${c}\n    key: ${k}\n`;
  }
  const scheme = opts.tls ? 'https' : 'http';
  const logPath = join(dir, 'registry.log');
  let lastErr = '';
  // The free port can be taken between probe and bind; try a few.
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const cfg = `version: 0.1
log:
  level: info
  formatter: text
storage:
  filesystem:
    rootdirectory: ${opts.storageDir ?? join(dir, 'root')}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:${port}
  secret: soci-test-secret
${tlsYaml}${authYaml}`;
    const cfgPath = join(dir, 'config.yml');
    await writeFile(cfgPath, cfg);
    const { openSync, closeSync } = await import('node:fs');
    const fd = openSync(logPath, 'a');
    const child: ChildProcess = spawn('docker-registry', ['serve', cfgPath], { stdio: ['ignore', fd, fd], detached: false });
    closeSync(fd);
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    const stop = async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
        await exited;
        clearTimeout(timer);
      }
    };
    const host = `127.0.0.1:${port}`;
    if (await waitUp(`${scheme}://${host}/v2/`, child)) {
      const reg: TestRegistry = {
        pid: child.pid!,
        host,
        url: `${scheme}://${host}`,
        ...(caPem ? { caPem } : {}),
        ...(user !== undefined ? { user } : {}),
        ...(password !== undefined ? { password } : {}),
        ...(tokenServer ? { tokenServer } : {}),
        root: opts.storageDir ?? join(dir, 'root'),
        workDir: dir,
        logPath,
        accessLog: async () => parseAccessLog(await readFile(logPath, 'utf8')),
        stop,
      };
      t.after(stop);
      return reg;
    }
    await stop();
    lastErr = (await readFile(logPath, 'utf8').catch(() => '')).split('\n').slice(-5).join('\n');
  }
  throw new Error(`docker-registry did not start:\n${lastErr}`);
}

async function waitUp(url: string, child: ChildProcess): Promise<boolean> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) return false;
    const status = await new Promise<number>((resolve) => {
      const get = url.startsWith('https:') ? httpsGet : httpGet;
      const req = get(url, { rejectUnauthorized: false }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', () => resolve(0));
    });
    if (status === 200 || status === 401) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

/** Combined-log lines: `127.0.0.1 - - [date] "GET /v2/ HTTP/1.1" 401 87 "" "agent"`. */
export function parseAccessLog(text: string): AccessLogEntry[] {
  const out: AccessLogEntry[] = [];
  for (const m of text.matchAll(/^\S+ - \S+ \[[^\]]+\] "(\w+) (\S+) HTTP\/[\d.]+" (\d{3}) /gm)) {
    out.push({ method: m[1]!, path: m[2]!, status: Number(m[3]) });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Test images

export interface TestBlob {
  digest: string;
  size: number;
  mediaType: string;
  bytes: Buffer;
}

export interface TestManifest {
  platform: { os: string; architecture: string };
  digest: string;
  bytes: Buffer;
  config: TestBlob;
  layers: TestBlob[];
}

export interface TestImage {
  ref: string;
  repo: string;
  tag: string;
  /** digest of what the tag points to (the index for multi-platform, else the manifest) */
  digest: string;
  mediaType: string;
  bytes: Buffer;
  manifests: TestManifest[];
  layoutDir: string;
}

function blobOf(bytes: Buffer, mediaType: string): TestBlob {
  return { digest: digestOf(bytes), size: bytes.length, mediaType, bytes };
}

const PLATFORMS: Record<string, { os: string; architecture: string }> = {
  'linux/amd64': { os: 'linux', architecture: 'amd64' },
  'linux/arm64': { os: 'linux', architecture: 'arm64' },
  'linux/s390x': { os: 'linux', architecture: 's390x' },
};

export async function pushTestImage(
  reg: TestRegistry,
  repo: string,
  opts: { layers?: number; platforms?: string[]; tag?: string; layerBytes?: number } = {},
): Promise<TestImage> {
  const tag = opts.tag ?? 'latest';
  const platforms = opts.platforms ?? ['linux/amd64'];
  const nLayers = opts.layers ?? 2;
  const layerBytes = opts.layerBytes ?? 64 * 1024;
  const dir = join(reg.workDir, `layout-${randomBytes(4).toString('hex')}`);
  const images = [];
  for (const p of platforms) {
    const platform = PLATFORMS[p] ?? { os: p.split('/')[0]!, architecture: p.split('/')[1]! };
    const layers = [];
    for (let i = 0; i < nLayers; i++) {
      // Half random (incompressible), half text, so sizes are stable but not trivial.
      const files = {
        [`layer${i}/random.bin`]: randomBytes(layerBytes / 2),
        [`layer${i}/text.txt`]: Buffer.from(`${p} layer ${i}\n`.repeat(Math.ceil(layerBytes / 2 / 20))),
      };
      const raw = await packTar(Object.entries(files).map(([name, data]) => ({ name, data })));
      layers.push({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', diffId: digestOf(raw), bytes: gzipSync(raw, { level: 1 }) });
    }
    images.push({ platform, layers, config: { config: {} } });
  }
  const written = writeLayout(dir, images, { tag });
  const blob = async (d: { digest: string; mediaType: string }) => blobOf(await readFile(join(dir, 'blobs', 'sha256', d.digest.slice(7))), d.mediaType);
  const manifests: TestManifest[] = [];
  for (const [i, digest] of written.manifests.entries()) {
    const bytes = (await blob({ digest, mediaType: '' })).bytes;
    const m = JSON.parse(bytes.toString()) as { config: TestBlob; layers: TestBlob[] };
    manifests.push({ platform: images[i]!.platform, digest, bytes, config: await blob(m.config), layers: await Promise.all(m.layers.map(blob)) });
  }
  const top = await blob(written.root);
  const ref = `${reg.host}/${repo}:${tag}`;
  const args = ['copy', '--all', '--preserve-digests', '--dest-tls-verify=false', ...creds(reg, '--dest-creds'), `oci:${dir}:${tag}`, `docker://${ref}`];
  await pexecFile('skopeo', args, { timeout: 120_000 });
  return { ref, repo, tag, digest: top.digest, mediaType: top.mediaType, bytes: top.bytes, manifests, layoutDir: dir };
}

function creds(reg: TestRegistry, flag: string): string[] {
  return reg.user !== undefined && reg.password !== undefined ? [`${flag}=${reg.user}:${reg.password}`] : [];
}

/** `skopeo inspect --raw docker://HOST/ref` — an independent reader for push tests. */
export async function skopeoInspectRaw(reg: TestRegistry, ref: string): Promise<Buffer> {
  const { stdout } = await pexecFile('skopeo', ['inspect', '--raw', '--tls-verify=false', ...creds(reg, '--creds'), `docker://${reg.host}/${ref}`], {
    encoding: 'buffer',
    timeout: 60_000,
  });
  return stdout;
}
