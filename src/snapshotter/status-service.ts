/**
 * The daemon's own status service, on the same socket as containerd's Snapshots service:
 * `soci.v1.Status/Info` (version, pid, root, config file, metrics address) and
 * `soci.v1.Status/Layers` (what prepare decided for each layer of an image: lazy, local or deferred,
 * and why). Messages are JSON, so no proto file is needed; `soci doctor` is the client.
 */
import * as grpc from '@grpc/grpc-js';
import type { LayerDecision } from './decisions.js';

export interface StatusInfo {
  version: string;
  pid: number;
  root: string;
  configPath: string;
  metricsAddress: string;
  metricsNetwork: string;
  minLayerSize: number;
  /** SOCI index discovery modes ([pull_modes]) */
  v1: boolean;
  v2: boolean;
}

const json = {
  serialize: (v: unknown) => Buffer.from(JSON.stringify(v)),
  deserialize: (b: Buffer) => (b.length ? JSON.parse(b.toString('utf8')) : {}),
};
const method = (name: string) => ({
  path: `/soci.v1.Status/${name}`,
  requestStream: false,
  responseStream: false,
  requestSerialize: json.serialize,
  requestDeserialize: json.deserialize,
  responseSerialize: json.serialize,
  responseDeserialize: json.deserialize,
});

export const STATUS_SERVICE: grpc.ServiceDefinition = { Info: method('Info'), Layers: method('Layers') };

export function statusHandlers(info: () => StatusInfo, layers: (image: string) => LayerDecision[]): grpc.UntypedServiceImplementation {
  return {
    Info: (_call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<StatusInfo>) => cb(null, info()),
    Layers: (call: grpc.ServerUnaryCall<{ image?: unknown }, unknown>, cb: grpc.sendUnaryData<{ layers: LayerDecision[] }>) =>
      cb(null, { layers: layers(typeof call.request.image === 'string' ? call.request.image : '') }),
  };
}

type Unary = (req: unknown, opts: grpc.CallOptions, cb: (e: grpc.ServiceError | null, v: unknown) => void) => void;

/** A client of a daemon's status service at a unix socket; each call gives up after `timeoutMs`. */
export function statusClient(socket: string, timeoutMs = 5000) {
  const Ctor = grpc.makeGenericClientConstructor(STATUS_SERVICE, 'Status');
  const c = new Ctor(`unix://${socket.replace(/^unix:\/\//, '')}`, grpc.credentials.createInsecure()) as unknown as grpc.Client & Record<string, Unary>;
  const call = <T>(name: string, req: unknown) =>
    new Promise<T>((resolve, reject) => c[name]!(req, { deadline: Date.now() + timeoutMs }, (e, v) => (e ? reject(e) : resolve(v as T))));
  return {
    info: () => call<StatusInfo>('Info', {}),
    layers: async (image = '') => (await call<{ layers: LayerDecision[] }>('Layers', { image })).layers,
    close: () => c.close(),
  };
}
