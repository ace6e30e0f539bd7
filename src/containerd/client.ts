/**
 * A small containerd client over gRPC (containerd's own v1 API protos): enough of the namespaces,
 * images, content and leases services for `soci` to work on containerd's image store, as AWS's CLI
 * does through containerd's Go client.
 *
 * Every call carries the `containerd-namespace` header, and the `containerd-lease` header while a
 * lease is held, so content written by a command is protected from containerd's garbage collector
 * until the image record that roots it exists. gRPC failures become one-line SociErrors: errdefs'
 * codes (NOT_FOUND, ALREADY_EXISTS, ...) map to ours, and an unreachable daemon names its socket.
 */
import * as grpc from '@grpc/grpc-js';
import { accessSync, constants, statSync } from 'node:fs';
import { SociError } from '../errors.js';
import { serviceConstructor } from './proto.js';

export interface ContainerdOptions {
  /** socket path; a `unix://` prefix is accepted, as by AWS's CLI */
  address: string;
  namespace: string;
  /** every call must end by then (the whole command's `--timeout`) */
  deadline?: Date;
}

type Unary = (req: unknown, md: grpc.Metadata, opts: grpc.CallOptions, cb: (e: grpc.ServiceError | null, res: unknown) => void) => void;
export type Stub = grpc.Client & Record<string, Function>;

const SERVICES = {
  content: ['services/content/v1/content.proto', 'containerd.services.content.v1.Content'],
  images: ['services/images/v1/images.proto', 'containerd.services.images.v1.Images'],
  leases: ['services/leases/v1/leases.proto', 'containerd.services.leases.v1.Leases'],
  namespaces: ['services/namespaces/v1/namespace.proto', 'containerd.services.namespaces.v1.Namespaces'],
  version: ['services/version/v1/version.proto', 'containerd.services.version.v1.Version'],
  snapshots: ['services/snapshots/v1/snapshots.proto', 'containerd.services.snapshots.v1.Snapshots'],
} as const;
export type ServiceName = keyof typeof SERVICES;

/** `unix:///run/x.sock` or `/run/x.sock` → `/run/x.sock`. */
export function socketPath(address: string): string {
  return address.replace(/^unix:\/\//, '');
}

export class ContainerdConnection {
  readonly path: string;
  private readonly stubs = new Map<ServiceName, Stub>();
  private channel: grpc.Channel | undefined;
  lease: string | undefined;

  constructor(readonly opts: ContainerdOptions) {
    this.path = socketPath(opts.address);
  }

  get namespace(): string {
    return this.opts.namespace;
  }

  /**
   * Checks the socket before the first call, so the common mistakes get their own line: containerd
   * not running (no socket), not root (permission denied), then a Version call to prove it answers.
   */
  async connect(): Promise<{ version: string; revision: string }> {
    let isSocket = false;
    try {
      isSocket = statSync(this.path).isSocket();
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EACCES') throw this.permissionError();
      throw new SociError('ERR_CONTAINERD', `containerd is not running: no socket at ${this.path} (start containerd, or pass its socket with -a/--address)`);
    }
    if (!isSocket) throw new SociError('ERR_CONTAINERD', `${this.path} is not a socket: pass containerd's socket with -a/--address`);
    try {
      accessSync(this.path, constants.R_OK | constants.W_OK);
    } catch {
      throw this.permissionError();
    }
    const v = (await this.unary('version', 'Version', {}, { namespace: null })) as { version: string; revision: string };
    return v;
  }

  private permissionError(): SociError {
    return new SociError('ERR_CONTAINERD', `permission denied on containerd's socket ${this.path}: run as root (sudo), or use a socket you can write`);
  }

  stub(name: ServiceName): Stub {
    let s = this.stubs.get(name);
    if (!s) {
      const [file, service] = SERVICES[name];
      const Ctor = serviceConstructor(file, service);
      const options: grpc.ChannelOptions = { 'grpc.max_receive_message_length': 64 << 20, 'grpc.max_send_message_length': 64 << 20 };
      if (this.channel) options.channelOverride = this.channel;
      s = new Ctor(`unix://${this.path}`, grpc.credentials.createInsecure(), options) as unknown as Stub;
      this.channel ??= s.getChannel() as grpc.Channel;
      this.stubs.set(name, s);
    }
    return s;
  }

  /** `namespace`: the connection's by default; null sends none (namespace-less services). */
  metadata(namespace: string | null = this.opts.namespace): grpc.Metadata {
    const md = new grpc.Metadata();
    if (namespace !== null) md.set('containerd-namespace', namespace);
    if (this.lease) md.set('containerd-lease', this.lease);
    return md;
  }

  callOptions(): grpc.CallOptions {
    return this.opts.deadline ? { deadline: this.opts.deadline } : {};
  }

  unary(service: ServiceName, method: string, req: unknown, o: { namespace?: string | null } = {}): Promise<unknown> {
    const fn = this.stub(service)[method] as Unary;
    return new Promise((resolve, reject) => {
      fn.call(this.stub(service), req, this.metadata(o.namespace), this.callOptions(), (e, res) =>
        e ? reject(this.error(e, `${service}.${method}`)) : resolve(res),
      );
    });
  }

  /** A gRPC error as a one-line SociError (containerd's errdefs classes kept as codes). */
  error(e: grpc.ServiceError, what: string): SociError {
    const detail = oneLine(e.details || e.message);
    switch (e.code) {
      case grpc.status.NOT_FOUND:
        return new SociError('ERR_NOT_FOUND', detail, { cause: e });
      case grpc.status.ALREADY_EXISTS:
        return new SociError('ERR_ALREADY_EXISTS', detail, { cause: e });
      case grpc.status.DEADLINE_EXCEEDED:
        return new SociError('ERR_TIMEOUT', `containerd did not answer ${what} in time (--timeout)`, { cause: e });
      case grpc.status.UNAVAILABLE:
        return new SociError('ERR_CONTAINERD', `cannot reach containerd at ${this.path}: ${detail}`, { cause: e });
      case grpc.status.PERMISSION_DENIED:
        return this.permissionError();
      case grpc.status.CANCELLED:
        return new SociError('ERR_INTERRUPTED', 'interrupted', { cause: e });
      default:
        return new SociError(e.code === grpc.status.INVALID_ARGUMENT ? 'ERR_USAGE' : 'ERR_CONTAINERD', `containerd ${what}: ${detail}`, { cause: e });
    }
  }

  close(): void {
    for (const s of this.stubs.values()) s.close();
    this.stubs.clear();
    this.channel = undefined;
  }
}

function oneLine(s: string): string {
  return s.replace(/[\r\n]+/g, ' ').trim();
}
