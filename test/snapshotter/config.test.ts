/** Config parsing (§5.13), `config default|dump`, CLI flag/env errors, List filter syntax. No root needed. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { tempDir } from '../helpers/env.js';
import { exec, repoRoot } from '../helpers/containerd.js';
import { defaultConfig, parseConfig, DEFAULT_CONFIG_PATH } from '../../src/snapshotter/config.js';
import { compileFilters } from '../../src/snapshotter/filters.js';
import { VERSION } from '../../src/version.js';

/** smol-toml returns null-prototype objects; normalise for deepEqual. */
const parse = (s: string): any => JSON.parse(JSON.stringify(parseToml(s)));

const main = join(repoRoot, 'src', 'snapshotter', 'main.ts');
const cli = (args: string[], env: NodeJS.ProcessEnv = {}) => {
  const e = { ...process.env, ...env };
  delete e.SOCI_SNAPSHOTTER_CONFIG;
  Object.assign(e, env);
  return exec(process.execPath, ['--import', 'tsx', main, ...args], { env: e });
};

test('config default prints the documented defaults as TOML', async () => {
  const r = await cli(['config', 'default']);
  assert.equal(r.code, 0, r.stderr);
  const doc = parse(r.stdout) as any;
  assert.deepEqual(doc, JSON.parse(JSON.stringify(defaultConfig())));
  // spot-check the table in §5.13
  assert.equal(doc.max_concurrency, 100);
  assert.equal(doc.mount_timeout_sec, 30);
  assert.equal(doc.metrics_network, 'tcp');
  assert.equal(doc.directory_cache.direct, true);
  assert.equal(doc.background_fetch.max_queue_size, 300);
  assert.equal(doc.background_fetch.drop_policy, 'newest');
  assert.equal(doc.http.RequestTimeoutMsec, 300000);
  assert.equal(doc.content_store.type, 'soci');
  assert.equal(doc.pull_modes.soci_v2.enable, true);
  assert.equal(doc.pull_modes.soci_v1.enable, false);
  assert.equal(doc.pull_modes.parallel_pull_unpack.max_concurrent_downloads_per_image, 3);
  assert.equal(doc.resolver.auth_client_ttl_sec, 3600);
  assert.equal(doc.cri_keychain.image_service_path, '/run/containerd/containerd.sock');
});

test('config dump: overrides applied, zero → default, unknown keys ignored, round-trips', async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, 'config.toml');
  await writeFile(file, `
metrics_address = "127.0.0.1:9999"
mount_timeout_sec = 0
max_concurrency = -1
not_a_key = "ignored"
[directory_cache]
direct = false
max_lru_cache_entry = 0
[background_fetch]
drop_policy = "oldest"
fetch_period_msec = 250
[unknown_table]
x = 1
[pull_modes.soci_v1]
enable = true
[pull_modes.parallel_pull_unpack]
concurrent_download_chunk_size = "8mb"
[[resolver.host."registry.example.com".mirrors]]
host = "mirror.example.com"
insecure = true
[snapshotter]
min_layer_size = 1000
`);
  const r = await cli(['--config', file, 'config', 'dump']);
  assert.equal(r.code, 0, r.stderr);
  const doc = parse(r.stdout) as any;
  assert.equal(doc.metrics_address, '127.0.0.1:9999');
  assert.equal(doc.mount_timeout_sec, 30); // zero → default
  assert.equal(doc.max_concurrency, -1);
  assert.equal(doc.directory_cache.direct, false);
  assert.equal(doc.directory_cache.max_lru_cache_entry, 10);
  assert.equal(doc.background_fetch.drop_policy, 'oldest');
  assert.equal(doc.background_fetch.fetch_period_msec, 250);
  assert.equal(doc.pull_modes.soci_v1.enable, true);
  assert.equal(doc.snapshotter.min_layer_size, 1000);
  assert.deepEqual(doc.resolver.host['registry.example.com'].mirrors, [{ host: 'mirror.example.com', insecure: true, request_timeout_sec: 0 }]);
  assert.equal(doc.not_a_key, undefined);
  assert.equal(doc.unknown_table, undefined);
  // dump → file → dump is a fixed point; subcommand-local --config works too
  const again = join(dir, 'again.toml');
  await writeFile(again, r.stdout);
  const r2 = await cli(['config', 'dump', '--config', again]);
  assert.equal(r2.code, 0, r2.stderr);
  assert.equal(r2.stdout, r.stdout);
});

test('config errors: missing explicit file, bad TOML, bad values → one line, exit != 0', async (t) => {
  const dir = await tempDir(t);
  const missing = join(dir, 'nope.toml');
  for (const [args, env, needle] of [
    [['--config', missing, 'config', 'dump'], {}, missing],
    [['config', 'dump'], { SOCI_SNAPSHOTTER_CONFIG: missing }, missing],
    [['--config', missing, '--address', join(dir, 's.sock'), '--root', join(dir, 'root')], {}, missing], // the daemon itself
  ] as const) {
    const r = await cli([...args], env);
    assert.notEqual(r.code, 0);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0]!, /^soci-snapshotter-grpc: /);
    assert.ok(lines[0]!.includes(needle), lines[0]);
  }
  assert.ok(!existsSync(join(dir, 's.sock')) && !existsSync(join(dir, 'root')), 'nothing created on a config error');
  const bad = join(dir, 'bad.toml');
  await writeFile(bad, 'mount_timeout_sec = = 3\n');
  const r = await cli(['--config', bad, 'config', 'dump']);
  assert.notEqual(r.code, 0);
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  assert.match(r.stderr, /invalid TOML/);
  assert.throws(() => parseConfig('mount_timeout_sec = "x"'), /must be a number/);
  assert.throws(() => parseConfig('[pull_modes.parallel_pull_unpack]\nconcurrent_download_chunk_size = "8 parsecs"'), /concurrent_download_chunk_size/);
  assert.throws(() => parseConfig('metrics_network = "udp"'), /metrics_network/);
});

test('missing default config file means defaults; --version; bad flag', async (t) => {
  if (!existsSync(DEFAULT_CONFIG_PATH)) {
    const r = await cli(['config', 'dump']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(parse(r.stdout), parse((await cli(['config', 'default'])).stdout));
  } else {
    t.diagnostic(`${DEFAULT_CONFIG_PATH} exists here; skipped the missing-default check`);
  }
  const v = await cli(['--version']);
  assert.equal(v.code, 0);
  assert.match(v.stdout, new RegExp(`^soci-snapshotter-grpc version v${VERSION.replace(/\./g, '\\.')} \\S+\n$`));
  const bad = await cli(['--no-such-flag']);
  assert.notEqual(bad.code, 0);
  assert.equal(bad.stderr.trim().split('\n').length, 1, bad.stderr);
  const lvl = await cli(['--log-level', 'loud', '--config', '/dev/null', '--root', '/nonexistent/x', '--address', '/nonexistent/s.sock']);
  assert.notEqual(lvl.code, 0);
  assert.match(lvl.stderr, /invalid log level/);
});

test('List filters follow containerd syntax', () => {
  const info = (name: string, parent: string, kind: 'active' | 'view' | 'committed', labels: Record<string, string> = {}) =>
    ({ name, parent, kind, labels, created: new Date(0), updated: new Date(0) });
  const xs = [info('a', '', 'committed', { 'containerd.io/gc.root': 'x', foo: 'bar' }), info('b', 'a', 'active'), info('c', 'a', 'view', { foo: 'baz' })];
  const sel = (...f: string[]) => xs.filter(compileFilters(f)).map((i) => i.name);
  assert.deepEqual(sel(), ['a', 'b', 'c']);
  assert.deepEqual(sel('parent==a'), ['b', 'c']);
  assert.deepEqual(sel('parent!=a'), ['a']);
  assert.deepEqual(sel('labels.foo'), ['a', 'c']);
  assert.deepEqual(sel('labels."containerd.io/gc.root"'), ['a']);
  assert.deepEqual(sel('labels.foo~=^ba', 'kind==active'), ['a', 'b', 'c']);
  assert.deepEqual(sel('labels.foo~=z$,kind==view'), ['c']);
  assert.deepEqual(sel('name=="b"'), ['b']);
  assert.throws(() => sel('labels.foo=="unterminated'), /unterminated/);
});

test('systemd units: socket 0660, service uses fd:// and SIGINT; systemd-analyze accepts them', async (t) => {
  const { readFile, cp } = await import('node:fs/promises');
  const unitDir = join(repoRoot, 'systemd');
  const socket = await readFile(join(unitDir, 'soci-snapshotter.socket'), 'utf8');
  const service = await readFile(join(unitDir, 'soci-snapshotter.service'), 'utf8');
  assert.match(socket, /^SocketMode=0660$/m);
  assert.match(socket, /^ListenStream=\/run\/soci-snapshotter-grpc\/soci-snapshotter-grpc\.sock$/m);
  assert.match(service, /^ExecStart=\S+soci-snapshotter-grpc --address fd:\/\/$/m);
  assert.match(service, /^KillSignal=SIGINT$/m);
  const { hasTool } = await import('../helpers/env.js');
  if (!hasTool('systemd-analyze')) return t.diagnostic('systemd-analyze not installed: verify skipped');
  const dir = await tempDir(t);
  await cp(unitDir, dir, { recursive: true });
  // verify wants an existing executable
  const svc = join(dir, 'soci-snapshotter.service');
  await writeFile(svc, service.replace(/^ExecStart=\S+/m, `ExecStart=${process.execPath}`));
  const r = await exec('systemd-analyze', ['verify', join(dir, 'soci-snapshotter.socket'), svc], { timeoutMs: 30_000 });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr.trim(), '', r.stderr);
});
