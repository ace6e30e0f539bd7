/**
 * Every key of AWS's docs/config.md (v0.12.1 and v0.16.1, the newest here) set to a value other than
 * its default: it is applied (the parsed config holds it, and nothing is reported), reported as
 * having no effect (moot by design), or refused with one line. No key is ignored
 * in silence. What each applied key does is shown by the tests of the code that reads it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { awsModuleDir } from '../../harness/aws-module.js';
import { needs } from '../../harness/env.js';
import { configReports, parseConfig, type Config } from '../../src/snapshotter/config.js';

type Outcome = 'applied' | 'moot' | 'refused';

/** [dotted key, TOML value, outcome, in v0.12.1's docs] */
const KEYS: Array<[string, string, Outcome, boolean]> = [
  ['resolve_result_entry', '40', 'applied', true],
  ['debug', 'true', 'applied', true],
  ['disable_verification', 'true', 'refused', true],
  ['no_prometheus', 'true', 'applied', true],
  ['mount_timeout_sec', '45', 'applied', true],
  ['max_concurrency', '4', 'applied', false],
  ['fuse_metrics_emit_wait_duration_sec', '5', 'applied', true],
  ['metrics_address', '"127.0.0.1:9100"', 'applied', true],
  ['metrics_network', '"unix"', 'applied', true],
  ['debug_address', '"127.0.0.1:6060"', 'refused', true],
  ['metadata_store', '"db-multi"', 'moot', true],
  ['metadata_db_no_sync', 'true', 'moot', false],
  ['metadata_insertion_chunk_size', '100', 'moot', false],
  ['skip_check_snapshotter_supported', 'true', 'applied', true],
  ['http.MaxRetries', '2', 'applied', true],
  ['http.MinWaitMsec', '10', 'applied', true],
  ['http.MaxWaitMsec', '1000', 'applied', true],
  ['http.DialTimeoutMsec', '500', 'applied', true],
  ['http.ResponseHeaderTimeoutMsec', '500', 'applied', true],
  ['http.RequestTimeoutMsec', '1000', 'applied', true],
  ['blob.valid_interval', '120', 'applied', true],
  ['blob.check_always', 'true', 'applied', true],
  ['blob.fetching_timeout_sec', '60', 'applied', true],
  ['blob.max_retries', '3', 'applied', true],
  ['blob.min_wait_msec', '10', 'applied', true],
  ['blob.max_wait_msec', '1000', 'applied', true],
  ['blob.max_span_verification_retries', '3', 'applied', true],
  ['directory_cache.max_lru_cache_entry', '5', 'moot', true],
  ['directory_cache.max_cache_fds', '5', 'moot', true],
  ['directory_cache.sync_add', 'true', 'moot', true],
  ['fuse.attr_timeout', '5', 'applied', true],
  ['fuse.entry_timeout', '5', 'applied', true],
  ['fuse.negative_timeout', '5', 'applied', true],
  ['fuse.log_fuse_operations', 'true', 'applied', true],
  ['background_fetch.disable', 'true', 'applied', true],
  ['background_fetch.silence_period_msec', '1000', 'applied', true],
  ['background_fetch.fetch_period_msec', '100', 'applied', true],
  ['background_fetch.max_queue_size', '10', 'applied', true],
  ['background_fetch.drop_policy', '"oldest"', 'applied', false],
  ['background_fetch.emit_metric_period_sec', '5', 'applied', true],
  ['content_store.type', '"containerd"', 'applied', true],
  ['content_store.namespace', '"k8s.io"', 'applied', true],
  ['prefetch.enable', 'true', 'applied', false],
  ['prefetch.max_concurrency', '2', 'applied', false],
  ['resolver.auth_client_ttl_sec', '60', 'applied', false],
  ['resolver.enable_auth_client_sharing', 'true', 'moot', false],
  ['resolver.custom_headers', '["x-request-id"]', 'applied', false],
  ['pull_modes.soci_v1.enable', 'true', 'applied', false],
  ['pull_modes.soci_v2.enable', 'false', 'applied', false],
  // Alone, as AWS's: refused (the blobs have nowhere to go); with containerd's content store or
  // discard_unpacked_layers = true they apply (test/e2e/parallel-pull.test.ts).
  ['pull_modes.parallel_pull_unpack.enable', 'true', 'refused', false],
  ['pull_modes.parallel_pull_unpack.experimental_parallel_pull_as_fallback', 'true', 'refused', false],
  ['pull_modes.parallel_pull_unpack.max_concurrent_downloads', '4', 'applied', false],
  ['pull_modes.parallel_pull_unpack.max_concurrent_downloads_per_image', '4', 'applied', false],
  ['pull_modes.parallel_pull_unpack.concurrent_download_chunk_size', '"8mb"', 'applied', false],
  ['pull_modes.parallel_pull_unpack.max_concurrent_unpacks', '4', 'applied', false],
  ['pull_modes.parallel_pull_unpack.max_concurrent_unpacks_per_image', '4', 'applied', false],
  ['pull_modes.parallel_pull_unpack.discard_unpacked_layers', 'true', 'applied', false],
  ['snapshotter.min_layer_size', '1000', 'applied', true],
  ['snapshotter.allow_invalid_mounts_on_restart', 'true', 'applied', true],
  ['kubeconfig_keychain.enable_keychain', 'true', 'applied', false],
  ['cri_keychain.enable_keychain', 'true', 'applied', false],
];

/** The TOML that sets one dotted key. */
function toml(key: string, value: string): string {
  const parts = key.split('.');
  const leaf = parts.pop()!;
  return parts.length ? `[${parts.join('.')}]\n${leaf} = ${value}\n` : `${leaf} = ${value}\n`;
}

function valueAt(cfg: Config, key: string): unknown {
  return key.split('.').reduce<unknown>((o, k) => (o as Record<string, unknown>)[k], cfg);
}

for (const [key, value, outcome, inV12] of KEYS) {
  test(`AWS config key ${key} = ${value}: ${outcome}${inV12 ? '' : ' (since v0.13)'}`, () => {
    const text = toml(key, value);
    if (outcome === 'refused') {
      assert.throws(
        () => parseConfig(text),
        (e: Error) => e.message.startsWith(`config: ${key} = `) && !e.message.includes('\n'),
      );
      return;
    }
    const cfg = parseConfig(text);
    assert.deepEqual(valueAt(cfg, key), JSON.parse(value), 'the value is kept');
    const reported = configReports(cfg).filter((r) => r.key === key);
    if (outcome === 'applied') assert.deepEqual(reported, [], 'nothing to report');
    else
      assert.deepEqual(
        reported.map((r) => r.kind),
        [outcome],
      );
  });
}

test('AWS mirror keys: host, insecure and request_timeout_sec applied', () => {
  const cfg = parseConfig('[[resolver.host."registry.example.com".mirrors]]\nhost = "mirror.example.com"\ninsecure = true\nrequest_timeout_sec = 5\n');
  assert.deepEqual(cfg.resolver.host['registry.example.com']!.mirrors, [{ host: 'mirror.example.com', insecure: true, request_timeout_sec: 5 }]);
  assert.deepEqual(configReports(cfg), []);
});

test('a config with every key of the v0.16.1 docs at its default parses and reports nothing', () => {
  const byTable = new Map<string, string[]>();
  for (const [key] of KEYS) {
    const parts = key.split('.');
    const leaf = parts.pop()!;
    const table = parts.join('.');
    const cfg = parseConfig('');
    const v = valueAt(cfg, key);
    byTable.set(table, [...(byTable.get(table) ?? []), `${leaf} = ${JSON.stringify(v)}`]);
  }
  const text = [...byTable].map(([t, lines]) => (t ? `[${t}]\n` : '') + lines.join('\n')).join('\n\n');
  assert.deepEqual(configReports(parseConfig(text)), []);
});

/** The dotted keys a docs/config.md lists (its example table and repeated keys left out). */
function docKeys(doc: string): string[] {
  const keys = new Set<string>();
  let table: string | undefined;
  for (const line of doc.split('\n')) {
    const h = /^#{3,4} (.+)$/.exec(line);
    if (h) {
      const name = h[1]!.trim();
      if (name === '[toml_header]') table = undefined;
      else if (name.startsWith('[')) table = name.replace(/^\[+|\]+$/g, '').replace(/^resolver\.host\.examplehost\.mirrors$/, 'resolver.host.*.mirrors');
      else table = ''; // FSConfig, Config: the top level
      continue;
    }
    const k = /^- `([^`]+)`/.exec(line);
    if (k && table !== undefined && !line.includes('cannot be redeclared')) keys.add(table ? `${table}.${k[1]}` : k[1]!);
  }
  return [...keys];
}

const MIRROR_KEYS = ['resolver.host.*.mirrors.host', 'resolver.host.*.mirrors.insecure', 'resolver.host.*.mirrors.request_timeout_sec'];

for (const version of ['v0.12.1', 'v0.16.1']) {
  test(`the table above covers every key of AWS's docs/config.md ${version} (read from the Go module)`, { skip: needs({ tools: ['go'] }) }, () => {
    const doc = readFileSync(join(awsModuleDir(version), 'docs', 'config.md'), 'utf8');
    const keys = docKeys(doc);
    assert.ok(keys.length > 40, `parsed ${keys.length} keys`);
    const known = new Set([...KEYS.map(([k]) => k), ...MIRROR_KEYS]);
    assert.deepEqual(
      keys.filter((k) => !known.has(k)),
      [],
      'keys of the docs missing from the table',
    );
    for (const [k, , , inV12] of KEYS) if (version === 'v0.12.1' && inV12) assert.ok(keys.includes(k), `${k} is marked as in v0.12.1's docs`);
  });
}
