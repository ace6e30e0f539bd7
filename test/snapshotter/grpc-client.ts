/** Promise wrapper around the Snapshots gRPC client for tests (namespace via metadata). */
import * as grpc from '@grpc/grpc-js';
import { snapshotsClient } from '../../src/snapshotter/grpc-service.js';

export interface CallError {
  code: number;
  details: string;
}

export class TestClient {
  private readonly c: grpc.Client & Record<string, Function>;
  constructor(
    address: string,
    private readonly namespace = 'test',
  ) {
    this.c = snapshotsClient(address);
  }
  close(): void {
    this.c.close();
  }
  private md(): grpc.Metadata {
    const m = new grpc.Metadata();
    m.set('containerd-namespace', this.namespace);
    return m;
  }
  call<T = any>(method: string, req: Record<string, unknown>): Promise<T> {
    return new Promise((res, rej) => {
      this.c[method]!.call(this.c, req, this.md(), (err: grpc.ServiceError | null, out: T) => (err ? rej(err) : res(out)));
    });
  }
  /** Resolves with the gRPC status code of a failing call (throws if it succeeds). */
  async code(method: string, req: Record<string, unknown>): Promise<number> {
    try {
      await this.call(method, req);
    } catch (e) {
      return (e as CallError).code;
    }
    throw new Error(`${method} unexpectedly succeeded`);
  }
  list(filters: string[] = []): Promise<any[]> {
    return new Promise((res, rej) => {
      const out: any[] = [];
      const s = this.c.List!.call(this.c, { filters }, this.md()) as grpc.ClientReadableStream<{ info: any[] }>;
      s.on('data', (m) => out.push(...m.info));
      s.on('error', rej);
      s.on('end', () => res(out));
    });
  }
}
