/**
 * The CRI keychain: the daemon also serves the Kubernetes
 * CRI `runtime.v1.ImageService` on its socket (kubelet `--image-service-endpoint`), forwards every
 * call unchanged to containerd (`image_service_path`), and remembers the registry credentials kubelet
 * sends with PullImage, so the lazy mounts of that image can authenticate. Unlike AWS's, which
 * loses them on restart, they are also kept in a root-only file under the daemon's root (0600, in a
 * 0700 dir), so a restarted daemon's mounts still authenticate. They are never logged.
 */
import * as grpc from '@grpc/grpc-js';
import { mkdir, readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { writeFileAtomic } from '../host/index.js';
import { parseReference } from '../oci/reference.js';
import type { CredentialProvider, Credentials } from '../registry/types.js';
import type { Logger } from '../logger.js';

const SERVICE = '/runtime.v1.ImageService/';
const METHODS = ['ListImages', 'ImageStatus', 'PullImage', 'RemoveImage', 'ImageFsInfo'] as const;
const raw = { serialize: (b: Buffer) => b, deserialize: (b: Buffer) => b };

// ---- a minimal protobuf wire reader: just enough for PullImageRequest.image.image and .auth ----

function varint(b: Buffer, pos: number): [number, number] {
  let v = 0;
  let mul = 1;
  for (;;) {
    if (pos >= b.length) throw new Error('truncated varint');
    const c = b[pos++]!;
    v += (c & 0x7f) * mul;
    if (c < 0x80) return [v, pos];
    mul *= 128;
  }
}

/** Top-level fields of a message: field number → last length-delimited value (strings, sub-messages). */
function fields(b: Buffer): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  let pos = 0;
  while (pos < b.length) {
    const [key, p1] = varint(b, pos);
    const wire = key & 7;
    const field = Math.floor(key / 8);
    pos = p1;
    if (wire === 0) pos = varint(b, pos)[1];
    else if (wire === 1) pos += 8;
    else if (wire === 5) pos += 4;
    else if (wire === 2) {
      const [len, p2] = varint(b, pos);
      out.set(field, b.subarray(p2, p2 + len));
      pos = p2 + len;
    } else throw new Error(`unsupported wire type ${wire}`);
  }
  return out;
}

/** PullImageRequest → image reference and credentials (username/password, `auth` base64, identity token). */
export function parsePullRequest(b: Buffer): { image: string; creds?: Credentials } {
  const top = fields(b);
  const image =
    fields(top.get(1) ?? Buffer.alloc(0))
      .get(1)
      ?.toString('utf8') ?? '';
  const auth = top.get(2);
  if (!auth) return { image };
  const a = fields(auth);
  const s = (n: number) => a.get(n)?.toString('utf8') ?? '';
  let username = s(1);
  let password = s(2);
  if (!username && s(3)) {
    const dec = Buffer.from(s(3), 'base64').toString('utf8');
    const i = dec.indexOf(':');
    if (i > 0) [username, password] = [dec.slice(0, i), dec.slice(i + 1)];
  }
  const identityToken = s(5) || s(6);
  if (!username && !identityToken) return { image };
  return { image, creds: { ...(username ? { username, password } : {}), ...(identityToken ? { identityToken } : {}) } };
}

export class CriKeychain {
  /** registry host → credentials last sent by kubelet for an image there */
  private readonly byRegistry = new Map<string, Credentials>();
  /** the last write of `file`, so that writes never overlap */
  private saving: Promise<void> = Promise.resolve();

  /** `file`: where the credentials are kept across restarts (none: memory only). */
  constructor(private readonly file?: string) {}

  /** Reads what an earlier daemon kept; a missing or unreadable file is an empty keychain. */
  async load(): Promise<void> {
    if (!this.file) return;
    try {
      const kept = JSON.parse(await readFile(this.file, 'utf8')) as Record<string, Credentials>;
      for (const [host, c] of Object.entries(kept)) if (!this.byRegistry.has(host)) this.byRegistry.set(host, c);
    } catch {
      // nothing kept yet
    }
  }

  remember(imageRef: string, creds: Credentials): void {
    try {
      this.byRegistry.set(parseReference(imageRef).registry, creds);
    } catch {
      return; // an unparsable reference: containerd will refuse the pull itself
    }
    const file = this.file;
    if (!file) return;
    const text = JSON.stringify(Object.fromEntries(this.byRegistry));
    this.saving = this.saving
      .then(async () => {
        await mkdir(dirname(file), { recursive: true, mode: 0o700 });
        await writeFileAtomic(file, text, 0o600);
      })
      .catch(() => undefined); // memory still has them; the next pull writes again
  }

  /** Resolves once what was remembered so far is on disk. */
  flushed(): Promise<void> {
    return this.saving;
  }

  readonly provider: CredentialProvider = async (registry) => this.byRegistry.get(registry);
}

/** Adds the forwarding ImageService to `server`; calls go to containerd at `target` (a socket path). */
export function addImageServiceProxy(server: grpc.Server, target: string, keychain: CriKeychain, logger: Logger): () => void {
  const upstream = new grpc.Client(`unix://${target}`, grpc.credentials.createInsecure());
  const definition: Record<string, grpc.MethodDefinition<Buffer, Buffer>> = {};
  const handlers: grpc.UntypedServiceImplementation = {};
  for (const m of METHODS) {
    const path = `${SERVICE}${m}`;
    definition[m] = {
      path,
      requestStream: false,
      responseStream: false,
      requestSerialize: raw.serialize,
      requestDeserialize: raw.deserialize,
      responseSerialize: raw.serialize,
      responseDeserialize: raw.deserialize,
    };
    handlers[m] = (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      if (m === 'PullImage') {
        try {
          const { image, creds } = parsePullRequest(call.request);
          if (creds) keychain.remember(image, creds);
          logger.info({ image, credentials: creds ? 'provided' : 'none' }, 'CRI PullImage proxied');
        } catch (e) {
          logger.warn({ error: (e as Error).message }, 'CRI PullImage request not understood; forwarded as is');
        }
      } else if (m === 'RemoveImage') {
        // kubelet's image garbage collection ends here: worth a line when disk is freed
        // (RemoveImageRequest.image.image has PullImageRequest's field numbers).
        try {
          logger.info({ image: parsePullRequest(call.request).image }, 'CRI RemoveImage proxied');
        } catch {
          /* forwarded as is */
        }
      }
      // Forward untouched (namespace and other metadata included) and relay the answer or error.
      upstream.makeUnaryRequest(path, raw.serialize, raw.deserialize, call.request, call.metadata, { deadline: call.getDeadline() }, (err, res) =>
        cb(err, res),
      );
    };
  }
  server.addService(definition as grpc.ServiceDefinition, handlers);
  return () => upstream.close();
}
