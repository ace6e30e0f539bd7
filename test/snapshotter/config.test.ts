/** Config parsing, `config default|dump`, CLI flag/env errors, List filter syntax. No root needed. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { awsModuleDir } from '../../harness/aws-module.js';
import { needs, tempDir } from '../../harness/env.js';
import { exec, repoRoot } from '../../harness/containerd.js';
import {
  configReports,
  defaultConfig,
  parseChunkSize,
  parseConfig,
  DEFAULT_CONFIG_PATH,
  parallelPullMode,
  parallelPullSettings,
} from '../../src/snapshotter/config.js';
import { compileFilters } from '../../src/snapshotter/filters.js';
import { KEY_RULES } from '../../src/snapshotter/config-keys.js';
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
  // spot-check AWS's defaults
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
  // AWS prints 0 for the keys whose default it applies only where they are used
  assert.equal(doc.resolve_result_entry, 0);
  assert.equal(doc.directory_cache.max_lru_cache_entry, 0);
  assert.equal(doc.directory_cache.max_cache_fds, 0);
  assert.equal(doc.metadata_insertion_chunk_size, 0);
  assert.equal(doc.fuse.attr_timeout, 1);
});

test('config dump: overrides applied, zero → default, unknown keys ignored, round-trips', async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, 'config.toml');
  await writeFile(
    file,
    `
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
`,
  );
  const r = await cli(['--config', file, 'config', 'dump']);
  assert.equal(r.code, 0, r.stderr);
  const doc = parse(r.stdout) as any;
  assert.equal(doc.metrics_address, '127.0.0.1:9999');
  assert.equal(doc.mount_timeout_sec, 30); // zero → default
  assert.equal(doc.max_concurrency, -1);
  assert.equal(doc.directory_cache.direct, false);
  assert.equal(doc.directory_cache.max_lru_cache_entry, 0); // as AWS's: its default applies where it is used
  assert.equal(doc.background_fetch.drop_policy, 'oldest');
  assert.equal(doc.background_fetch.fetch_period_msec, 250);
  assert.equal(doc.pull_modes.soci_v1.enable, true);
  assert.equal(doc.snapshotter.min_layer_size, 1000);
  // our own keys are shown with their effective values too
  assert.equal(doc.blob.readahead_max_spans, 8);
  assert.equal(doc.blob.read_deadline_sec, 30);
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

test('config values as AWS validates them: enums, sizes with decimals, refused and no-effect keys reported', () => {
  // sizes: decimals and units in any case, powers of 1024, truncated
  for (const [v, want] of [
    ['8mb', 8 << 20],
    ['1.5mb', 1572864],
    ['1.5MB', 1572864],
    ['2kb', 2048],
    ['0.5gb', 1 << 29],
    ['10b', 10],
    ['4096', 4096],
    [' 8 mb ', 8 << 20],
    ['0', 0],
    ['', 0],
  ] as const) {
    assert.equal(parseChunkSize(v), want, v);
    parseConfig(`[pull_modes.parallel_pull_unpack]\nconcurrent_download_chunk_size = "${v}"`);
  }
  for (const v of ['8m', '8MiB', '1e3', '.5mb', '-1', '1.5 parsecs']) assert.throws(() => parseChunkSize(v), /concurrent_download_chunk_size/, v);
  // enums
  for (const n of ['tcp', 'tcp4', 'tcp6', 'unix']) assert.equal(parseConfig(`metrics_network = "${n}"`).metrics_network, n);
  assert.throws(() => parseConfig('metrics_network = "unixpacket"'), /unixpacket.*not supported/);
  for (const m of ['db', 'db-multi']) parseConfig(`metadata_store = "${m}"`);
  assert.throws(() => parseConfig('metadata_store = "bogus"'), /^SociError: config: metadata_store = "bogus" is not supported \(one of db, db-multi\)$/);
  assert.throws(() => parseConfig('[background_fetch]\ndrop_policy = "random"'), /drop_policy = "random" is not supported \(one of newest, oldest\)/);
  // refused values: one line naming the key and why
  for (const [text, key] of [
    ['disable_verification = true', 'disable_verification'],
    ['debug_address = "127.0.0.1:6060"', 'debug_address'],
  ] as const) {
    assert.throws(
      () => parseConfig(text),
      (e: Error) => e.message.startsWith(`config: ${key} = `) && /is not supported: /.test(e.message) && !e.message.includes('\n'),
      text,
    );
  }
  // the same keys at their defaults are fine and say nothing
  const quiet = parseConfig('disable_verification = false\ndebug_address = ""\n[pull_modes.parallel_pull_unpack]\nenable = false\n[fuse]\nattr_timeout = 5');
  assert.deepEqual(configReports(quiet), []);
  // keys that cannot apply: reported once each, with why
  const r = configReports(
    parseConfig(
      'metadata_store = "db-multi"\nmetadata_db_no_sync = true\nfilesystem_cache_type = "memory"\n[directory_cache]\nmax_lru_cache_entry = 5\n[blob]\nforce_single_range_mode = true\n[background_fetch]\ndrop_policy = "oldest"\n[[resolver.host."r.example".mirrors]]\nhost = "m.example"\nrequest_timeout_sec = 5\n',
    ),
  );
  assert.deepEqual(
    r.map((x) => [x.key, x.kind]),
    [
      ['metadata_store', 'moot'],
      ['metadata_db_no_sync', 'moot'],
      ['filesystem_cache_type', 'moot'],
      ['directory_cache.max_lru_cache_entry', 'moot'],
      ['blob.force_single_range_mode', 'moot'],
    ],
  );
  assert.ok(r.every((x) => x.why.length > 10 && !x.why.includes('\n')));
  assert.deepEqual(configReports(parseConfig('[background_fetch]\ndrop_policy = "oldest"')), [], 'both policies work');
});

/** Starts the daemon, waits for its "successfully started" line, stops it (SIGTERM); its stderr. */
function startedDaemonLog(args: string[]): Promise<string> {
  const e = { ...process.env };
  delete e.SOCI_SNAPSHOTTER_CONFIG;
  const p = spawn(process.execPath, ['--import', 'tsx', main, ...args], { env: e, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  return new Promise((res, rej) => {
    const timer = setTimeout(() => p.kill('SIGKILL'), 60_000);
    p.stderr!.on('data', (c: Buffer) => {
      err += c.toString();
      if (err.includes('successfully started')) p.kill('SIGTERM');
    });
    p.on('error', rej);
    p.on('exit', () => {
      clearTimeout(timer);
      res(err);
    });
  });
}

test('the daemon reports each no-effect key in one line at start and goes on; a refused key stops it', async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, 'config.toml');
  await writeFile(file, 'metadata_store = "db-multi"\n[directory_cache]\nmax_cache_fds = 20\n');
  const stderr = await startedDaemonLog(['--config', file, '--root', join(dir, 'root'), '--address', join(dir, 's.sock')]);
  const lines = stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { level: string; msg: string; key?: string });
  const cfgLines = lines.filter((l) => l.msg.startsWith('config: '));
  assert.deepEqual(
    cfgLines.map((l) => [l.level, l.key]),
    [
      ['warn', 'metadata_store'],
      ['warn', 'directory_cache.max_cache_fds'],
    ],
    stderr,
  );
  assert.ok(
    lines.some((l) => l.msg === 'soci-snapshotter-grpc successfully started'),
    'and it went on',
  );
  assert.match(cfgLines[0]!.msg, /^config: metadata_store has no effect here: /);
  await writeFile(file, 'disable_verification = true\n');
  const refused = await cli(['--config', file, '--root', join(dir, 'root2'), '--address', join(dir, 's2.sock')]);
  assert.notEqual(refused.code, 0);
  assert.equal(refused.stderr.trim().split('\n').length, 1, refused.stderr);
  assert.match(refused.stderr, /disable_verification = true is not supported: every span digest and every file header is always verified/);
  assert.ok(!existsSync(join(dir, 'root2')), 'nothing created');
});

for (const version of ['v0.12.1', 'v0.16.1']) {
  test(`AWS's own config/config.toml (${version}, verbatim from the Go module) starts the daemon quietly; edited, it gets the expected report lines`, {
    skip: needs({ tools: ['go'] }),
    timeout: 180_000,
  }, async (t) => {
    const aws = await readFile(join(awsModuleDir(version), 'config', 'config.toml'), 'utf8');
    const dir = await tempDir(t);
    const file = join(dir, 'config.toml');
    const configLines = async (text: string, name: string) => {
      await writeFile(file, text);
      const stderr = await startedDaemonLog(['--config', file, '--root', join(dir, `root-${name}`), '--address', join(dir, `${name}.sock`)]);
      const lines = stderr
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as { level: string; msg: string; key?: string });
      assert.ok(
        lines.some((l) => l.msg === 'soci-snapshotter-grpc successfully started'),
        stderr,
      );
      return lines.filter((l) => l.msg.startsWith('config: ')).map((l) => [l.level, l.key]);
    };
    assert.deepEqual(await configLines(aws, 'verbatim'), [], 'every key at its default says nothing');
    // a user's edits: moot keys are named, applied ones are quiet
    const edit = (text: string, key: string, from: string, to: string) => {
      const re = new RegExp(`^(\\s*${key} = )${from.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm');
      assert.match(text, re, `${key} = ${from} in AWS's file`);
      return text.replace(re, `$1${to}`);
    };
    let edited = edit(aws, 'metadata_store', "'db'", "'db-multi'");
    edited = edit(edited, 'check_always', 'false', 'true');
    edited = edit(edited, 'max_cache_fds', '0', '20');
    edited = edit(edited, 'RequestTimeoutMsec', '300000', '1000');
    assert.deepEqual(await configLines(edited, 'edited'), [
      ['warn', 'metadata_store'],
      ['warn', 'directory_cache.max_cache_fds'],
    ]);
    await writeFile(file, edit(aws, 'disable_verification', 'false', 'true'));
    const refused = await cli(['--config', file, '--root', join(dir, 'root-refused'), '--address', join(dir, 'r.sock')]);
    assert.notEqual(refused.code, 0);
    assert.equal(refused.stderr.trim().split('\n').length, 1, refused.stderr);
  });
}

test('--config naming the default path falls back to the defaults when that file is missing (as AWS)', {
  skip: existsSync(DEFAULT_CONFIG_PATH) ? `${DEFAULT_CONFIG_PATH} exists on this machine` : false,
}, async () => {
  const r = await cli(['--config', DEFAULT_CONFIG_PATH, 'config', 'dump']);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(parse(r.stdout), parse((await cli(['config', 'default'])).stdout));
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
  const info = (name: string, parent: string, kind: 'active' | 'view' | 'committed', labels: Record<string, string> = {}) => ({
    name,
    parent,
    kind,
    labels,
    created: new Date(0),
    updated: new Date(0),
  });
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

test('systemd units: socket 0660, service uses fd://, SIGTERM and the fd store; systemd-analyze accepts them', async (t) => {
  const { readFile, cp } = await import('node:fs/promises');
  const unitDir = join(repoRoot, 'systemd');
  const socket = await readFile(join(unitDir, 'soci-snapshotter.socket'), 'utf8');
  const service = await readFile(join(unitDir, 'soci-snapshotter.service'), 'utf8');
  assert.match(socket, /^SocketMode=0660$/m);
  assert.match(socket, /^ListenStream=\/run\/soci-snapshotter-grpc\/soci-snapshotter-grpc\.sock$/m);
  assert.match(service, /^ExecStart=\S+soci-snapshotter-grpc --address fd:\/\/$/m);
  assert.match(service, /^KillSignal=SIGTERM$/m);
  assert.match(service, /^NotifyAccess=main$/m);
  assert.match(service, /^FileDescriptorStoreMax=\d+$/m);
  const { hasTool } = await import('../../harness/env.js');
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

test('the README lists every key that is refused, moot or not built yet', async () => {
  const readme = await readFile(join(repoRoot, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf("### Configuration: where it differs from AWS's"), readme.indexOf('## Security'));
  for (const key of Object.keys(KEY_RULES)) {
    const leaf = key.split('.').at(-1)!;
    const table = key.includes('.') ? key.split('.').at(-2)! : '';
    assert.ok(section.includes(leaf) || (leaf !== '*' && section.includes(`[${table}] *`)), `README's config section names ${key}`);
  }
});

test('parallel pull modes as AWS checks them: the blobs need containerd content store unless discarded; limits; settings', () => {
  const p = (body: string, store = '') => parseConfig(`${store}[pull_modes.parallel_pull_unpack]\n${body}`);
  for (const key of ['enable', 'experimental_parallel_pull_as_fallback']) {
    assert.throws(
      () => p(`${key} = true\n`),
      (e: Error) =>
        e.message ===
        `config: pull_modes.parallel_pull_unpack.${key} = true requires containerd content store (type="containerd" under [content_store] or discard_unpacked_layers = true)`,
    );
    assert.equal(parallelPullMode(p(`${key} = true\ndiscard_unpacked_layers = true\n`)), key === 'enable' ? 'primary' : 'fallback');
    assert.equal(parallelPullSettings(p(`${key} = true\n`, '[content_store]\ntype = "containerd"\n')).discardUnpackedLayers, false);
  }
  assert.throws(
    () => p('max_concurrent_downloads = 2\nmax_concurrent_downloads_per_image = 3\n'),
    /max_concurrent_downloads_per_image is above max_concurrent_downloads/,
  );
  assert.throws(
    () => p('max_concurrent_unpacks = 1\nmax_concurrent_unpacks_per_image = 2\n'),
    /max_concurrent_unpacks_per_image is above max_concurrent_unpacks/,
  );
  // Outside the modes (a layer below lazy ones) nothing is kept, whatever the key says.
  assert.equal(parallelPullSettings(parseConfig('')).discardUnpackedLayers, true);
  const s = parallelPullSettings(p('enable = true\ndiscard_unpacked_layers = true\nconcurrent_download_chunk_size = "1.5mb"\nmax_concurrent_downloads = 9\n'));
  assert.deepEqual([s.chunkSize, s.maxConcurrentDownloads, s.maxConcurrentDownloadsPerImage, s.maxConcurrentUnpacksPerImage], [1572864, 9, 3, 1]);
});
