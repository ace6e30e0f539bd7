/**
 * containerd.services.snapshots.v1.Snapshots over @grpc/grpc-js (containerd's proto, loaded at run
 * time by src/containerd/proto.ts). Translates protobuf messages to
 * Snapshotter calls and errors to gRPC status codes.
 */
import * as grpc from '@grpc/grpc-js';
import { serviceConstructor } from '../containerd/proto.js';
import { grpcStatusOf } from './errors.js';
import type { Logger } from './logger.js';
import type { Info } from './metastore.js';
import type { Snapshotter } from './snapshotter.js';

const SNAPSHOTS_PROTO = 'services/snapshots/v1/snapshots.proto';
const SNAPSHOTS = 'containerd.services.snapshots.v1.Snapshots';

export function loadSnapshotsService(): grpc.ServiceDefinition {
  return serviceConstructor(SNAPSHOTS_PROTO, SNAPSHOTS).service;
}

/** Client for tests and tools that talk to the daemon directly. */
export function snapshotsClient(address: string): grpc.Client & Record<string, Function> {
  const target = address.startsWith('unix://') ? address : `unix://${address}`;
  const Ctor = serviceConstructor(SNAPSHOTS_PROTO, SNAPSHOTS);
  return new Ctor(target, grpc.credentials.createInsecure()) as unknown as grpc.Client & Record<string, Function>;
}

interface Timestamp {
  seconds: string;
  nanos: number;
}
interface PInfo {
  name: string;
  parent: string;
  kind: string;
  created_at: Timestamp | null;
  updated_at: Timestamp | null;
  labels: Record<string, string>;
}

const ts = (d: Date): Timestamp => {
  const ms = d.getTime();
  return { seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1e6 };
};

const KIND: Record<Info['kind'], string> = { view: 'VIEW', active: 'ACTIVE', committed: 'COMMITTED' };

export const toProtoInfo = (i: Info): PInfo => ({
  name: i.name,
  parent: i.parent,
  kind: KIND[i.kind],
  created_at: ts(i.created),
  updated_at: ts(i.updated),
  labels: i.labels,
});

export function namespaceOf(call: { metadata: grpc.Metadata }): string {
  const v = call.metadata.get('containerd-namespace')[0];
  return v === undefined ? '' : String(v);
}

// biome-ignore lint/suspicious/noExplicitAny: requests decoded by proto-loader at run time
type Req = Record<string, any>;

export function createHandlers(sn: Snapshotter, logger: Logger): grpc.UntypedServiceImplementation {
  /** Wraps an async unary handler: result → callback, errors → status + one-line message. */
  const unary =
    (method: string, fn: (req: Req, ns: string) => Promise<unknown> | unknown) =>
    (call: grpc.ServerUnaryCall<Req, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      const ns = namespaceOf(call);
      Promise.resolve()
        .then(() => fn(call.request, ns))
        .then(
          (res) => cb(null, res ?? {}),
          (e: unknown) => {
            const code = grpcStatusOf(e);
            const message = e instanceof Error ? e.message : String(e);
            if (code === grpc.status.UNKNOWN || code === grpc.status.INTERNAL) logger.error({ method, namespace: ns, err: message }, 'snapshot request failed');
            else logger.debug({ method, namespace: ns, code: grpc.status[code], err: message }, 'snapshot request rejected');
            cb({ code, details: message, message } as grpc.ServiceError);
          },
        );
    };

  return {
    Prepare: unary('Prepare', async (r, ns) => ({ mounts: await sn.prepare({ namespace: ns, key: r.key }, r.key, r.parent, r.labels ?? {}) })),
    View: unary('View', async (r) => ({ mounts: await sn.view(r.key, r.parent, r.labels ?? {}) })),
    Mounts: unary('Mounts', async (r) => ({ mounts: await sn.mounts(r.key) })),
    Commit: unary('Commit', async (r) => {
      await sn.commit(r.name, r.key, r.labels ?? {});
      return {};
    }),
    Remove: unary('Remove', async (r) => {
      await sn.remove(r.key);
      return {};
    }),
    Stat: unary('Stat', (r) => ({ info: toProtoInfo(sn.stat(r.key)) })),
    Update: unary('Update', (r) => {
      const info = (r.info ?? {}) as PInfo;
      // containerd sends zero timestamps and immutable fields; only labels are applied.
      const paths: string[] = r.update_mask?.paths ?? [];
      return { info: toProtoInfo(sn.update({ name: info.name, labels: info.labels ?? {} }, paths)) };
    }),
    List: (call: grpc.ServerWritableStream<Req, unknown>) => {
      try {
        const infos = sn.list(call.request.filters ?? []);
        // Batches like containerd's service (100 per message) to keep messages small.
        for (let i = 0; i < infos.length; i += 100) call.write({ info: infos.slice(i, i + 100).map(toProtoInfo) });
        call.end();
      } catch (e) {
        const message = e instanceof Error ? e.message : String(e);
        call.emit('error', { code: grpcStatusOf(e), details: message, message } as grpc.ServiceError);
      }
    },
    Usage: unary('Usage', async (r) => {
      const u = await sn.usage(r.key);
      return { size: String(u.size), inodes: String(u.inodes) };
    }),
    Cleanup: unary('Cleanup', async () => {
      await sn.cleanup();
      return {};
    }),
  };
}
