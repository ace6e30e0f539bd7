/**
 * deploy/kubernetes: the Helm chart linted and rendered by the real helm and checked object by
 * object, its DaemonSet's command run on this host with its probe asked as kubelet would, and the
 * containerd 2.x drop-in applied with apply.sh and read back by containerd 2.2 itself.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { parse as parseToml } from 'smol-toml';
import { parse as parseYaml } from 'yaml';
import { CHART_DIR, daemonSetCommand, findObject, HELM, helm, renderChart } from '../../harness/chart.js';
import { CONTAINERD2_BIN, repoRoot } from '../../harness/containerd.js';
import { needs, tempDir, waitFor } from '../../harness/env.js';
import { freePort } from '../../harness/registry.js';
import { DEFAULT_CONFIG_PATH, parseConfig } from '../../src/snapshotter/config.js';
import { KEY_RULES } from '../../src/snapshotter/config-keys.js';
import { DEFAULT_ADDRESS, DEFAULT_ROOT } from '../../src/snapshotter/daemon.js';
import { statusClient } from '../../src/snapshotter/status-service.js';

const exec = promisify(execFile);
const DROP_IN = join(repoRoot, 'deploy', 'kubernetes', 'containerd', 'soci.toml');
const APPLY = join(repoRoot, 'deploy', 'kubernetes', 'containerd', 'apply.sh');
const SA_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';
// A daemon without the kubeconfig keychain refuses enable_keychain = true (config-keys.ts): a todo then.
const keychainRefused = 'kubeconfig_keychain.enable_keychain' in KEY_RULES;

const podSpec = (docs: object[]) => findObject(docs, 'DaemonSet').spec.template.spec;
const container = (docs: object[]) => podSpec(docs).containers[0];
/** The host path behind the container's mount at `mountPath`, and the mount. */
function hostMount(docs: object[], mountPath: string): { mount: any; volume: any } {
  const mount = container(docs).volumeMounts.find((m: any) => m.mountPath === mountPath);
  assert.ok(mount, `nothing mounted at ${mountPath}`);
  return { mount, volume: podSpec(docs).volumes.find((v: any) => v.name === mount.name) };
}
const configToml = (docs: object[]) => findObject(docs, 'ConfigMap', 'soci-snapshotter-config').data['config.toml'] as string;

/** An HTTP GET as kubelet's httpGet probe does it (any 2xx or 3xx within the timeout passes). */
async function probe(port: number, path: string, timeoutSeconds: number): Promise<boolean> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(timeoutSeconds * 1000) });
    await res.arrayBuffer();
    return res.status >= 200 && res.status < 400;
  } catch {
    return false;
  }
}

describe('helm chart', { skip: needs({ tools: [HELM] }), timeout: 300_000 }, () => {
  test('helm lint --strict passes, with defaults and with every switch flipped', async () => {
    await helm(['lint', '--strict', CHART_DIR]);
    await helm(['lint', '--strict', CHART_DIR, '--set', 'keychain.kubeconfig.enabled=false', '--set', 'keychain.cri.enabled=true']);
    await helm(['lint', '--strict', CHART_DIR, '--set', 'metrics.serviceMonitor.enabled=true']);
  });

  test('defaults: a privileged DaemonSet in kube-system with FUSE, the root shared with the host, the socket dir and the config', async () => {
    const docs = await renderChart();
    assert.deepEqual(docs.map((d: any) => d.kind).sort(), [
      'ClusterRole',
      'ClusterRoleBinding',
      'ConfigMap',
      'DaemonSet',
      'RuntimeClass',
      'Service',
      'ServiceAccount',
    ]);
    const clusterScoped = (kind: string) => kind.startsWith('Cluster') || kind === 'RuntimeClass';
    for (const d of docs as any[]) if (!clusterScoped(d.kind)) assert.equal(d.metadata.namespace, 'kube-system', d.kind);

    const ds = findObject(docs, 'DaemonSet');
    assert.deepEqual(ds.spec.updateStrategy, { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1 } });
    const spec = podSpec(docs);
    assert.equal(spec.hostPID, false);
    assert.equal(spec.priorityClassName, 'system-node-critical');
    assert.deepEqual(spec.tolerations, [{ operator: 'Exists' }]);
    assert.deepEqual(spec.nodeSelector, { 'kubernetes.io/os': 'linux' });
    assert.equal(typeof spec.terminationGracePeriodSeconds, 'number');
    assert.equal(container(docs).securityContext.privileged, true);

    const fuse = hostMount(docs, '/dev/fuse');
    assert.deepEqual(fuse.volume.hostPath, { path: '/dev/fuse', type: 'CharDevice' });
    // containerd on the host stacks overlayfs on the daemon's FUSE mounts: same path, mounts propagated.
    const root = hostMount(docs, DEFAULT_ROOT);
    assert.equal(root.mount.mountPropagation, 'Bidirectional');
    assert.deepEqual(root.volume.hostPath, { path: DEFAULT_ROOT, type: 'DirectoryOrCreate' });
    const sock = hostMount(docs, dirname(DEFAULT_ADDRESS));
    assert.deepEqual(sock.volume.hostPath, { path: dirname(DEFAULT_ADDRESS), type: 'DirectoryOrCreate' });
    const config = hostMount(docs, dirname(DEFAULT_CONFIG_PATH));
    assert.equal(config.volume.configMap.name, 'soci-snapshotter-config');
    assert.ok(configToml(docs));

    assert.deepEqual(daemonSetCommand(docs), [
      'soci-snapshotter-grpc',
      '--address',
      DEFAULT_ADDRESS,
      '--root',
      DEFAULT_ROOT,
      '--config',
      DEFAULT_CONFIG_PATH,
      '--log-level',
      'info',
    ]);
  });

  test('defaults: metrics on a named port, a headless Service selecting the pods, probes on /metrics', async () => {
    const docs = await renderChart();
    const cfg = parseToml(configToml(docs)) as any;
    const port = Number(String(cfg.metrics_address).split(':').pop());
    assert.equal(cfg.metrics_address, `0.0.0.0:${port}`);
    assert.deepEqual(
      container(docs).ports.find((p: any) => p.name === 'metrics'),
      { name: 'metrics', containerPort: port },
    );
    const podLabels = findObject(docs, 'DaemonSet').spec.template.metadata.labels;
    assert.equal(podLabels['app.kubernetes.io/name'], 'soci-snapshotter');
    const svc = findObject(docs, 'Service');
    assert.equal(svc.spec.clusterIP, 'None');
    assert.equal(svc.metadata.labels['app.kubernetes.io/name'], 'soci-snapshotter');
    for (const [k, v] of Object.entries(svc.spec.selector)) assert.equal(podLabels[k], v, `selector ${k}`);
    assert.deepEqual(svc.spec.ports, [{ name: 'metrics', port, targetPort: 'metrics' }]);
    for (const p of ['livenessProbe', 'readinessProbe']) assert.deepEqual(container(docs)[p].httpGet, { path: '/metrics', port: 'metrics' }, p);
  });

  test('defaults: the kubeconfig keychain reads secrets of every namespace with the ServiceAccount token', async () => {
    const docs = await renderChart();
    const sa = findObject(docs, 'ServiceAccount');
    assert.equal(sa.metadata.name, 'soci-snapshotter');
    assert.equal(podSpec(docs).serviceAccountName, 'soci-snapshotter');
    assert.equal(podSpec(docs).automountServiceAccountToken, true);
    assert.deepEqual(findObject(docs, 'ClusterRole').rules, [{ apiGroups: [''], resources: ['secrets'], verbs: ['get', 'list', 'watch'] }]);
    const binding = findObject(docs, 'ClusterRoleBinding');
    assert.deepEqual(binding.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'soci-snapshotter' });
    assert.deepEqual(binding.subjects, [{ kind: 'ServiceAccount', name: 'soci-snapshotter', namespace: 'kube-system' }]);

    const cfg = parseToml(configToml(docs)) as any;
    assert.equal(cfg.kubeconfig_keychain.enable_keychain, true);
    // The kubeconfig is a key of the config ConfigMap, so it sits in the same mounted directory.
    const path = cfg.kubeconfig_keychain.kubeconfig_path as string;
    assert.equal(dirname(path), dirname(DEFAULT_CONFIG_PATH));
    const kubeconfig = parseYaml(findObject(docs, 'ConfigMap', 'soci-snapshotter-config').data[path.split('/').pop()!]);
    assert.equal(kubeconfig.users[0].user.tokenFile, `${SA_DIR}/token`);
    assert.equal(kubeconfig.clusters[0].cluster['certificate-authority'], `${SA_DIR}/ca.crt`);
    assert.equal(kubeconfig.clusters[0].cluster.server, 'https://kubernetes.default.svc');
    assert.equal(kubeconfig['current-context'], kubeconfig.contexts[0].name);
  });

  test("the kubeconfig gives @kubernetes/client-node (the keychain's client) the ServiceAccount token and CA", async (t) => {
    const dir = await tempDir(t, 'soci-kubeconfig-');
    await writeFile(join(dir, 'token'), 'sa-token');
    await writeFile(join(dir, 'ca.crt'), 'test ca');
    const text = findObject(await renderChart(), 'ConfigMap', 'soci-snapshotter-config').data.kubeconfig as string;
    await writeFile(join(dir, 'kubeconfig'), text.replaceAll(SA_DIR, dir));
    const k8s = await import('@kubernetes/client-node');
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(join(dir, 'kubeconfig'));
    const opts: { headers: Record<string, string>; ca?: unknown } = { headers: {} };
    await kc.applyToHTTPSOptions(opts);
    assert.equal(opts.headers.Authorization, 'Bearer sa-token');
    assert.equal(String(opts.ca), 'test ca');
  });

  test('the default config is accepted by the daemon', {
    todo: keychainRefused && 'the daemon refuses the kubeconfig keychain until it is built',
  }, async () => {
    parseConfig(configToml(await renderChart()), 'chart config.toml');
  });

  test('keychain.kubeconfig.enabled=false: no RBAC, no token, no kubeconfig; the config (with extraConfig) is accepted by the daemon', async () => {
    const docs = await renderChart({ 'keychain.kubeconfig.enabled': 'false', extraConfig: '[blob]\nmax_retries = 3' });
    assert.deepEqual(docs.map((d: any) => d.kind).sort(), ['ConfigMap', 'DaemonSet', 'RuntimeClass', 'Service', 'ServiceAccount']);
    assert.equal(podSpec(docs).automountServiceAccountToken, false);
    assert.deepEqual(Object.keys(findObject(docs, 'ConfigMap').data), ['config.toml']);
    const cfg = parseConfig(configToml(docs), 'chart config.toml');
    assert.equal(cfg.kubeconfig_keychain.enable_keychain, false);
    assert.equal(cfg.metrics_address, '0.0.0.0:9555');
    assert.equal(cfg.blob.max_retries, 3);
  });

  test('keychain.cri.enabled=true: [cri_keychain] on, containerd socket directory mounted', async () => {
    const docs = await renderChart({ 'keychain.kubeconfig.enabled': 'false', 'keychain.cri.enabled': 'true' });
    const cfg = parseConfig(configToml(docs), 'chart config.toml');
    assert.equal(cfg.cri_keychain.enable_keychain, true);
    const dir = dirname(cfg.cri_keychain.image_service_path);
    assert.deepEqual(hostMount(docs, dir).volume.hostPath, { path: dir, type: 'Directory' });
  });

  test('metrics.serviceMonitor.enabled=true: a ServiceMonitor scraping the Service port metrics', async () => {
    assert.ok(!(await renderChart()).some((d: any) => d.kind === 'ServiceMonitor'));
    const docs = await renderChart({ 'metrics.serviceMonitor.enabled': 'true', 'metrics.serviceMonitor.labels.release': 'prom' });
    const sm = findObject(docs, 'ServiceMonitor');
    assert.equal(sm.apiVersion, 'monitoring.coreos.com/v1');
    assert.equal(sm.metadata.labels.release, 'prom');
    assert.deepEqual(sm.spec.namespaceSelector, { matchNames: ['kube-system'] });
    const svcLabels = findObject(docs, 'Service').metadata.labels;
    for (const [k, v] of Object.entries(sm.spec.selector.matchLabels)) assert.equal(svcLabels[k], v, `selector ${k}`);
    assert.equal(sm.spec.endpoints[0].port, 'metrics');
    assert.equal(sm.spec.endpoints[0].path, '/metrics');
  });

  test("the DaemonSet's command runs the daemon, and its probe passes only while the daemon serves", { skip: needs({ root: true }) }, async (t) => {
    const dir = await tempDir(t, 'soci-chart-');
    const port = await freePort();
    const root = join(dir, 'root');
    const address = join(dir, 'run', 'soci.sock');
    // The kubeconfig keychain needs an API server (test/e2e/kubernetes.test.ts runs one).
    const docs = await renderChart({ 'keychain.kubeconfig.enabled': 'false', 'daemon.root': root, 'daemon.address': address, 'metrics.port': String(port) });
    const probeSpec = container(docs).livenessProbe;
    assert.deepEqual(container(docs).readinessProbe.httpGet, probeSpec.httpGet);
    const probePort = container(docs).ports.find((p: any) => p.name === probeSpec.httpGet.port).containerPort;
    assert.equal(probePort, port);
    const check = () => probe(probePort, probeSpec.httpGet.path, probeSpec.timeoutSeconds);

    // What the pod has: the hostPath directories (DirectoryOrCreate) and the ConfigMap's file.
    await mkdir(dirname(address), { recursive: true });
    const configPath = join(dir, 'config.toml');
    await writeFile(configPath, configToml(docs));
    const [cmd, ...args] = daemonSetCommand(docs);
    assert.equal(cmd, 'soci-snapshotter-grpc');
    const i = args.indexOf('--config');
    assert.equal(args[i + 1], DEFAULT_CONFIG_PATH);
    args[i + 1] = configPath;

    assert.equal(await check(), false, 'the probe passes with no daemon');
    const proc = spawn(process.execPath, ['--import', 'tsx', join(repoRoot, 'src', 'snapshotter', 'main.ts'), ...args], {
      cwd: repoRoot,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let logs = '';
    proc.stdout.on('data', (b: Buffer) => (logs += b));
    proc.stderr.on('data', (b: Buffer) => (logs += b));
    const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
    t.after(() => proc.exitCode === null && proc.kill('SIGKILL'));

    assert.ok(await waitFor(check, 30_000, 200), `the probe never passed:\n${logs.slice(-3000)}`);
    // containerd's side of the same daemon: the socket the chart names answers gRPC.
    const status = statusClient(address);
    try {
      const info = await status.info();
      assert.equal(info.root, root);
      assert.equal(info.metricsAddress, `0.0.0.0:${port}`);
    } finally {
      status.close();
    }

    // A daemon that is stuck fails it too (its metrics answer from the same event loop).
    proc.kill('SIGSTOP');
    assert.equal(await check(), false, 'the probe passes with the daemon stopped');
    proc.kill('SIGCONT');
    assert.ok(await waitFor(check, 10_000, 200), 'the probe does not pass again after SIGCONT');

    // kubelet's stop: SIGTERM, then the grace period.
    proc.kill('SIGTERM');
    const grace = podSpec(docs).terminationGracePeriodSeconds * 1000;
    const code = await Promise.race([exited, new Promise<string>((r) => setTimeout(() => r('still running'), grace))]);
    assert.equal(code, 0, `daemon after SIGTERM: ${code}\n${logs.slice(-3000)}`);
    assert.equal(await check(), false, 'the probe passes after the daemon exited');
  });
});

describe('containerd drop-in', () => {
  test('soci.toml parses and names the socket and root of the daemon and the chart defaults', async () => {
    const d = JSON.parse(JSON.stringify(parseToml(await readFile(DROP_IN, 'utf8')))); // plain objects
    assert.equal(d.version, 3);
    assert.deepEqual(d.proxy_plugins.soci, { type: 'snapshot', address: DEFAULT_ADDRESS, exports: { root: DEFAULT_ROOT } });
    const images = d.plugins['io.containerd.cri.v1.images'];
    assert.equal(images.snapshotter, 'soci');
    assert.equal(images.disable_snapshot_annotations, false);
    const values = parseYaml(await readFile(join(CHART_DIR, 'values.yaml'), 'utf8'));
    assert.equal(values.daemon.address, DEFAULT_ADDRESS);
    assert.equal(values.daemon.root, DEFAULT_ROOT);
    // the runtime of the snapshotter's own pod: runc on overlayfs, named as the chart's handler
    const runtime = d.plugins['io.containerd.cri.v1.runtime'].containerd.runtimes[values.bootstrapRuntime.handler];
    assert.equal(runtime.runtime_type, 'io.containerd.runc.v2');
    assert.equal(runtime.snapshotter, 'overlayfs');
    assert.deepEqual(images.runtime_platforms, { [values.bootstrapRuntime.handler]: { snapshotter: 'overlayfs' } }, 'its pulls go to overlayfs too');
  });

  test("defaults: the snapshotter's own pod runs on the overlayfs bootstrap runtime, named for pulls too", async () => {
    const docs = await renderChart();
    const rc = findObject(docs, 'RuntimeClass');
    assert.equal(podSpec(docs).runtimeClassName, rc.metadata.name);
    const annotations = findObject(docs, 'DaemonSet').spec.template.metadata.annotations;
    assert.equal(annotations['io.containerd.cri.runtime-handler'], rc.handler);
    const off = await renderChart({ 'bootstrapRuntime.create': 'false' });
    assert.equal(
      off.some((o: any) => o.kind === 'RuntimeClass'),
      false,
    );
    assert.equal(podSpec(off).runtimeClassName, rc.metadata.name, 'a RuntimeClass the cluster manages is still used');
  });

  const containerd = join(CONTAINERD2_BIN, 'containerd');
  test('apply.sh installs it so that containerd 2.2 reads it; refuses configs it cannot extend', { skip: needs({ tools: [containerd] }) }, async (t) => {
    const dir = await tempDir(t, 'soci-dropin-');
    const config = join(dir, 'etc', 'config.toml');
    const confd = join(dir, 'etc', 'conf.d');
    const env = { ...process.env, PATH: `${CONTAINERD2_BIN}:${process.env.PATH}`, CONTAINERD_CONFIG: config, CONTAINERD_CONF_D: confd };
    const apply = () =>
      exec('bash', [APPLY], { env }).then(
        () => 0,
        (e: { code: number }) => e.code,
      );
    const effective = async () => parseToml((await exec(containerd, ['-c', config, 'config', 'dump'])).stdout) as any;

    // No config file: one that imports conf.d is written.
    assert.equal(await apply(), 0);
    assert.equal(await readFile(join(confd, 'soci.toml'), 'utf8'), await readFile(DROP_IN, 'utf8'));
    let eff = await effective();
    assert.equal(eff.plugins['io.containerd.cri.v1.images'].snapshotter, 'soci');
    assert.equal(eff.plugins['io.containerd.cri.v1.images'].disable_snapshot_annotations, false);
    assert.equal(eff.proxy_plugins.soci.address, DEFAULT_ADDRESS);
    assert.equal(eff.proxy_plugins.soci.exports.root, DEFAULT_ROOT);
    assert.equal(eff.plugins['io.containerd.cri.v1.runtime'].containerd.runtimes['soci-bootstrap'].snapshotter, 'overlayfs');
    assert.equal(eff.plugins['io.containerd.cri.v1.images'].runtime_platforms['soci-bootstrap'].snapshotter, 'overlayfs');

    // A version 3 config without imports gets the line, once; its own settings stay.
    await writeFile(config, "version = 3\n[plugins.'io.containerd.cri.v1.images'.pinned_images]\n  sandbox = 'example.com/pause:1'\n");
    assert.equal(await apply(), 0);
    assert.equal(await apply(), 0);
    const text = await readFile(config, 'utf8');
    assert.equal(text.split('\n').filter((l) => l.startsWith('imports')).length, 1, text);
    eff = await effective();
    assert.equal(eff.plugins['io.containerd.cri.v1.images'].snapshotter, 'soci');
    assert.equal(eff.plugins['io.containerd.cri.v1.images'].pinned_images.sandbox, 'example.com/pause:1');

    // Left unchanged: a version 2 config, and one whose imports list lacks conf.d.
    for (const body of ['version = 2\n', "version = 3\nimports = ['/elsewhere/*.toml']\n"]) {
      await writeFile(config, body);
      assert.equal(await apply(), 1, body);
      assert.equal(await readFile(config, 'utf8'), body);
    }
  });
});
