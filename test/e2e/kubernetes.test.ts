/**
 * A single-node Kubernetes from real components: etcd, kube-apiserver and kubelet (built from
 * k8s.io/kubernetes), containerd 2.2 with CRI and our snapshotter as its `soci` proxy plugin, and
 * kubelet's ImageService pointed at the snapshotter's CRI keychain. Every scenario is asserted
 * through the API (pod status), crictl, containerd and the snapshotter's own decisions and mounts:
 *   1. a pod of a SOCI-converted image starts with its indexed layer lazily mounted and serves HTTP;
 *   2. the pause image and an image without an index run, with no second pull by another snapshotter;
 *   3. imagePullSecrets of a password-protected registry reach the lazy mounts, also after a restart
 *      of the snapshotter;
 *   4. a container restart, a pod delete and kubelet's image garbage collection, which frees the
 *      snapshots, the FUSE mounts and the cached spans;
 *   5. crictl imagefsinfo and kubelet's stats show the snapshotter's filesystem;
 *   6. while the snapshotter is down, pods that need it wait (containerd has no fallback) and start
 *      once it is back; a pod of the chart's bootstrap RuntimeClass (the DaemonSet's own) starts;
 *   7. an image only in overlayfs (a node image's cache) from a registry the snapshotter has no
 *      credentials for starts: containerd 2.2 unpacks it through soci, which hands it back.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { needs, newTempDir, waitFor } from '../../harness/env.js';
import { startRegistry, type TestRegistry } from '../../harness/registry.js';
import { execOk, removeTree, repoRoot, sociFuseMounts, startContainerd, startSnapshotter, type StartedContainerd } from '../../harness/containerd.js';
import { APP_INDEX_HTML, appCommand, appPartBytes, buildAppImage } from '../../harness/app-image.js';
import { buildLayout } from '../../harness/images.js';
import { KUBE_BIN, NODE_NAME, podReady, startKubeApiServer, waitPod, type KubeApi } from '../../harness/kubernetes.js';
import { startKubelet } from '../../harness/kubelet.js';
import { freePort } from '../../harness/registry.js';
import { daemonSetCommand, findObject, HELM, renderChart } from '../../harness/chart.js';

const SOCI = join(process.cwd(), 'bin/soci.js');
const CRICTL = join(KUBE_BIN, 'crictl');

async function push(layout: string, reg: TestRegistry, ref: string): Promise<void> {
  const creds = reg.user ? ['--dest-creds', `${reg.user}:${reg.password}`] : [];
  await execOk('skopeo', ['copy', '--dest-tls-verify=false', ...creds, `oci:${layout}:latest`, `docker://${reg.host}/${ref}`], { timeoutMs: 300_000 });
}

async function convert(reg: TestRegistry, from: string, to: string, root: string): Promise<void> {
  const creds = reg.user ? ['-u', `${reg.user}:${reg.password}`] : [];
  await execOk(process.execPath, [SOCI, '--root', root, 'convert', '--remote', '-q', ...creds, `${reg.host}/${from}`, `${reg.host}/${to}`], {
    timeoutMs: 300_000,
  });
}

/** A hostNetwork pod pinned to the node, serving HTTP on 127.0.0.1:port. */
function appPod(name: string, image: string, port: number, extra: Record<string, unknown> = {}, annotations: Record<string, string> = {}) {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: 'default', annotations },
    spec: {
      nodeName: NODE_NAME,
      hostNetwork: true,
      automountServiceAccountToken: false,
      terminationGracePeriodSeconds: 1,
      containers: [
        {
          name: 'app',
          image,
          imagePullPolicy: 'IfNotPresent',
          command: appCommand(port),
          readinessProbe: { httpGet: { host: '127.0.0.1', port, path: '/' }, periodSeconds: 1 },
        },
      ],
      ...extra,
    },
  };
}

/**
 * deploy/kubernetes/containerd/soci.toml's runtime for the snapshotter's own pod, as this node needs
 * it: cgroupfs (kubelet's driver here), where the drop-in says systemd.
 */
const BOOTSTRAP_RUNTIME = `[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.soci-bootstrap]
  runtime_type = "io.containerd.runc.v2"
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.soci-bootstrap.options]
    SystemdCgroup = false
[plugins.'io.containerd.cri.v1.images'.runtime_platforms.soci-bootstrap]
  snapshotter = "overlayfs"
`;

async function httpGet(port: number): Promise<string> {
  const r = await fetch(`http://127.0.0.1:${port}/`);
  return r.text();
}

async function crictl(ctd: StartedContainerd, args: string[]): Promise<any> {
  const out = await execOk(CRICTL, ['--runtime-endpoint', `unix://${ctd.address}`, '--image-endpoint', `unix://${ctd.address}`, ...args]);
  return JSON.parse(out);
}

/** Names of containerd's snapshots in kubelet's namespace, for one snapshotter. */
async function snapshots(ctd: StartedContainerd, snapshotter: string): Promise<string[]> {
  const r = await ctd.ctr(['-n', 'k8s.io', 'snapshots', '--snapshotter', snapshotter, 'ls']);
  if (r.code !== 0) throw new Error(`ctr snapshots ls: ${r.stderr}`);
  return r.stdout
    .split('\n')
    .slice(1)
    .map((l) => l.split(/\s+/)[0]!)
    .filter(Boolean);
}

/** The layer dirs the snapshotter's span cache holds (one per lazily mounted layer read from). */
async function cachedLayers(root: string): Promise<string[]> {
  return (await readdir(join(root, 'soci', 'spancache')).catch(() => [] as string[])).filter((d) => d !== 'wip');
}

test('Kubernetes: a single node runs lazily started pods (kubelet, kube-apiserver, containerd 2.2, our snapshotter)', {
  skip: needs({
    root: true,
    tools: ['etcd', 'openssl', 'skopeo', 'docker-registry', join(KUBE_BIN, 'kubelet'), join(KUBE_BIN, 'kube-apiserver'), CRICTL, HELM],
  }),
  timeout: 1_200_000,
}, async (t) => {
  const dir = await newTempDir('soci-k8s-');
  const reg = await startRegistry(t);
  const priv = await startRegistry(t, { auth: 'htpasswd' });
  // a registry whose credentials the snapshotter never gets (the node image's own cache)
  const sealed = await startRegistry(t, { auth: 'htpasswd' });

  // The images: a pause image (unindexed, pinned as the sandbox image), an app converted to SOCI, the
  // same kind of app left without an index, and a converted app in the password-protected registry.
  const pause = buildLayout(join(dir, 'pause'), {
    images: [
      {
        layers: [{ files: { 'bin/busybox': { content: await readFile('/bin/busybox'), mode: 0o755 } } }],
        config: { config: { Entrypoint: ['/bin/busybox', 'sleep', '2147483647'] } },
      },
    ],
  });
  await push(pause.dir, reg, 'pause:3.10');
  await push(buildAppImage(join(dir, 'app'), { bulkMb: 16, seed: 3 }).dir, reg, 'app:v1');
  await convert(reg, 'app:v1', 'app:soci', join(dir, 'soci-cli'));
  await push(buildAppImage(join(dir, 'plain'), { bulkMb: 4, seed: 5 }).dir, reg, 'plain:v1');
  await push(buildAppImage(join(dir, 'boot'), { bulkMb: 4, seed: 13 }).dir, reg, 'boot:v1');
  await push(buildAppImage(join(dir, 'private'), { bulkMb: 16, seed: 7 }).dir, priv, 'app:v1');
  await push(buildAppImage(join(dir, 'cached'), { bulkMb: 4, seed: 17 }).dir, sealed, 'cached:v1');
  await convert(priv, 'app:v1', 'app:soci', join(dir, 'soci-cli'));

  // The node: the snapshotter first (containerd dials it), then containerd, the control plane, kubelet.
  const ctdSocket = join(dir, 'containerd.sock');
  const snAddress = join(dir, 'soci.sock');
  const snRoot = join(dir, 'soci-root');
  // The snapshotter runs as the DaemonSet's container would: the chart's command and config (with
  // this node's paths and the CRI keychain), the built program as users run it.
  const chart = await renderChart({
    'daemon.address': snAddress,
    'daemon.root': snRoot,
    'metrics.port': String(await freePort()),
    'keychain.kubeconfig.enabled': 'false',
    'keychain.cri.enabled': 'true',
    'keychain.cri.containerdSocket': ctdSocket,
    // spans are read only by what the test reads (a span first read after a restart must be fetched then)
    extraConfig: '[background_fetch]\ndisable = true',
  });
  const snConfig = findObject(chart, 'ConfigMap', 'soci-snapshotter-config').data['config.toml'] as string;
  const [program, ...flags] = daemonSetCommand(chart);
  assert.equal(program, 'soci-snapshotter-grpc');
  const configAt = flags.indexOf('--config') + 1;
  const snOptions = {
    address: snAddress,
    dir,
    root: snRoot,
    config: snConfig,
    entry: join(repoRoot, 'bin', 'soci-snapshotter-grpc.js'),
    // the ConfigMap's file is mounted at the path the command names; here it is the test's copy
    args: flags.map((f, i) => (i === configAt ? join(dir, 'config.toml') : f)),
  };
  let sn = await startSnapshotter(t, snOptions);
  const ctd = await startContainerd(t, {
    version: '2.2',
    cri: true,
    address: ctdSocket,
    snapshotterSocket: snAddress,
    snapshotterRoot: snRoot,
    plainHttpRegistries: [reg.host, priv.host, sealed.host],
    // The sandbox's oom_score_adj (-998) needs CAP_SYS_RESOURCE, which this test host's own
    // container does not grant: containerd clamps it to its own score instead.
    extraToml: `[plugins.'io.containerd.cri.v1.images'.pinned_images]\n  sandbox = "${reg.host}/pause:3.10"\n[plugins.'io.containerd.cri.v1.runtime']\n  restrict_oom_score_adj = true\n${BOOTSTRAP_RUNTIME}`,
  });
  const api: KubeApi = await startKubeApiServer(t, { dir });
  await api.call('POST', '/api/v1/namespaces/default/serviceaccounts', { metadata: { name: 'default' } });
  const kubelet = await startKubelet(t, {
    dir,
    api,
    runtimeEndpoint: ctd.address,
    imageServiceEndpoint: sn.address,
    config: { authentication: { anonymous: { enabled: true }, webhook: { enabled: false }, x509: {} } },
  });
  // after-hooks run in order: this one, registered last, runs once every daemon above has stopped
  t.after(() => removeTree(dir));
  const diag = () =>
    `\n--- kubelet ---\n${kubelet.logs().slice(-6000)}\n--- snapshotter ---\n${sn.logs().slice(-4000)}\n--- containerd ---\n${ctd.logs().slice(-4000)}`;

  const appPort = await freePort();
  await t.test('1. a SOCI-converted image starts lazily and serves HTTP', async () => {
    await api.call('POST', '/api/v1/namespaces/default/pods', appPod('app', `${reg.host}/app:soci`, appPort));
    await waitPod(api, 'default', 'app', podReady, 180_000, 'Ready').catch((e) => assert.fail(`${e.message}${diag()}`));
    assert.equal(await httpGet(appPort), APP_INDEX_HTML);
    assert.ok((await sociFuseMounts(snRoot)).length >= 1, 'the indexed layer is a FUSE mount under our root');
    const lazy = sn.logLines().filter((l) => l['remote-snapshot-prepared'] === 'true');
    assert.ok(lazy.length >= 1, `the snapshotter logged a remote snapshot${diag()}`);
  });

  const plainPort = await freePort();
  await t.test('2. the pause image and an unindexed image run, pulled once, by our snapshotter only', async () => {
    await api.call('POST', '/api/v1/namespaces/default/pods', appPod('plain', `${reg.host}/plain:v1`, plainPort));
    await waitPod(api, 'default', 'plain', podReady, 180_000, 'Ready').catch((e) => assert.fail(`${e.message}${diag()}`));
    assert.equal(await httpGet(plainPort), APP_INDEX_HTML);
    assert.deepEqual(await snapshots(ctd, 'overlayfs'), [], 'nothing was unpacked by another snapshotter');
    assert.ok((await snapshots(ctd, 'soci')).length >= 4, 'the pause, app and plain layers are soci snapshots');
    const deferred = sn.logLines().filter((l) => l.msg === 'failed to prepare remote snapshot' && /index/i.test(String(l.reason)));
    assert.ok(deferred.length >= 1, 'the unindexed image was a decision, logged');
    // Each blob of the pause image was fetched from the registry once: no pull by a second snapshotter.
    const gets = (await reg.accessLog()).filter((e) => e.method === 'GET' && e.path.startsWith('/v2/pause/blobs/'));
    const perBlob = new Map<string, number>();
    for (const g of gets) perBlob.set(g.path, (perBlob.get(g.path) ?? 0) + 1);
    assert.ok(perBlob.size >= 2, JSON.stringify(gets));
    for (const [path, n] of perBlob) assert.equal(n, 1, `${path} fetched ${n} times`);
  });

  const privPort = await freePort();
  await t.test('3. imagePullSecrets reach the lazy mounts, also after a snapshotter restart', async () => {
    const auth = Buffer.from(`${priv.user}:${priv.password}`).toString('base64');
    const dockerconfig = JSON.stringify({ auths: { [priv.host]: { auth } } });
    await api.call('POST', '/api/v1/namespaces/default/secrets', {
      metadata: { name: 'private-registry' },
      type: 'kubernetes.io/dockerconfigjson',
      data: { '.dockerconfigjson': Buffer.from(dockerconfig).toString('base64') },
    });
    const before = new Set(await sociFuseMounts(snRoot));
    await api.call(
      'POST',
      '/api/v1/namespaces/default/pods',
      appPod('private', `${priv.host}/app:soci`, privPort, { imagePullSecrets: [{ name: 'private-registry' }] }),
    );
    await waitPod(api, 'default', 'private', podReady, 180_000, 'Ready').catch((e) => assert.fail(`${e.message}${diag()}`));
    assert.equal(await httpGet(privPort), APP_INDEX_HTML);
    assert.ok(await sn.waitLine((l) => l.msg === 'CRI PullImage proxied' && String(l.image).startsWith(priv.host) && l.credentials === 'provided'));
    const added = (await sociFuseMounts(snRoot)).filter((m) => !before.has(m));
    assert.equal(added.length, 1, 'the private image has one lazily mounted layer');
    const mount = added[0]!;
    assert.ok((await readFile(join(mount, 'usr/share/bulk/part1.bin'))).equals(appPartBytes(1, 7)), 'a span read with the secret');

    // A restart: the credentials kubelet sent are kept, the mount is taken over and reads new spans.
    await sn.stop('SIGTERM');
    sn = await startSnapshotter(t, snOptions);
    assert.ok((await readFile(join(mount, 'usr/share/bulk/part3.bin'))).equals(appPartBytes(3, 7)), `a span first read after the restart${diag()}`);
    assert.equal(await httpGet(privPort), APP_INDEX_HTML);
    for (const logs of [sn.logs(), kubelet.logs()]) assert.ok(!logs.includes(priv.password!), 'the password is in no log');
  });

  await t.test('4. a container restart, a pod delete and kubelet image GC free snapshots, mounts and cached spans', async () => {
    const pod = await api.call('GET', '/api/v1/namespaces/default/pods/app');
    const id = String(pod.status.containerStatuses[0].containerID).replace('containerd://', '');
    const kill = await ctd.ctr(['-n', 'k8s.io', 'tasks', 'kill', '-s', 'SIGKILL', id]);
    assert.equal(kill.code, 0, kill.stderr);
    await waitPod(api, 'default', 'app', (p) => p.status?.containerStatuses?.[0]?.restartCount >= 1 && podReady(p), 120_000, 'restarted and Ready');
    assert.equal(await httpGet(appPort), APP_INDEX_HTML, 'the restarted container serves from the same lazy layers');

    assert.ok((await cachedLayers(snRoot)).length >= 1, 'spans were cached');
    for (const name of ['app', 'plain', 'private']) {
      await api.call('DELETE', `/api/v1/namespaces/default/pods/${name}`);
      const gone = await waitFor(async () => (await api.request('GET', `/api/v1/namespaces/default/pods/${name}`)).status === 404, 120_000, 500);
      assert.ok(gone, `pod ${name} deleted${diag()}`);
    }
    const pods = await crictl(ctd, ['pods', '-o', 'json']);
    assert.equal(pods.items.filter((p: any) => p.state === 'SANDBOX_READY').length, 0, 'no sandbox left running');

    // Image GC: kubelet frees unused images when the image filesystem is under pressure. A threshold
    // the disk is always under makes its eviction manager reclaim (it checks every 10 s once its
    // stats are up: about 2 minutes after a kubelet start here).
    await kubelet.restart({
      evictionHard: { 'memory.available': '1Mi', 'nodefs.available': '99%', 'imagefs.available': '99%' },
      evictionPressureTransitionPeriod: '1s',
    });
    const collected = await waitFor(
      async () => {
        const images = (await crictl(ctd, ['images', '-o', 'json'])).images as Array<{ repoTags: string[] }>;
        return !images.some((i) => i.repoTags.some((r) => /\/(app|plain):/.test(r)));
      },
      300_000,
      1000,
    );
    assert.ok(collected, `kubelet removed the unused images${diag()}`);
    assert.ok(await sn.waitLine((l) => l.msg === 'CRI RemoveImage proxied', 30_000), 'kubelet called RemoveImage through the snapshotter');
    const images = (await crictl(ctd, ['images', '-o', 'json'])).images as Array<{ repoTags: string[] }>;
    assert.ok(
      images.some((i) => i.repoTags.includes(`${reg.host}/pause:3.10`)),
      'the pinned pause image stays',
    );

    const freed = await waitFor(async () => (await sociFuseMounts(snRoot)).length === 0 && (await cachedLayers(snRoot)).length === 0, 60_000, 500);
    assert.ok(freed, `mounts ${JSON.stringify(await sociFuseMounts(snRoot))}, cached ${JSON.stringify(await cachedLayers(snRoot))}${diag()}`);
    assert.equal((await snapshots(ctd, 'soci')).length, 1, 'only the pause image layer is left');
    await kubelet.restart();
  });

  await t.test('5. crictl imagefsinfo and kubelet stats show the snapshotter filesystem', async () => {
    const info = await crictl(ctd, ['imagefsinfo', '-o', 'json']);
    const fs = info.status.imageFilesystems[0];
    assert.equal(fs.fsId.mountpoint, snRoot, JSON.stringify(info));
    assert.ok(Number(fs.usedBytes.value) > 0, JSON.stringify(info));
    let last: any;
    const ok = await waitFor(
      async () => {
        last = await kubelet.stats().catch((e: Error) => ({ error: e.message }));
        return Number(last?.node?.runtime?.imageFs?.capacityBytes) > 0 && Number(last?.node?.runtime?.imageFs?.usedBytes) > 0;
      },
      90_000,
      2000,
    );
    assert.ok(ok, `kubelet stats: ${JSON.stringify(last?.node?.runtime ?? last).slice(0, 2000)}${diag()}`);
  });

  await t.test("6. with the snapshotter down, soci pods wait and the chart's bootstrap RuntimeClass pod starts", async () => {
    const docs = await renderChart();
    const rc = findObject(docs, 'RuntimeClass');
    const template = findObject(docs, 'DaemonSet').spec.template;
    await api.call('POST', '/apis/node.k8s.io/v1/runtimeclasses', {
      apiVersion: rc.apiVersion,
      kind: rc.kind,
      metadata: { name: rc.metadata.name },
      handler: rc.handler,
    });
    // The CRI keychain's image service is the snapshotter itself: kubelet talks to containerd now.
    await kubelet.restart({ imageServiceEndpoint: `unix://${ctd.address}` });
    await sn.stop('SIGTERM');

    const [downPort, bootPort] = [await freePort(), await freePort()];
    await api.call('POST', '/api/v1/namespaces/default/pods', appPod('down', `${reg.host}/app:soci`, downPort));
    await api.call(
      'POST',
      '/api/v1/namespaces/default/pods',
      appPod('boot', `${reg.host}/boot:v1`, bootPort, { runtimeClassName: template.spec.runtimeClassName }, template.metadata.annotations),
    );
    await waitPod(api, 'default', 'boot', podReady, 180_000, 'Ready').catch((e) => assert.fail(`${e.message}${diag()}`));
    assert.equal(await httpGet(bootPort), APP_INDEX_HTML);
    assert.ok((await snapshots(ctd, 'overlayfs')).length >= 2, 'the bootstrap pod was pulled and made on overlayfs');
    const down = await api.call('GET', '/api/v1/namespaces/default/pods/down');
    assert.ok(!podReady(down), 'no fallback: a soci pod does not start while the snapshotter is down');
    const waiting = down.status?.containerStatuses?.[0]?.state?.waiting?.reason ?? down.status?.phase;
    assert.ok(waiting, JSON.stringify(down.status));

    sn = await startSnapshotter(t, snOptions);
    await waitPod(api, 'default', 'down', podReady, 240_000, 'Ready once the snapshotter is back').catch((e) => assert.fail(`${e.message}${diag()}`));
    assert.equal(await httpGet(downPort), APP_INDEX_HTML);
    assert.ok((await sociFuseMounts(snRoot)).length >= 1, 'lazily mounted again');
  });

  await t.test('7. an image cached in overlayfs only, from a registry the snapshotter cannot read, still starts', async () => {
    // A node image built with the image already in containerd (overlayfs), as EKS's AMIs carry the
    // pause image: containerd 2.2 unpacks it again through soci for a pod, and the snapshotter has
    // no credentials for its registry (on EKS they come from kubelet's credential provider, which
    // needs pods running). The snapshotter must hand the layers back to containerd, which has them.
    const pull = await ctd.ctr(
      [
        '-n',
        'k8s.io',
        'images',
        'pull',
        '--snapshotter',
        'overlayfs',
        '--hosts-dir',
        ctd.hostsDir,
        '--user',
        `${sealed.user}:${sealed.password}`,
        `${sealed.host}/cached:v1`,
      ],
      { timeoutMs: 300_000 },
    );
    assert.equal(pull.code, 0, pull.stderr);
    const blobReads = async () => (await sealed.accessLog()).filter((e) => e.method === 'GET' && e.path.includes('/blobs/') && e.status === 200);
    const pulled = await blobReads();
    const port = await freePort();
    await api.call('POST', '/api/v1/namespaces/default/pods', appPod('cached', `${sealed.host}/cached:v1`, port));
    await waitPod(api, 'default', 'cached', podReady, 180_000, 'Ready').catch((e) => assert.fail(`${e.message}${diag()}`));
    assert.equal(await httpGet(port), APP_INDEX_HTML);
    const deferred = sn.logLines().filter((l) => l.msg === 'deferring snapshot preparation to the container runtime');
    assert.ok(deferred.length >= 2, `both layers handed back to containerd${diag()}`);
    assert.deepEqual(await blobReads(), pulled, 'nothing was read from the registry after the pull');
  });
});
