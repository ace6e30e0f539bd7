/**
 * Content digests (OCI image spec, descriptor "digest"): `<algorithm>:<hex>`. Registries speak
 * sha256 and sha512; every SOCI artifact and every layout blob we write is sha256.
 */
import { createHash } from 'node:crypto';
import { SociError } from '../errors.js';

export type DigestAlgorithm = 'sha256' | 'sha512';

const ANY_DIGEST = /^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$/;
const SHA256_DIGEST = /^sha256:[a-f0-9]{64}$/;

/** `<alg>:<hex>` of the bytes (sha256 unless asked; a string is hashed as UTF-8). */
export function digestOf(data: Uint8Array | string, alg: DigestAlgorithm = 'sha256'): string {
  return `${alg}:${createHash(alg).update(data).digest('hex')}`;
}

/** The bare sha256 hex of the bytes (cache keys, test vectors that list hex). */
export function sha256Hex(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/** A well-formed sha256 or sha512 digest. */
export function isDigest(s: string): boolean {
  return ANY_DIGEST.test(s);
}

/** The algorithm of a well-formed digest; a one-line error otherwise. */
export function checkDigest(digest: string): DigestAlgorithm {
  if (!ANY_DIGEST.test(digest)) {
    if (/^[a-z0-9]+:/.test(digest) && !digest.startsWith('sha')) throw new SociError('ERR_UNSUPPORTED', `unsupported digest algorithm in "${digest}"`);
    throw new SociError('ERR_USAGE', `invalid digest "${digest}"`);
  }
  return digest.startsWith('sha256:') ? 'sha256' : 'sha512';
}

/** Validates a `sha256:<hex>` digest (user input naming a SOCI artifact or layout blob). */
export function parseDigest(s: string): string {
  if (!SHA256_DIGEST.test(s)) throw new SociError('ERR_USAGE', `invalid digest "${s}": expected sha256:<64 hex>`);
  return s;
}

/** The hex of a sha256 digest (its blob's file name). */
export function digestHex(d: string): string {
  return parseDigest(d).slice('sha256:'.length);
}

/**
 * The chain IDs of an image's layers (OCI image spec, "Layer ChainID"), from its config's
 * diff_ids: containerd's names for the layers' committed snapshots.
 */
export function chainIds(diffIds: readonly string[]): string[] {
  const out: string[] = [];
  for (const d of diffIds) out.push(out.length ? digestOf(`${out[out.length - 1]} ${d}`) : d);
  return out;
}
