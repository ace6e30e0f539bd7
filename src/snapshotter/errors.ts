/**
 * Snapshot-service errors carry the containerd errdefs class they map to, because containerd
 * reacts to the gRPC code (ALREADY_EXISTS on Prepare is the remote-snapshot protocol).
 */
import { status } from '@grpc/grpc-js';
import { isSociError } from '../errors.js';

export type SnapshotErrorKind = 'not_found' | 'already_exists' | 'failed_precondition' | 'invalid_argument' | 'unavailable' | 'internal';

export class SnapshotError extends Error {
  readonly kind: SnapshotErrorKind;
  constructor(kind: SnapshotErrorKind, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SnapshotError';
    this.kind = kind;
  }
}

export const notFound = (m: string) => new SnapshotError('not_found', m);
export const alreadyExists = (m: string) => new SnapshotError('already_exists', m);
export const failedPrecondition = (m: string) => new SnapshotError('failed_precondition', m);
export const invalidArgument = (m: string) => new SnapshotError('invalid_argument', m);

/** gRPC status for any error thrown by the snapshotter (SociError codes included). */
export function grpcStatusOf(e: unknown): status {
  if (e instanceof SnapshotError) {
    switch (e.kind) {
      case 'not_found':
        return status.NOT_FOUND;
      case 'already_exists':
        return status.ALREADY_EXISTS;
      case 'failed_precondition':
        return status.FAILED_PRECONDITION;
      case 'invalid_argument':
        return status.INVALID_ARGUMENT;
      case 'unavailable':
        return status.UNAVAILABLE;
      default:
        return status.INTERNAL;
    }
  }
  if (isSociError(e, 'ERR_NOT_FOUND')) return status.NOT_FOUND;
  if (isSociError(e, 'ERR_USAGE')) return status.INVALID_ARGUMENT;
  return status.UNKNOWN;
}
