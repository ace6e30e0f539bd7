/**
 * One error type for every domain. `code` is stable (tests and the CLI/daemon mapping rely on it);
 * `message` is a single line a user can act on and never contains credentials.
 * The CLI prints `soci: <message>` and exits non-zero; the daemon maps codes to gRPC codes / errno.
 */
export type ErrorCode =
  // input / formats
  | 'ERR_USAGE' // bad flags or arguments
  | 'ERR_NOT_FOUND' // a file, digest, image or artifact that does not exist
  | 'ERR_BAD_GZIP' // truncated or corrupt gzip / deflate data
  | 'ERR_BAD_TAR' // malformed tar or an unsupported entry type
  | 'ERR_INVALID_ZTOC' // zTOC flatbuffer fails to parse or is inconsistent
  | 'ERR_INVALID_CHECKPOINTS' // zinfo blob has a bad length/contents
  | 'ERR_UNSUPPORTED' // a valid thing we do not handle (zstd layer, media type)
  | 'ERR_EMPTY_INDEX' // no layer got a zTOC
  | 'ERR_DIGEST_MISMATCH' // bytes do not match their digest
  | 'ERR_INVALID_REFERENCE'
  | 'ERR_INVALID_MANIFEST'
  // registry
  | 'ERR_AUTH'
  | 'ERR_REGISTRY'
  | 'ERR_NETWORK'
  | 'ERR_TIMEOUT'
  // containerd
  | 'ERR_CONTAINERD' // containerd unreachable, refused the call, or its store lacks what we need
  | 'ERR_ALREADY_EXISTS'
  | 'ERR_INTERRUPTED' // the command was stopped (Ctrl-C)
  // runtime
  | 'ERR_NO_INDEX' // image has no (usable) SOCI index
  | 'ERR_NO_ZTOC' // layer not in the index
  | 'ERR_FUSE'
  | 'ERR_IO'
  | 'ERR_INTERNAL';

export class SociError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SociError';
    this.code = code;
  }
}

export function isSociError(e: unknown, code?: ErrorCode): e is SociError {
  return e instanceof SociError && (code === undefined || e.code === code);
}

const ESCAPES: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/**
 * Control characters that came from the input (a file name, a registry's error body) shown as
 * escapes, so a message stays one line: `\n`, `\r`, `\t`, other C0/C1 controls and DEL as `\xHH`,
 * the Unicode line/paragraph separators as `\u2028`/`\u2029`.
 */
export function escapeControls(s: string): string {
  return s.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, (c) => {
    const code = c.charCodeAt(0);
    return ESCAPES[c] ?? (code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16)}`);
  });
}
