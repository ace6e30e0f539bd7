/**
 * `soci doctor`: each broken link is built for real and named, and a healthy setup passes.
 * One private registry, containerd 2.2 with CRI on soci and our snapshotter; an app image converted
 * with `soci convert` and pushed, then pulled lazily through CRI. Then, one at a time:
 *   - containerd configs (version 2 and 3 files) without the proxy plugin, or with CRI's snapshot
 *     annotations off;
 *   - the image copied without its index (skopeo copy of one platform);
 *   - an image of small layers only;
 *   - a registry proxy that drops Range, and one that rejects multi-range;
 *   - an htpasswd registry, with no credentials for root, then with them;
 *   - the image pulled with another snapshotter (ctr's default, overlayfs).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { buildAppImage } from '../../harness/app-image.js';
import { CONTAINERD2_BIN, exec as run, startContainerd, startSnapshotter, type StartedContainerd } from '../../harness/containerd.js';
import { criPull } from '../../harness/cri.js';
import { needs, newTempDir } from '../../harness/env.js';
import { startFaultProxy } from '../../harness/fault-proxy.js';
import { buildLayout } from '../../harness/images.js';
import { freePort, startRegistry, type TestRegistry } from '../../harness/registry.js';
import { sociOn, type StoreSoci } from '../../harness/store-soci.js';
import { blobPath } from '../../harness/hostile-image.js';

const exec = promisify(execFile);
const skip = needs({ root: true, tools: ['runc', 'docker-registry', 'skopeo', 'zstd', join(CONTAINERD2_BIN, 'containerd')] });

interface Check {
  id: string;
  status: 'ok' | 'warn' | 'fail' | 'info';
  seen: string;
  fix?: string;
}

describe('soci doctor', { skip, timeout: 900_000 }, () => {
  // One setup for every case below; node:test runs them in order, and the hooks stop it all.
  const hooks: Array<() => unknown> = [];
  const t = { after: (fn: () => unknown) => void hooks.push(fn) };
  let tmp = '';
  let reg: TestRegistry;
  let cd: StartedContainerd;
  let sociEnv: NodeJS.ProcessEnv;
  let converted = '';
  let small = '';
  let metricsPort = 0;

  let store: StoreSoci;
  const soci = (args: string[], env: NodeJS.ProcessEnv = sociEnv) => store.run(args, env);
  const doctor = async (args: string[], env?: NodeJS.ProcessEnv): Promise<{ code: number; checks: Check[]; text: string }> => {
    const r = await soci(['doctor', '--containerd-config', cd.configPath, '--plain-http', '--json', ...args], env);
    assert.equal(r.stderr, '', 'doctor writes nothing to stderr');
    const j = JSON.parse(r.stdout) as { ok: boolean; checks: Check[] };
    assert.equal(j.ok, r.code === 0, 'ok in the JSON matches the exit code');
    return { code: r.code, checks: j.checks, text: j.checks.map((c) => `${c.status} ${c.id}: ${c.seen}`).join('\n') };
  };
  const find = (checks: Check[], id: string) => {
    const c = checks.find((x) => x.id === id);
    assert.ok(c, `a ${id} check in:\n${checks.map((x) => `${x.status} ${x.id}`).join('\n')}`);
    return c;
  };

  before(async () => {
    tmp = await newTempDir('soci-doctor-');
    hooks.push(() => run('rm', ['-rf', tmp]));
    sociEnv = { ...process.env, HOME: tmp, DOCKER_CONFIG: join(tmp, 'no-docker-config') };
    reg = await startRegistry(t);
    const app = buildAppImage(join(tmp, 'app'), { bulkMb: 8, seed: 21 });
    await exec('skopeo', ['copy', '--dest-tls-verify=false', `oci:${app.dir}:latest`, `docker://${reg.host}/library/app:latest`]);
    const tiny = buildLayout(join(tmp, 'tiny'), { images: [{ layers: [{ files: { 'etc/motd': 'hi\n' } }, { files: { 'etc/issue': 'tiny\n' } }] }] });
    small = `${reg.host}/library/tiny:latest`;
    await exec('skopeo', ['copy', '--dest-tls-verify=false', `oci:${tiny.dir}:latest`, `docker://${small}`]);

    metricsPort = await freePort();
    const sn = await startSnapshotter(t, { config: `metrics_address = "127.0.0.1:${metricsPort}"\n[background_fetch]\ndisable = true\n` });
    cd = await startContainerd(t, { version: '2.2', snapshotterSocket: sn.address, cri: true, plainHttpRegistries: [reg.host] });
    const src = `${reg.host}/library/app:latest`;
    converted = `${reg.host}/library/app-soci:latest`;
    store = sociOn(cd, join(tmp, 'soci-root'), sociEnv);
    // Out of containerd's store again afterwards, so the CRI pull below goes through our snapshotter.
    await store.convertAndPush(src, converted, ['--min-layer-size', String(1 << 20)]);
  });
  after(async () => {
    for (const fn of hooks.reverse()) await fn();
  });

  test('a healthy setup: every check ok, before and after a lazy pull', async () => {
    const before = await doctor(['--min-layer-size', String(1 << 20), converted]);
    assert.equal(before.code, 0, before.text);
    assert.deepEqual(
      before.checks.filter((c) => c.status === 'warn' || c.status === 'fail'),
      [],
    );
    for (const id of ['containerd', 'containerd-config.proxy-plugin', 'containerd.soci-plugin', 'containerd-config.snapshot-annotations', 'snapshotter'])
      assert.equal(find(before.checks, id).status, 'ok', id);
    assert.match(find(before.checks, 'index').seen, /annotation \(SOCI index manifest v2\)/);
    assert.match(find(before.checks, 'layer.0').seen, /lazy, zTOC sha256:/);
    assert.match(find(before.checks, 'layer.1').seen, /below min-layer-size 1048576/);
    assert.equal(find(before.checks, 'registry.range').status, 'ok');
    assert.equal(find(before.checks, 'registry.multi-range').status, 'ok');
    assert.equal(find(before.checks, 'registry.auth').status, 'ok');
    assert.equal(find(before.checks, 'snapshotter.metrics').seen, `metrics served at http://127.0.0.1:${metricsPort}/metrics`);
    assert.match(find(before.checks, 'snapshotter').seen, /^soci-snapshotter-grpc \S+ \(pid \d+\) answers at .*, config .*config\.toml$/);

    await criPull(cd.address, converted);
    const after = await doctor(['--min-layer-size', String(1 << 20), converted]);
    assert.equal(after.code, 0, after.text);
    assert.match(find(after.checks, 'pulled.layer.0').seen, /mounted lazily by soci/);
    assert.match(find(after.checks, 'pulled.layer.1').seen, /unpacked by soci \(no-ztoc: /, 'the small layer has no zTOC: our unpacker took it');
  });

  test('containerd configs without the plugin, or with CRI annotations off (version 2 and 3 files)', async () => {
    const text = await readFile(cd.configPath, 'utf8');
    const noPlugin = join(tmp, 'no-plugin.toml');
    await writeFile(noPlugin, text.replace(/\[proxy_plugins\.soci\][^[]*/, ''));
    const a = await doctor(['--containerd-config', noPlugin]);
    assert.equal(a.code, 1);
    assert.match(find(a.checks, 'containerd-config.proxy-plugin').seen, /no \[proxy_plugins\.soci\]/);
    assert.equal(find(a.checks, 'containerd-config.proxy-plugin').status, 'fail');

    const v3off = join(tmp, 'annotations-off-v3.toml');
    await writeFile(v3off, text.replace('disable_snapshot_annotations = false', 'disable_snapshot_annotations = true'));
    const b = await doctor(['--containerd-config', v3off]);
    assert.equal(b.code, 1);
    const c = find(b.checks, 'containerd-config.snapshot-annotations');
    assert.equal(c.status, 'fail');
    assert.match(c.seen, /disable_snapshot_annotations is true/);
    assert.match(c.fix!, /io\.containerd\.cri\.v1\.images/);

    // containerd 1.x's layout (version 2), annotations left at their default
    const v2 = join(tmp, 'annotations-default-v2.toml');
    await writeFile(
      v2,
      `version = 2\n[proxy_plugins.soci]\n  type = "snapshot"\n  address = "${find(b.checks, 'containerd-config.proxy-plugin').seen.split(' at ')[1]}"\n[plugins."io.containerd.grpc.v1.cri".containerd]\n  snapshotter = "soci"\n`,
    );
    const d = await doctor(['--containerd-config', v2]);
    const e = find(d.checks, 'containerd-config.snapshot-annotations');
    assert.equal(e.status, 'fail');
    assert.match(e.seen, /unset \(default true\)/);
    assert.match(e.fix!, /io\.containerd\.grpc\.v1\.cri"\]?\.containerd/);
  });

  test('an image copied without its index', async () => {
    const copied = `${reg.host}/library/app-copied:latest`;
    await exec('skopeo', ['copy', '--src-tls-verify=false', '--dest-tls-verify=false', `docker://${converted}`, `docker://${copied}`]);
    const r = await doctor([copied]);
    assert.equal(r.code, 1);
    const c = find(r.checks, 'index');
    assert.equal(c.status, 'fail');
    assert.match(c.seen, /copied without its index/);
    assert.match(c.fix!, /skopeo copy --all/);
  });

  test('an image of small layers only', async () => {
    const r = await doctor([small]);
    assert.equal(r.code, 1);
    assert.match(find(r.checks, 'layer.0').seen, /below min-layer-size 10485760/);
    assert.match(find(r.checks, 'image.lazy').seen, /every layer is below min-layer-size/);
  });

  test('a registry proxy that drops Range, and one that rejects multi-range', async () => {
    const proxy = await startFaultProxy(t, reg.host);
    proxy.add({ method: 'GET', path: '/blobs/', times: Number.POSITIVE_INFINITY, fault: { kind: 'dropRange' } });
    const ref = converted.replace(reg.host, proxy.host);
    const a = await doctor([ref]);
    assert.equal(a.code, 1);
    const c = find(a.checks, 'registry.range');
    assert.equal(c.status, 'fail');
    assert.match(c.seen, /ignores Range: a read of 1024 bytes was answered 200 with the whole blob \(\d+ bytes\); lazy loading cannot work/);

    proxy.clear();
    proxy.add({ method: 'GET', path: '/blobs/', times: Number.POSITIVE_INFINITY, fault: { kind: 'noMultiRange' } });
    const b = await doctor([ref]);
    assert.equal(find(b.checks, 'registry.range').status, 'ok');
    const m = find(b.checks, 'registry.multi-range');
    assert.equal(m.status, 'warn');
    assert.match(m.seen, /answered 416/);
  });

  test('an htpasswd registry without credentials for root, then with them', async () => {
    const authReg = await startRegistry(t, { auth: 'htpasswd' });
    const ref = `${authReg.host}/library/app-soci:latest`;
    const creds = `${authReg.user}:${authReg.password}`;
    await exec('skopeo', [
      'copy',
      '--all',
      '--src-tls-verify=false',
      '--dest-tls-verify=false',
      '--dest-creds',
      creds,
      `docker://${converted}`,
      `docker://${ref}`,
    ]);
    const a = await doctor([ref]);
    assert.equal(a.code, 1);
    const c = find(a.checks, 'registry.auth');
    assert.equal(c.status, 'fail');
    assert.match(c.seen, /needs credentials and root has none/);
    assert.match(c.fix!, /nerdctl login .* as root/);

    const dockerConfig = join(tmp, 'docker-config');
    await mkdir(dockerConfig, { recursive: true });
    await writeFile(join(dockerConfig, 'config.json'), JSON.stringify({ auths: { [authReg.host]: { auth: Buffer.from(creds).toString('base64') } } }));
    const b = await doctor([ref], { ...sociEnv, DOCKER_CONFIG: dockerConfig });
    assert.equal(find(b.checks, 'registry.auth').status, 'ok', b.text);
    assert.equal(find(b.checks, 'index').status, 'ok', b.text);
    assert.ok(!b.text.includes(authReg.password!), 'the password never appears in the output');
  });

  test('an image pulled with another snapshotter', async () => {
    const pull = await cd.ctr(['images', 'pull', '--hosts-dir', cd.hostsDir, converted], { timeoutMs: 300_000 });
    assert.equal(pull.code, 0, pull.stderr);
    const r = await doctor([converted]);
    assert.equal(r.code, 0, 'a warning, not a failure: the image works, just not lazily');
    assert.match(find(r.checks, 'pulled').seen, /namespace default/);
    const c = find(r.checks, 'pulled.layer.0');
    assert.equal(c.status, 'warn');
    assert.match(c.seen, /already unpacked by overlayfs/);
  });

  test('a zTOC missing from the registry, a zstd layer, a referrers call answered by a login page', async () => {
    const gone = `${reg.host}/library/app-noztoc:latest`;
    await exec('skopeo', ['copy', '--all', '--src-tls-verify=false', '--dest-tls-verify=false', `docker://${converted}`, `docker://${gone}`]);
    const healthy = await doctor([gone]);
    const ztoc = /zTOC (sha256:[0-9a-f]{64})/.exec(find(healthy.checks, 'layer.0').seen)![1]!;
    await run('rm', ['-f', blobPath(reg, ztoc)]);
    const a = await doctor([gone]);
    const c = find(a.checks, 'layer.0');
    assert.equal(c.status, 'fail');
    assert.match(c.seen, /its zTOC sha256:[0-9a-f]{64} is missing from the registry/);

    const z = buildLayout(join(tmp, 'zstd'), { images: [{ layers: [{ files: { 'etc/motd': 'z\n' }, compression: 'zstd' }] }] });
    const zref = `${reg.host}/library/zstd:latest`;
    await exec('skopeo', ['copy', '--dest-tls-verify=false', `oci:${z.dir}:latest`, `docker://${zref}`]);
    const b = await doctor([zref]);
    assert.equal(find(b.checks, 'layer.0').status, 'warn');
    assert.match(find(b.checks, 'layer.0').seen, /zstd layers have no zTOC/);

    const proxy = await startFaultProxy(t, reg.host);
    proxy.add({
      method: 'GET',
      path: '/referrers/',
      times: Number.POSITIVE_INFINITY,
      fault: { kind: 'status', status: 200, headers: { 'content-type': 'text/html' }, body: '<html>please log in</html>' },
    });
    const d = await doctor([converted.replace(reg.host, proxy.host)]);
    const rf = find(d.checks, 'registry.referrers');
    assert.equal(rf.status, 'fail');
    assert.match(rf.seen, /HTML page/);
  });

  test('an image with a v1 index only, while v1 discovery is off', async () => {
    const src = `${reg.host}/library/app:latest`;
    assert.equal((await cd.ctr(['images', 'pull', '--hosts-dir', cd.hostsDir, src], { timeoutMs: 300_000 })).code, 0);
    const created = await soci(['create', '--min-layer-size', String(1 << 20), src]);
    assert.equal(created.code, 0, created.stderr);
    const pushed = await soci(['push', '--plain-http', '-q', src]);
    assert.equal(pushed.code, 0, pushed.stderr);
    const r = await doctor([src]);
    assert.equal(r.code, 1);
    const c = find(r.checks, 'index');
    assert.equal(c.status, 'fail');
    assert.match(
      c.seen,
      new RegExp(`SOCI index manifest v1 \\(${pushed.stdout.trim()}, found through referrers\\), but the snapshotter's v1 discovery is off`),
    );
    assert.match(c.fix!, /\[pull_modes\.soci_v1\] enable = true/);
  });
});
