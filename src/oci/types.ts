/**
 * OCI image-spec v1.1.1 structures, with Go-compatible encoders (field order and omitempty as the Go
 * structs) and lenient decoders that keep only the fields Go would keep.
 */
import { SociError } from '../errors.js';
import { goArray, goInt, goObject, goString, goStringMap, optString } from './go-json.js';

export interface Platform {
  architecture: string;
  os: string;
  'os.version'?: string;
  'os.features'?: string[];
  variant?: string;
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  urls?: string[];
  annotations?: Record<string, string>;
  data?: string; // base64, as in the JSON
  platform?: Platform;
  artifactType?: string;
}

export interface Manifest {
  schemaVersion: number;
  mediaType?: string;
  artifactType?: string;
  config: Descriptor;
  layers: Descriptor[];
  subject?: Descriptor;
  annotations?: Record<string, string>;
}

export interface ImageIndex {
  schemaVersion: number;
  mediaType?: string;
  artifactType?: string;
  manifests: Descriptor[];
  subject?: Descriptor;
  annotations?: Record<string, string>;
}

export function encodePlatform(p: Platform): string {
  return goObject([
    ['architecture', goString(p.architecture ?? '')],
    ['os', goString(p.os ?? '')],
    ['os.version', optString(p['os.version'])],
    ['os.features', p['os.features']?.length ? goArray(p['os.features'], goString) : undefined],
    ['variant', optString(p.variant)],
  ]);
}

export function encodeDescriptor(d: Descriptor): string {
  return goObject([
    ['mediaType', goString(d.mediaType ?? '')],
    ['digest', goString(d.digest ?? '')],
    ['size', goInt(d.size ?? 0)],
    ['urls', d.urls?.length ? goArray(d.urls, goString) : undefined],
    ['annotations', goStringMap(d.annotations)],
    ['data', d.data ? goString(d.data) : undefined],
    ['platform', d.platform ? encodePlatform(d.platform) : undefined],
    ['artifactType', optString(d.artifactType)],
  ]);
}

export function encodeManifest(m: Manifest): Buffer {
  return Buffer.from(
    goObject([
      ['schemaVersion', goInt(m.schemaVersion)],
      ['mediaType', optString(m.mediaType)],
      ['artifactType', optString(m.artifactType)],
      ['config', encodeDescriptor(m.config)],
      ['layers', goArray(m.layers, encodeDescriptor)],
      ['subject', m.subject ? encodeDescriptor(m.subject) : undefined],
      ['annotations', goStringMap(m.annotations)],
    ]),
  );
}

export function encodeIndex(i: ImageIndex): Buffer {
  return Buffer.from(
    goObject([
      ['schemaVersion', goInt(i.schemaVersion)],
      ['mediaType', optString(i.mediaType)],
      ['artifactType', optString(i.artifactType)],
      ['manifests', goArray(i.manifests, encodeDescriptor)],
      ['subject', i.subject ? encodeDescriptor(i.subject) : undefined],
      ['annotations', goStringMap(i.annotations)],
    ]),
  );
}

// ---- decoding (Go json.Unmarshal into the structs: unknown fields dropped) ----

type Json = Record<string, unknown>;

function parseJson(bytes: Uint8Array, what: string): Json {
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (e) {
    throw new SociError('ERR_INVALID_MANIFEST', `${what} is not valid JSON: ${(e as Error).message}`);
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new SociError('ERR_INVALID_MANIFEST', `${what} is not a JSON object`);
  return v as Json;
}

function str(v: unknown, field: string, what: string): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw new SociError('ERR_INVALID_MANIFEST', `${what}: ${field} must be a string`);
  return v;
}

function strMap(v: unknown, what: string): Record<string, string> | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'object' || Array.isArray(v)) throw new SociError('ERR_INVALID_MANIFEST', `${what}: annotations must be an object`);
  const out: Record<string, string> = {};
  for (const [k, val] of Object.entries(v as Json)) {
    if (typeof val !== 'string') throw new SociError('ERR_INVALID_MANIFEST', `${what}: annotation ${k} must be a string`);
    out[k] = val;
  }
  return out;
}

function strList(v: unknown, field: string, what: string): string[] | undefined {
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) throw new SociError('ERR_INVALID_MANIFEST', `${what}: ${field} must be a list of strings`);
  return v as string[];
}

export function decodePlatform(v: unknown, what = 'platform'): Platform | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'object') throw new SociError('ERR_INVALID_MANIFEST', `${what} must be an object`);
  const o = v as Json;
  const p: Platform = { architecture: str(o.architecture, 'architecture', what) ?? '', os: str(o.os, 'os', what) ?? '' };
  const osv = str(o['os.version'], 'os.version', what);
  if (osv) p['os.version'] = osv;
  const feats = strList(o['os.features'], 'os.features', what);
  if (feats) p['os.features'] = feats;
  const variant = str(o.variant, 'variant', what);
  if (variant) p.variant = variant;
  return p;
}

export function decodeDescriptor(v: unknown, what = 'descriptor'): Descriptor {
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new SociError('ERR_INVALID_MANIFEST', `${what} must be an object`);
  const o = v as Json;
  const size = o.size;
  if (size !== undefined && (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0)) {
    throw new SociError('ERR_INVALID_MANIFEST', `${what}: size must be a non-negative integer`);
  }
  const d: Descriptor = { mediaType: str(o.mediaType, 'mediaType', what) ?? '', digest: str(o.digest, 'digest', what) ?? '', size: (size as number) ?? 0 };
  const urls = strList(o.urls, 'urls', what);
  if (urls) d.urls = urls;
  const ann = strMap(o.annotations, what);
  if (ann) d.annotations = ann;
  const data = str(o.data, 'data', what);
  if (data) d.data = data;
  const platform = decodePlatform(o.platform, `${what} platform`);
  if (platform) d.platform = platform;
  const at = str(o.artifactType, 'artifactType', what);
  if (at) d.artifactType = at;
  return d;
}

function descList(v: unknown, field: string, what: string): Descriptor[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw new SociError('ERR_INVALID_MANIFEST', `${what}: ${field} must be a list`);
  return v.map((x, i) => decodeDescriptor(x, `${what} ${field}[${i}]`));
}

export function decodeManifest(bytes: Uint8Array, what = 'manifest'): Manifest {
  const o = parseJson(bytes, what);
  if (o.config === undefined) throw new SociError('ERR_INVALID_MANIFEST', `${what} has no config`);
  const m: Manifest = {
    schemaVersion: typeof o.schemaVersion === 'number' ? o.schemaVersion : 0,
    config: decodeDescriptor(o.config, `${what} config`),
    layers: descList(o.layers, 'layers', what),
  };
  const mt = str(o.mediaType, 'mediaType', what);
  if (mt) m.mediaType = mt;
  const at = str(o.artifactType, 'artifactType', what);
  if (at) m.artifactType = at;
  if (o.subject) m.subject = decodeDescriptor(o.subject, `${what} subject`);
  const ann = strMap(o.annotations, what);
  if (ann) m.annotations = ann;
  return m;
}

export function decodeIndex(bytes: Uint8Array, what = 'image index'): ImageIndex {
  const o = parseJson(bytes, what);
  const i: ImageIndex = {
    schemaVersion: typeof o.schemaVersion === 'number' ? o.schemaVersion : 0,
    manifests: descList(o.manifests, 'manifests', what),
  };
  const mt = str(o.mediaType, 'mediaType', what);
  if (mt) i.mediaType = mt;
  const at = str(o.artifactType, 'artifactType', what);
  if (at) i.artifactType = at;
  if (o.subject) i.subject = decodeDescriptor(o.subject, `${what} subject`);
  const ann = strMap(o.annotations, what);
  if (ann) i.annotations = ann;
  return i;
}
