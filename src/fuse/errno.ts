/** Maps whatever a Filesystem throws to the positive Linux errno sent in the FUSE reply. */
import { constants } from 'node:os';
import type { ErrorCode } from '../errors.js';
import { Errno } from './types.js';

const sociCodes: Partial<Record<ErrorCode, number>> = {
  ERR_NOT_FOUND: Errno.ENOENT,
  ERR_NO_ZTOC: Errno.ENOENT,
  ERR_TIMEOUT: Errno.EIO,
  ERR_UNSUPPORTED: Errno.EOPNOTSUPP,
  ERR_USAGE: Errno.EINVAL,
  ERR_AUTH: Errno.EIO,
  ERR_NETWORK: Errno.EIO,
  ERR_DIGEST_MISMATCH: Errno.EIO,
};

const systemCodes = constants.errno as Record<string, number>;

export function toErrno(e: unknown): number {
  if (e && typeof e === 'object') {
    const o = e as { errno?: unknown; code?: unknown; name?: unknown };
    // SociError: string code starting with ERR_ (checked first: it has no errno).
    if (typeof o.code === 'string' && o.code.startsWith('ERR_')) {
      return sociCodes[o.code as ErrorCode] ?? Errno.EIO;
    }
    // Our ErrnoError (positive) or a Node system error (negative errno, string code).
    if (typeof o.errno === 'number' && o.errno !== 0 && Number.isInteger(o.errno)) return Math.abs(o.errno);
    if (typeof o.code === 'string' && typeof systemCodes[o.code] === 'number') return systemCodes[o.code]!;
  }
  return Errno.EIO;
}
