/**
 * The two inflate engines behind one small interface: the native addon (native/zinflate.c, Node's
 * own zlib) and pako's port of zlib. Both expose the zlib features node:zlib hides — Z_BLOCK stops
 * with data_type, inflatePrime, inflateSetDictionary, inflateReset2 — so the checkpoint logic above
 * them is written once and yields identical bytes with either engine.
 */
import { createRequire } from 'node:module';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ZStream, zlibInflate, zlibInflateInit2, zlibInflateReset2, zlibInflateSetDictionary } from 'pako';
import { SociError } from '../errors.js';
import type { EngineName } from './types.js';

export const Z_OK = 0;
export const Z_STREAM_END = 1;
export const Z_NEED_DICT = 2;
export const Z_BUF_ERROR = -5;
export const Z_NO_FLUSH = 0;
export const Z_SYNC_FLUSH = 2;
export const Z_BLOCK = 5;

/** A zlib inflate stream. After `inflate`, availIn/availOut/dataType describe the stream state. */
export interface Inflater {
  readonly engine: EngineName;
  inflate(input: Buffer, inOff: number, inLen: number, out: Buffer, outOff: number, outLen: number, flush: number): number;
  readonly availIn: number;
  readonly availOut: number;
  readonly dataType: number;
  reset2(windowBits: number): number;
  setDictionary(dict: Buffer): number;
  prime(bits: number, value: number): number;
  /** zlib's error message after a failed call, if any */
  message(): string | null;
}

/** Shape of native/zinflate.c's exports. */
export interface NativeAddon {
  create(windowBits: number): unknown;
  inflate(h: unknown, input: Buffer, inOff: number, inLen: number, out: Buffer, outOff: number, outLen: number, flush: number, info: Int32Array): number;
  prime(h: unknown, bits: number, value: number): number;
  setDictionary(h: unknown, dict: Buffer): number;
  reset2(h: unknown, windowBits: number): number;
  message(h: unknown): string | null;
  zlibVersion: string;
}

class NativeInflater implements Inflater {
  readonly engine = 'native' as const;
  private readonly h: unknown;
  private readonly info = new Int32Array(4);
  constructor(
    private readonly addon: NativeAddon,
    windowBits: number,
  ) {
    this.h = addon.create(windowBits);
  }
  inflate(input: Buffer, inOff: number, inLen: number, out: Buffer, outOff: number, outLen: number, flush: number): number {
    return this.addon.inflate(this.h, input, inOff, inLen, out, outOff, outLen, flush, this.info);
  }
  get availIn(): number {
    return this.info[0]!;
  }
  get availOut(): number {
    return this.info[1]!;
  }
  get dataType(): number {
    return this.info[2]!;
  }
  reset2(windowBits: number): number {
    return this.addon.reset2(this.h, windowBits);
  }
  setDictionary(dict: Buffer): number {
    return this.addon.setDictionary(this.h, dict);
  }
  prime(bits: number, value: number): number {
    return this.addon.prime(this.h, bits, value);
  }
  message(): string | null {
    return this.addon.message(this.h);
  }
}

class JsInflater implements Inflater {
  readonly engine = 'js' as const;
  private readonly strm = new ZStream();
  private lastIn: Buffer | null = null;
  private lastInView: Uint8Array | null = null;
  private lastOut: Buffer | null = null;
  private lastOutView: Uint8Array | null = null;
  constructor(windowBits: number) {
    const r = zlibInflateInit2(this.strm, windowBits);
    if (r !== Z_OK) throw new SociError('ERR_INTERNAL', `pako inflateInit2 failed (${r})`);
  }
  inflate(input: Buffer, inOff: number, inLen: number, out: Buffer, outOff: number, outLen: number, flush: number): number {
    const s = this.strm;
    // plain Uint8Array views: pako's hot loops stay monomorphic (Buffer is a subclass with another map)
    if (input !== this.lastIn) {
      this.lastIn = input;
      this.lastInView = new Uint8Array(input.buffer, input.byteOffset, input.length);
    }
    if (out !== this.lastOut) {
      this.lastOut = out;
      this.lastOutView = new Uint8Array(out.buffer, out.byteOffset, out.length);
    }
    s.input = this.lastInView!;
    s.next_in = inOff;
    s.avail_in = inLen;
    s.output = this.lastOutView as Uint8Array<ArrayBuffer>;
    s.next_out = outOff;
    s.avail_out = outLen;
    s.msg = '';
    return zlibInflate(s, flush as 5);
  }
  get availIn(): number {
    return this.strm.avail_in;
  }
  get availOut(): number {
    return this.strm.avail_out;
  }
  get dataType(): number {
    return this.strm.data_type;
  }
  reset2(windowBits: number): number {
    return zlibInflateReset2(this.strm, windowBits);
  }
  setDictionary(dict: Buffer): number {
    return zlibInflateSetDictionary(this.strm, dict);
  }
  /** pako has no inflatePrime; this is zlib's implementation applied to pako's bit accumulator. */
  prime(bits: number, value: number): number {
    const st = this.strm.state as { hold: number; bits: number } | null;
    if (!st) return -2;
    if (bits < 0) {
      st.hold = 0;
      st.bits = 0;
      return Z_OK;
    }
    if (bits > 16 || st.bits + bits > 32) return -2;
    const v = value & ((1 << bits) - 1);
    st.hold = (st.hold + v * 2 ** st.bits) >>> 0;
    st.bits += bits;
    return Z_OK;
  }
  message(): string | null {
    return this.strm.msg || null;
  }
}

const here = dirname(fileURLToPath(import.meta.url));
/** Where `npm install` (node-gyp) puts the addon: <package root>/build/Release/zinflate.node. */
export const defaultAddonPath = resolve(here, '../../build/Release/zinflate.node');

/** Loads and sanity-checks an addon file; null when it is missing, broken or has the wrong shape. */
export function loadAddon(path: string): NativeAddon | null {
  try {
    const req = createRequire(import.meta.url);
    const a = req(path) as Partial<NativeAddon>;
    for (const k of ['create', 'inflate', 'prime', 'setDictionary', 'reset2', 'message'] as const) {
      if (typeof a[k] !== 'function') return null;
    }
    return a as NativeAddon;
  } catch {
    return null;
  }
}

let cached: { addon: NativeAddon | null } | undefined;

function defaultAddon(): NativeAddon | null {
  if (!cached) cached = { addon: loadAddon(process.env.SOCI_ZINFLATE_ADDON ?? defaultAddonPath) };
  return cached.addon;
}

/** True when the native addon is built and loads. */
export function nativeAvailable(): boolean {
  return defaultAddon() !== null;
}

/**
 * The engine choice as a pure function (testable): `forced` is SOCI_ZLIB_ENGINE.
 * Forcing native without the addon is an error, never a silent fallback.
 */
export function chooseEngine(forced: string | undefined, haveNative: boolean): EngineName {
  const f = (forced ?? '').trim().toLowerCase();
  if (f === 'js') return 'js';
  if (f === 'native') {
    if (!haveNative) {
      throw new SociError('ERR_UNSUPPORTED', 'SOCI_ZLIB_ENGINE=native but the zinflate addon is not built (run `npm rebuild` or unset SOCI_ZLIB_ENGINE)');
    }
    return 'native';
  }
  if (f !== '') throw new SociError('ERR_USAGE', `SOCI_ZLIB_ENGINE must be "js" or "native", not "${forced}"`);
  return haveNative ? 'native' : 'js';
}

/** SOCI_ZLIB_ENGINE=js|native forces an engine; otherwise native when the addon loads, else js. */
export function selectEngine(): EngineName {
  return chooseEngine(process.env.SOCI_ZLIB_ENGINE, nativeAvailable());
}

/** A new inflate stream on the given engine; `addon` overrides the default addon (tests). */
export function createInflater(engine: EngineName, windowBits: number, addon?: NativeAddon | null): Inflater {
  if (engine === 'js') return new JsInflater(windowBits);
  const a = addon ?? defaultAddon();
  if (!a) throw new SociError('ERR_UNSUPPORTED', 'the native zlib engine is not available (zinflate addon not built)');
  return new NativeInflater(a, windowBits);
}
