/**
 * Loads containerd's API protos (the `proto/` folder beside this file; the package ships it) into
 * grpc-js service constructors. Works from src/ (tsx) and dist/ (compiled), which has no proto copy.
 */
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

function protoDir(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const local = join(here, 'proto');
  return existsSync(join(local, 'types')) ? local : join(here, '..', '..', 'src', 'containerd', 'proto');
}

const cache = new Map<string, grpc.GrpcObject>();

/** `file` relative to the proto root, e.g. `services/content/v1/content.proto`. */
function load(file: string): grpc.GrpcObject {
  let pkg = cache.get(file);
  if (!pkg) {
    const dir = protoDir();
    const def = protoLoader.loadSync(join(dir, file), {
      includeDirs: [dir],
      keepCase: true,
      longs: String,
      enums: String,
      defaults: true,
      arrays: true,
      objects: true,
    });
    pkg = grpc.loadPackageDefinition(def);
    cache.set(file, pkg);
  }
  return pkg;
}

/** The constructor of service `name` (dotted, e.g. `containerd.services.content.v1.Content`). */
export function serviceConstructor(file: string, name: string): grpc.ServiceClientConstructor {
  let node: unknown = load(file);
  for (const part of name.split('.')) node = (node as Record<string, unknown>)[part];
  if (typeof node !== 'function') throw new Error(`service ${name} not found in ${file}`);
  return node as grpc.ServiceClientConstructor;
}
