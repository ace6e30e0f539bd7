/**
 * `[kubeconfig_keychain]` against a real control plane (etcd + kube-apiserver, RBAC on): the
 * snapshotter reads `kubernetes.io/dockerconfigjson` Secrets of all namespaces with a service
 * account's token that may only get/list/watch secrets, and its lazy mounts of an image in a
 * password-protected registry fetch spans with them. The registry's password is rotated twice: the
 * spans read next fail while the Secret holds the old password and are read once the Secret is
 * updated (or deleted and created again in another namespace); a restarted snapshotter syncs again
 * and reads the spans first fetched after its restart. No password or token appears in its logs.
 * containerd 2.2 with CRI pulls the image with its own credentials (kubelet's role); the snapshotter
 * has no other source of credentials (no Docker config, no CRI keychain).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CoreV1Api, KubeConfig, RbacAuthorizationV1Api, type V1Secret } from '@kubernetes/client-node';
import { needs, waitFor } from '../../harness/env.js';
import { startRegistry, type TestRegistry } from '../../harness/registry.js';
import { CONTAINERD2_BIN, removeTree, sociFuseMounts, startContainerd, startSnapshotter, type StartedSnapshotter } from '../../harness/containerd.js';
import { criPull } from '../../harness/cri.js';
import { appPartBytes, buildAppImage } from '../../harness/app-image.js';
import { KUBE_BIN, startKubeApiServer } from '../../harness/kubernetes.js';

const exec = promisify(execFile);
const SOCI = join(process.cwd(), 'bin/soci.js');
const SEED = 11;
const CHANGED = 'kubeconfig keychain: secret changed';

/** A new password for alice; distribution reloads its htpasswd file when it changes. */
async function rotatePassword(reg: TestRegistry, password: string): Promise<void> {
  const { stdout } = await exec('htpasswd', ['-Bbn', reg.user!, password]);
  await writeFile(join(reg.workDir, 'htpasswd'), stdout);
  const status = async (pw: string) =>
    (await fetch(`${reg.url}/v2/`, { headers: { authorization: `Basic ${Buffer.from(`${reg.user}:${pw}`).toString('base64')}` } })).status;
  assert.ok(await waitFor(async () => (await status(password)) === 200, 10_000), 'the registry takes the new password');
}

function pullSecret(name: string, reg: TestRegistry, password: string): V1Secret {
  const auth = Buffer.from(`${reg.user}:${password}`).toString('base64');
  const json = JSON.stringify({ auths: { [`http://${reg.host}/v2/`]: { auth } } });
  return { metadata: { name }, type: 'kubernetes.io/dockerconfigjson', data: { '.dockerconfigjson': Buffer.from(json).toString('base64') } };
}

/** Waits for the snapshotter to apply a watch event of this secret at this resourceVersion. */
async function applied(sn: StartedSnapshotter, secret: string, event: string, resourceVersion?: string): Promise<void> {
  const line = await sn.waitLine((l) => l.msg === CHANGED && l.secret === secret && l.event === event && l.resourceVersion === resourceVersion, 30_000);
  assert.ok(line, `${event} ${secret}@${resourceVersion} reached the snapshotter\n${sn.logs().slice(-3000)}`);
}

const readPart = (mount: string, i: number) => readFile(join(mount, `usr/share/bulk/part${i}.bin`));

test('kubeconfig keychain: dockerconfigjson Secrets from kube-apiserver reach the lazy mounts, through rotations, a delete and a restart (containerd 2.2)', {
  skip: needs({
    root: true,
    tools: ['etcd', 'openssl', 'skopeo', 'docker-registry', 'htpasswd', join(KUBE_BIN, 'kube-apiserver'), join(CONTAINERD2_BIN, 'containerd')],
  }),
  timeout: 900_000,
}, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'soci-kubekc-'));
  t.after(() => removeTree(dir));
  const reg = await startRegistry(t, { auth: 'htpasswd' });
  const passwords = [reg.password!];
  const creds = `${reg.user}:${reg.password}`;
  const app = buildAppImage(join(dir, 'app'), { bulkMb: 32, seed: SEED });
  await exec('skopeo', ['copy', '--dest-tls-verify=false', '--dest-creds', creds, `oci:${app.dir}:latest`, `docker://${reg.host}/app:v1`]);
  await exec(process.execPath, [SOCI, '--root', join(dir, 'soci'), 'convert', '--remote', '-q', '-u', creds, `${reg.host}/app:v1`, `${reg.host}/app:soci`]);

  // The control plane; the snapshotter's service account may read secrets once RBAC says so.
  const api = await startKubeApiServer(t, { dir });
  const adminConfig = join(dir, 'admin.kubeconfig');
  await api.kubeconfig('admin', adminConfig);
  const admin = new KubeConfig();
  admin.loadFromFile(adminConfig);
  const core = admin.makeApiClient(CoreV1Api);
  const rbac = admin.makeApiClient(RbacAuthorizationV1Api);
  assert.equal((await api.request('GET', '/api/v1/secrets', undefined, 'soci')).status, 403, 'no rights before the grant');
  await rbac.createClusterRole({
    body: { metadata: { name: 'soci-snapshotter-secrets' }, rules: [{ apiGroups: [''], resources: ['secrets'], verbs: ['get', 'list', 'watch'] }] },
  });
  await rbac.createClusterRoleBinding({
    body: {
      metadata: { name: 'soci-snapshotter-secrets' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'soci-snapshotter-secrets' },
      subjects: [{ kind: 'ServiceAccount', name: 'soci-snapshotter', namespace: 'kube-system' }],
    },
  });
  assert.ok(await waitFor(async () => (await api.request('GET', '/api/v1/secrets', undefined, 'soci')).status === 200, 10_000), 'the grant applies');
  for (const ns of ['team-a', 'team-b']) await core.createNamespace({ body: { metadata: { name: ns } } });
  const sociConfig = join(dir, 'soci.kubeconfig');
  await api.kubeconfig('soci', sociConfig);

  // The snapshotter, with no credentials but the keychain's: an empty Docker config dir.
  const noDocker = join(dir, 'no-docker-config');
  await mkdir(noDocker);
  const env = { DOCKER_CONFIG: noDocker, SOCI_REGISTRY_AUTH: '', KUBECONFIG: '' };
  const address = join(dir, 'sn.sock');
  const config = `[kubeconfig_keychain]\nenable_keychain = true\nkubeconfig_path = "${sociConfig}"\n[background_fetch]\ndisable = true\n`;
  const sn = await startSnapshotter(t, { address, dir, config, env });
  assert.ok(await sn.waitLine((l) => l.msg === 'kubeconfig keychain: first sync complete' && l.secrets === 0, 60_000), sn.logs().slice(-3000));

  // A pull secret created after the first sync arrives by the watch.
  const created = await core.createNamespacedSecret({ namespace: 'team-a', body: pullSecret('regcred', reg, passwords[0]!) });
  await applied(sn, 'team-a/regcred', 'ADDED', created.metadata?.resourceVersion);

  const ctd = await startContainerd(t, { version: '2.2', snapshotterSocket: address, cri: true, plainHttpRegistries: [reg.host] });
  await criPull(ctd.address, `${reg.host}/app:soci`, { username: reg.user!, password: passwords[0]! });
  const mounts = await sociFuseMounts(dir);
  assert.equal(mounts.length, 1, `lazy mount with the Secret's credentials\n${sn.logs().slice(-3000)}`);
  const mount = mounts[0]!;
  assert.ok(await sn.waitLine((l) => l.msg === 'kubeconfig keychain: credentials found' && l.secret === 'team-a/regcred' && l.registry === reg.host));
  assert.ok((await readPart(mount, 1)).equals(appPartBytes(1, SEED)), 'a span read with the Secret credentials');

  // Rotation: the registry's password changes, the Secret not yet: new spans cannot be fetched.
  passwords.push('rotated-once-Secr3t');
  await rotatePassword(reg, passwords[1]!);
  await assert.rejects(readPart(mount, 3), (e: NodeJS.ErrnoException) => e.code === 'EIO', 'the old password is refused');
  const updated = await core.replaceNamespacedSecret({ name: 'regcred', namespace: 'team-a', body: pullSecret('regcred', reg, passwords[1]!) });
  await applied(sn, 'team-a/regcred', 'MODIFIED', updated.metadata?.resourceVersion);
  assert.ok((await readPart(mount, 3)).equals(appPartBytes(3, SEED)), 'read with the rotated password from the updated Secret');

  // A restart: the new daemon takes over the mount, lists the Secrets again and reads new spans.
  await sn.stop('SIGTERM');
  const sn2 = await startSnapshotter(t, { address, dir, config, env });
  assert.ok(await sn2.waitLine((l) => l.msg === 'layer mount taken over from the previous daemon'), sn2.logs().slice(-3000));
  assert.ok(await sn2.waitLine((l) => l.msg === 'kubeconfig keychain: first sync complete' && l.secrets === 1, 60_000), sn2.logs().slice(-3000));
  assert.ok((await readPart(mount, 5)).equals(appPartBytes(5, SEED)), 'a span first read after the restart');

  // The Secret is deleted and the password rotated again: nothing authenticates, until a Secret
  // with the new password appears in another namespace.
  await core.deleteNamespacedSecret({ name: 'regcred', namespace: 'team-a' });
  assert.ok(await sn2.waitLine((l) => l.msg === CHANGED && l.secret === 'team-a/regcred' && l.event === 'DELETED', 30_000), sn2.logs().slice(-3000));
  passwords.push('rotated-twice-Secr3t');
  await rotatePassword(reg, passwords[2]!);
  await assert.rejects(readPart(mount, 7), (e: NodeJS.ErrnoException) => e.code === 'EIO', 'no credentials after the delete');
  const other = await core.createNamespacedSecret({ namespace: 'team-b', body: pullSecret('pull', reg, passwords[2]!) });
  await applied(sn2, 'team-b/pull', 'ADDED', other.metadata?.resourceVersion);
  assert.ok((await readPart(mount, 7)).equals(appPartBytes(7, SEED)), 'read with the Secret of the other namespace');

  const logs = sn.logs() + sn2.logs();
  for (const p of passwords) {
    assert.ok(!logs.includes(p), 'no password in the logs');
    assert.ok(!logs.includes(Buffer.from(`${reg.user}:${p}`).toString('base64')), 'no auth value in the logs');
  }
  assert.ok(!logs.includes(api.tokens.soci) && !logs.includes(api.tokens.admin), 'no API token in the logs');
});
