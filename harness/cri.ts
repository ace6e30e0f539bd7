/**
 * A minimal CRI ImageService client (crictl and nerdctl cannot be installed here: the Go module proxy
 * refuses them). `criPull(socket, 'host/repo:tag')` makes containerd's CRI plugin pull with the
 * snapshotter configured in `[plugins."io.containerd.grpc.v1.cri".containerd] snapshotter = "soci"`,
 * passing the remote-snapshot labels (cri.image-ref, cri.layer-digest, …) to it.
 */
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const PROTO = join(dirname(fileURLToPath(import.meta.url)), 'cri-image.proto');

type Unary<Req, Res> = (req: Req, md: grpc.Metadata, opts: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r: Res) => void) => void;
interface ImageServiceClient extends grpc.Client {
  PullImage: Unary<{ image: { image: string }; auth?: Record<string, string> }, { image_ref: string }>;
  ListImages: Unary<Record<string, never>, { images: Array<{ id: string; repo_tags: string[]; repo_digests: string[]; size: string }> }>;
  RemoveImage: Unary<{ image: { image: string } }, Record<string, never>>;
}

function client(socket: string): ImageServiceClient {
  const def = protoLoader.loadSync(PROTO, { keepCase: true, longs: String, defaults: true });
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    runtime: { v1: { ImageService: new (addr: string, creds: grpc.ChannelCredentials) => ImageServiceClient } };
  };
  return new pkg.runtime.v1.ImageService(`unix://${socket}`, grpc.credentials.createInsecure());
}

function call<Req, Res>(c: ImageServiceClient, fn: Unary<Req, Res>, req: Req, timeoutMs: number): Promise<Res> {
  return new Promise((res, rej) => fn.call(c, req, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (e, r) => (e ? rej(e) : res(r))));
}

/** Pulls `image` through CRI; resolves to the image id (config digest). */
export async function criPull(socket: string, image: string, opts: { username?: string; password?: string; timeoutMs?: number } = {}): Promise<string> {
  const c = client(socket);
  try {
    const auth = opts.username ? { username: opts.username, password: opts.password ?? '' } : undefined;
    const r = await call(c, c.PullImage, { image: { image }, ...(auth ? { auth } : {}) }, opts.timeoutMs ?? 300_000);
    return r.image_ref;
  } finally {
    c.close();
  }
}

export async function criListImages(socket: string): Promise<Array<{ id: string; repo_tags: string[]; repo_digests: string[] }>> {
  const c = client(socket);
  try {
    return (await call(c, c.ListImages, {}, 30_000)).images;
  } finally {
    c.close();
  }
}

export async function criRemoveImage(socket: string, image: string): Promise<void> {
  const c = client(socket);
  try {
    await call(c, c.RemoveImage, { image: { image } }, 60_000);
  } finally {
    c.close();
  }
}
