import { createHash } from 'node:crypto';
import { SociError } from '../errors.js';

const DIGEST_RE = /^sha256:[a-f0-9]{64}$/;

export function sha256Digest(data: Uint8Array): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

export function isDigest(s: string): boolean {
  return DIGEST_RE.test(s);
}

/** Validates a `sha256:<hex>` digest (the only algorithm SOCI artifacts use). */
export function parseDigest(s: string): string {
  if (!DIGEST_RE.test(s)) throw new SociError('ERR_USAGE', `invalid digest "${s}": expected sha256:<64 hex>`);
  return s;
}

export function digestHex(d: string): string {
  return parseDigest(d).slice('sha256:'.length);
}
