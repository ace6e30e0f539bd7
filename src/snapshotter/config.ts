/**
 * soci-snapshotter-grpc configuration: TOML, unknown keys ignored, zero values replaced
 * by the defaults. Key names and defaults follow AWS's config/*.go so existing config files work.
 */
import { readFile } from 'node:fs/promises';
import { parse, stringify } from 'smol-toml';
import { SociError } from '../errors.js';
import { checkKeys, type KeyReport } from './config-keys.js';
import { HEADER_NAME, RESERVED_HEADERS } from './custom-headers.js';
import { decompressTools, type ParallelPullSettings } from '../pull/index.js';

export const DEFAULT_CONFIG_PATH = '/etc/soci-snapshotter-grpc/config.toml';

export interface MirrorConfig {
  host: string;
  insecure: boolean;
  request_timeout_sec: number;
}

export function defaultConfig() {
  return {
    metrics_address: '',
    metrics_network: 'tcp',
    no_prometheus: false,
    debug_address: '',
    metadata_store: 'db',
    metadata_db_no_sync: false,
    // AWS prints 0 for these four and applies its default where the value is used.
    metadata_insertion_chunk_size: 0,
    skip_check_snapshotter_supported: false,
    http_cache_type: '',
    filesystem_cache_type: '',
    resolve_result_entry: 0,
    debug: false,
    disable_verification: false,
    max_concurrency: 100,
    mount_timeout_sec: 30,
    fuse_metrics_emit_wait_duration_sec: 60,
    http: {
      DialTimeoutMsec: 3000,
      ResponseHeaderTimeoutMsec: 3000,
      RequestTimeoutMsec: 300000,
      MaxRetries: 8,
      MinWaitMsec: 30,
      MaxWaitMsec: 300000,
    },
    blob: {
      valid_interval: 60,
      check_always: false,
      fetching_timeout_sec: 300,
      max_retries: 8,
      min_wait_msec: 30,
      max_wait_msec: 300000,
      force_single_range_mode: false,
      max_span_verification_retries: 0,
      // Ours (AWS has no such key): largest readahead window for sequential readers, in 4 MiB
      // spans; -1 turns it off (0 means the default, as for every key).
      readahead_max_spans: 8,
      // Ours: a FUSE read that cannot be served within this many seconds fails with EIO (the span
      // fetch goes on for later readers, bounded by fetching_timeout_sec per request).
      read_deadline_sec: 30,
    },
    directory_cache: { max_lru_cache_entry: 0, max_cache_fds: 0, sync_add: false, direct: true },
    fuse: { attr_timeout: 1, entry_timeout: 1, negative_timeout: 1, log_fuse_operations: false },
    background_fetch: {
      disable: false,
      silence_period_msec: 30000,
      fetch_period_msec: 500,
      max_queue_size: 300,
      drop_policy: 'newest',
      emit_metric_period_sec: 10,
    },
    content_store: { type: 'soci', namespace: 'default', containerd_address: '/run/containerd/containerd.sock' },
    prefetch: { enable: false, max_concurrency: 0 },
    // Ours: record the files each image's start reads into <root>/prefetch-records/<manifest>.json
    // (input of `soci convert --prefetch-record`); the window ends after a quiet period or a maximum.
    prefetch_record: { enable: false, quiet_period_sec: 5, max_duration_sec: 60 },
    pull_modes: {
      soci_v1: { enable: false },
      soci_v2: { enable: true },
      parallel_pull_unpack: {
        enable: false,
        experimental_parallel_pull_as_fallback: false,
        max_concurrent_downloads: -1,
        max_concurrent_downloads_per_image: 3,
        concurrent_download_chunk_size: '',
        max_concurrent_unpacks: -1,
        max_concurrent_unpacks_per_image: 1,
        discard_unpacked_layers: false,
        decompress_streams: {} as Record<string, { path: string; args: string[] }>,
      },
    },
    kubeconfig_keychain: { enable_keychain: false, kubeconfig_path: '' },
    cri_keychain: { enable_keychain: false, image_service_path: '/run/containerd/containerd.sock' },
    resolver: {
      auth_client_ttl_sec: 3600,
      enable_auth_client_sharing: false,
      custom_headers: [] as string[],
      host: {} as Record<string, { mirrors: MirrorConfig[] }>,
    },
    snapshotter: { min_layer_size: 0, allow_invalid_mounts_on_restart: false },
  };
}

export type Config = ReturnType<typeof defaultConfig>;

type Plain = Record<string, unknown>;
const isPlain = (v: unknown): v is Plain => typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);

/**
 * Copies known keys of `src` over `dst` (same shape as the defaults); free-form maps are taken
 * as-is. Every scalar key the file sets lands in `set` under its dotted name.
 */
function merge(dst: Plain, src: Plain, where: string, set: Map<string, unknown>): void {
  for (const [k, v] of Object.entries(src)) {
    if (!(k in dst)) continue; // unknown keys are ignored, like the Go TOML decoder
    const d = dst[k];
    const name = where ? `${where}.${k}` : k;
    if (!isPlain(d) || Object.keys(d).length === 0) set.set(name, v);
    if (isPlain(d)) {
      if (!isPlain(v)) throw new SociError('ERR_USAGE', `config: ${name} must be a table`);
      if (Object.keys(d).length === 0)
        dst[k] = v; // free-form map (mirrors, decompress_streams)
      else merge(d, v, name, set);
    } else if (typeof d === 'number') {
      const n = typeof v === 'bigint' ? Number(v) : v;
      if (typeof n !== 'number' || !Number.isFinite(n)) throw new SociError('ERR_USAGE', `config: ${name} must be a number`);
      dst[k] = n;
    } else if (typeof d === 'boolean') {
      if (typeof v !== 'boolean') throw new SociError('ERR_USAGE', `config: ${name} must be true or false`);
      dst[k] = v;
    } else if (typeof d === 'string') {
      if (typeof v !== 'string') throw new SociError('ERR_USAGE', `config: ${name} must be a string`);
      dst[k] = v;
    } else if (Array.isArray(d)) {
      if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) throw new SociError('ERR_USAGE', `config: ${name} must be a list of strings`);
      dst[k] = v;
    }
  }
}

/** Zero numbers and empty strings fall back to the default value (Go's "zero → default"). */
function fillZeros(dst: Plain, defaults: Plain): void {
  for (const [k, d] of Object.entries(defaults)) {
    const v = dst[k];
    if (isPlain(d) && isPlain(v)) fillZeros(v, d);
    else if (typeof d === 'number' && v === 0) dst[k] = d;
    else if (typeof d === 'string' && v === '') dst[k] = d;
  }
}

function normalizeMirrors(cfg: Config): void {
  for (const [host, h] of Object.entries(cfg.resolver.host)) {
    const mirrors = Array.isArray((h as Plain).mirrors) ? ((h as Plain).mirrors as Plain[]) : [];
    cfg.resolver.host[host] = {
      mirrors: mirrors.map((m) => ({
        host: String(m.host ?? ''),
        insecure: m.insecure === true,
        request_timeout_sec: Number(m.request_timeout_sec ?? 0),
      })),
    };
  }
}

/**
 * AWS's chunk sizes: a number, decimals allowed, and an optional unit b/kb/mb/gb (any case, powers
 * of 1024, spaces around allowed), truncated to whole bytes: "8mb", "1.5MB" (1572864), "4096".
 * "" or a size of 0 = whole layer (0).
 */
export function parseChunkSize(s: string): number {
  if (s === '') return 0;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(gb|mb|kb|b)?\s*$/i.exec(s);
  if (!m) throw new SociError('ERR_USAGE', `config: invalid concurrent_download_chunk_size "${s}" (a size such as "8mb" or "1.5mb")`);
  const mult = { '': 1, b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 }[(m[2] ?? '').toLowerCase() as 'b'];
  return Math.floor(Number(m[1]) * mult);
}

/** The parallel pull section as the puller takes it; the tools are checked here (one line if not). */
export function parallelPullSettings(cfg: Config): ParallelPullSettings {
  const p = cfg.pull_modes.parallel_pull_unpack;
  return {
    maxConcurrentDownloads: p.max_concurrent_downloads,
    maxConcurrentDownloadsPerImage: p.max_concurrent_downloads_per_image,
    chunkSize: parseChunkSize(p.concurrent_download_chunk_size),
    maxConcurrentUnpacks: p.max_concurrent_unpacks,
    maxConcurrentUnpacksPerImage: p.max_concurrent_unpacks_per_image,
    // Outside the mode (a single layer below lazy ones) nothing is kept, as containerd's own pull of
    // such a layer would keep it in its store, not ours.
    discardUnpackedLayers: parallelPullMode(cfg) ? p.discard_unpacked_layers : true,
    // As AWS's: decompress_streams is read (and its tools checked) only when the mode is on.
    tools: parallelPullMode(cfg) ? decompressTools(p.decompress_streams) : decompressTools({}),
  };
}

/** primary: every layer is pulled in parallel, nothing is lazy; fallback: only images without an index. */
export function parallelPullMode(cfg: Config): 'primary' | 'fallback' | undefined {
  const p = cfg.pull_modes.parallel_pull_unpack;
  return p.enable ? 'primary' : p.experimental_parallel_pull_as_fallback ? 'fallback' : undefined;
}

/**
 * AWS's checks: a bounded daemon-wide limit must not be below the per-image one, and a mode that
 * keeps the blobs needs containerd's content store to keep them in.
 */
function checkParallelLimits(cfg: Config): void {
  const p = cfg.pull_modes.parallel_pull_unpack;
  const k = 'pull_modes.parallel_pull_unpack';
  const keepsNowhere = cfg.content_store.type !== 'containerd' && !p.discard_unpacked_layers;
  for (const key of ['enable', 'experimental_parallel_pull_as_fallback'] as const)
    if (p[key] && keepsNowhere)
      throw new SociError(
        'ERR_USAGE',
        `config: ${k}.${key} = true requires containerd content store (type="containerd" under [content_store] or discard_unpacked_layers = true)`,
      );
  if (p.max_concurrent_downloads > 0 && p.max_concurrent_downloads_per_image > p.max_concurrent_downloads)
    throw new SociError('ERR_USAGE', `config: ${k}.max_concurrent_downloads_per_image is above max_concurrent_downloads`);
  if (p.max_concurrent_unpacks > 0 && p.max_concurrent_unpacks_per_image > p.max_concurrent_unpacks)
    throw new SociError('ERR_USAGE', `config: ${k}.max_concurrent_unpacks_per_image is above max_concurrent_unpacks`);
}

/** metrics_network values: what Go's net.Listen takes for a stream listener, less what Node has not. */
const METRICS_NETWORKS = ['tcp', 'tcp4', 'tcp6', 'unix'];

function oneOf(key: string, value: string, allowed: string[]): void {
  if (!allowed.includes(value)) throw new SociError('ERR_USAGE', `config: ${key} = ${JSON.stringify(value)} is not supported (one of ${allowed.join(', ')})`);
}

function checkHeaderNames(names: string[]): void {
  for (const n of names) {
    if (!HEADER_NAME.test(n)) throw new SociError('ERR_USAGE', `config: resolver.custom_headers: ${JSON.stringify(n)} is not a valid header name`);
    if (RESERVED_HEADERS.includes(n.toLowerCase())) throw new SociError('ERR_USAGE', `config: resolver.custom_headers: ${n} is reserved`);
  }
}

const reports = new WeakMap<Config, KeyReport[]>();

/** The keys of the loaded file that have no effect here (logged once at start). */
export function configReports(cfg: Config): KeyReport[] {
  return reports.get(cfg) ?? [];
}

export function parseConfig(text: string, source = 'config'): Config {
  let doc: Plain;
  try {
    doc = parse(text) as Plain;
  } catch (e) {
    const first = String((e as Error).message).split('\n')[0];
    throw new SociError('ERR_USAGE', `${source}: invalid TOML: ${first}`);
  }
  const cfg = defaultConfig();
  const defaults = defaultConfig() as unknown as Plain;
  const set = new Map<string, unknown>();
  merge(cfg as unknown as Plain, doc, '', set);
  fillZeros(cfg as unknown as Plain, defaults);
  normalizeMirrors(cfg);
  parseChunkSize(cfg.pull_modes.parallel_pull_unpack.concurrent_download_chunk_size);
  checkParallelLimits(cfg);
  if (cfg.metrics_network === 'unixpacket')
    throw new SociError(
      'ERR_USAGE',
      'config: metrics_network = "unixpacket" is not supported: Node has no SOCK_SEQPACKET listener (use tcp, tcp4, tcp6 or unix)',
    );
  oneOf('metrics_network', cfg.metrics_network, METRICS_NETWORKS);
  oneOf('metadata_store', cfg.metadata_store, ['db', 'db-multi']);
  checkHeaderNames(cfg.resolver.custom_headers);
  oneOf('background_fetch.drop_policy', cfg.background_fetch.drop_policy, ['newest', 'oldest']);
  const isDefault = (key: string, v: unknown) => {
    const d = key.split('.').reduce<unknown>((o, k) => (isPlain(o) ? o[k] : undefined), defaults);
    return JSON.stringify(typeof v === 'bigint' ? Number(v) : v) === JSON.stringify(d);
  };
  reports.set(
    cfg,
    checkKeys(set, isDefault, (line) => {
      throw new SociError('ERR_USAGE', line);
    }),
  );
  return cfg;
}

/**
 * Loads the config file. A missing file is an error only when the path was given explicitly
 * (flag or env); the missing default file means defaults.
 */
export async function loadConfig(path: string, explicit: boolean): Promise<Config> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    // Like AWS's: the default path may be missing even when named explicitly.
    if (code === 'ENOENT' && (!explicit || path === DEFAULT_CONFIG_PATH)) return defaultConfig();
    throw new SociError(code === 'ENOENT' ? 'ERR_NOT_FOUND' : 'ERR_IO', `cannot read config file ${path}: ${code ?? (e as Error).message}`);
  }
  return parseConfig(text, path);
}

export function configToToml(cfg: Config): string {
  return stringify(cfg) + '\n';
}
