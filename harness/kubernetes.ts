/**
 * A private Kubernetes control plane for e2e tests: Debian's etcd and a kube-apiserver built from
 * k8s.io/kubernetes by scripts/install-test-tools.sh, on 127.0.0.1 ports, under a test's temp dir,
 * stopped by PID. No controller-manager and no scheduler: tests create the objects those would
 * (a namespace's `default` ServiceAccount) and pin pods to the node with `spec.nodeName`.
 *
 * Authentication is a static token file; authorization is Node + RBAC, so a user's rights are what
 * the test grants it:
 *   admin  `system:masters`
 *   node   `system:node:<NODE_NAME>` in `system:nodes` (the kubelet)
 *   soci   `system:serviceaccount:kube-system:soci-snapshotter` (the snapshotter's keychain)
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { execOk } from './containerd.js';
import { waitFor } from './env.js';
import { freePort } from './registry.js';
import { type AfterHost, captureOutput, stopProcess, waitReady } from './process.js';

export const KUBE_BIN = process.env.SOCI_TEST_TOOLS_KUBERNETES ?? '/opt/soci-test-tools/kubernetes/bin';
export const NODE_NAME = 'soci-node';

export type KubeUser = 'admin' | 'node' | 'soci';

export interface KubeResponse {
  status: number;
  body: any;
}

export interface KubeApi {
  url: string;
  caFile: string;
  tokens: Record<KubeUser, string>;
  /** Writes a kubeconfig for `user` at `path`. */
  kubeconfig(user: KubeUser, path: string): Promise<void>;
  /** One API call as `user` (default admin); a JSON body is sent as JSON. */
  request(method: string, path: string, body?: unknown, user?: KubeUser): Promise<KubeResponse>;
  /** Like request, but throws unless the status is 2xx. */
  call(method: string, path: string, body?: unknown, user?: KubeUser): Promise<any>;
  logs(): string;
}

/** A CA, the apiserver's serving certificate and the service-account signing key. */
async function makePki(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const p = (f: string) => join(dir, f);
  await execOk('openssl', [
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    p('ca.key'),
    '-out',
    p('ca.crt'),
    '-days',
    '2',
    '-subj',
    '/CN=soci-test-ca',
  ]);
  await execOk('openssl', ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', p('apiserver.key'), '-out', p('apiserver.csr'), '-subj', '/CN=kube-apiserver']);
  await writeFile(p('san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost,IP:10.96.0.1,DNS:kubernetes.default.svc\n');
  await execOk('openssl', [
    'x509',
    '-req',
    '-in',
    p('apiserver.csr'),
    '-CA',
    p('ca.crt'),
    '-CAkey',
    p('ca.key'),
    '-CAcreateserial',
    '-out',
    p('apiserver.crt'),
    '-days',
    '2',
    '-extfile',
    p('san.ext'),
  ]);
  await execOk('openssl', ['genrsa', '-out', p('sa.key'), '2048']);
  await execOk('openssl', ['rsa', '-in', p('sa.key'), '-pubout', '-out', p('sa.pub')]);
}

export async function startKubeApiServer(t: AfterHost, opts: { dir: string }): Promise<KubeApi> {
  const dir = join(opts.dir, 'control-plane');
  const pki = join(dir, 'pki');
  await makePki(pki);

  const [etcdPort, peerPort, apiPort] = [await freePort(), await freePort(), await freePort()];
  const etcd = spawn(
    'etcd',
    [
      '--name=soci-test',
      `--data-dir=${join(dir, 'etcd')}`,
      `--listen-client-urls=http://127.0.0.1:${etcdPort}`,
      `--advertise-client-urls=http://127.0.0.1:${etcdPort}`,
      `--listen-peer-urls=http://127.0.0.1:${peerPort}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${peerPort}`,
      `--initial-cluster=soci-test=http://127.0.0.1:${peerPort}`,
      '--log-level=warn',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const etcdLogs = captureOutput(etcd);
  t.after(() => stopProcess(etcd, 'SIGTERM'));

  const tokens: Record<KubeUser, string> = {
    admin: randomBytes(16).toString('hex'),
    node: randomBytes(16).toString('hex'),
    soci: randomBytes(16).toString('hex'),
  };
  await writeFile(
    join(pki, 'tokens.csv'),
    [
      `${tokens.admin},admin,admin,"system:masters"`,
      `${tokens.node},system:node:${NODE_NAME},kubelet,"system:nodes"`,
      `${tokens.soci},system:serviceaccount:kube-system:soci-snapshotter,soci,"system:serviceaccounts,system:serviceaccounts:kube-system"`,
    ].join('\n') + '\n',
    { mode: 0o600 },
  );
  const api = spawn(
    join(KUBE_BIN, 'kube-apiserver'),
    [
      `--etcd-servers=http://127.0.0.1:${etcdPort}`,
      '--bind-address=127.0.0.1',
      '--advertise-address=127.0.0.1',
      `--secure-port=${apiPort}`,
      `--cert-dir=${join(dir, 'certs')}`,
      `--tls-cert-file=${join(pki, 'apiserver.crt')}`,
      `--tls-private-key-file=${join(pki, 'apiserver.key')}`,
      `--client-ca-file=${join(pki, 'ca.crt')}`,
      `--token-auth-file=${join(pki, 'tokens.csv')}`,
      '--authorization-mode=Node,RBAC',
      '--anonymous-auth=false',
      '--service-account-issuer=https://kubernetes.default.svc',
      `--service-account-key-file=${join(pki, 'sa.pub')}`,
      `--service-account-signing-key-file=${join(pki, 'sa.key')}`,
      '--service-cluster-ip-range=10.96.0.0/24',
      '--allow-privileged=true',
      '--endpoint-reconciler-type=none',
      '--enable-priority-and-fairness=false',
      '--profiling=false',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const apiLogs = captureOutput(api);
  t.after(() => stopProcess(api, 'SIGTERM'));

  const url = `https://127.0.0.1:${apiPort}`;
  const caFile = join(pki, 'ca.crt');
  const dispatcher = new Agent({ connect: { ca: await readFile(caFile) } });
  t.after(() => dispatcher.close());
  const doRequest = async (method: string, path: string, body?: unknown, user: KubeUser = 'admin'): Promise<KubeResponse> => {
    const headers: Record<string, string> = { authorization: `Bearer ${tokens[user]}`, accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = method === 'PATCH' ? 'application/merge-patch+json' : 'application/json';
    const r = await request(url + path, {
      method: method as 'GET',
      headers,
      dispatcher,
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await r.body.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      /* not JSON (healthz says "ok") */
    }
    return { status: r.statusCode, body: parsed };
  };
  const logs = () => `--- etcd ---\n${etcdLogs().slice(-3000)}\n--- kube-apiserver ---\n${apiLogs().slice(-6000)}`;
  await waitReady(
    'kube-apiserver start',
    async () => {
      if (etcd.exitCode !== null) throw new Error(`etcd exited with ${etcd.exitCode}\n${logs()}`);
      const r = await doRequest('GET', '/readyz').catch(() => null);
      return r?.status === 200;
    },
    90_000,
    api,
    logs,
  );
  return {
    url,
    caFile,
    tokens,
    logs,
    request: doRequest,
    call: async (method, path, body, user) => {
      const r = await doRequest(method, path, body, user);
      if (r.status < 200 || r.status > 299) throw new Error(`${method} ${path} as ${user ?? 'admin'}: ${r.status} ${JSON.stringify(r.body).slice(0, 500)}`);
      return r.body;
    },
    kubeconfig: async (user, path) => {
      await writeFile(
        path,
        JSON.stringify({
          apiVersion: 'v1',
          kind: 'Config',
          clusters: [{ name: 'soci-test', cluster: { server: url, 'certificate-authority': caFile } }],
          users: [{ name: user, user: { token: tokens[user] } }],
          contexts: [{ name: 'soci-test', context: { cluster: 'soci-test', user } }],
          'current-context': 'soci-test',
        }),
        { mode: 0o600 },
      );
    },
  };
}

/** Polls a pod until `ok` accepts it; throws with the pod's last state otherwise. */
export async function waitPod(
  api: KubeApi,
  ns: string,
  name: string,
  ok: (pod: any) => boolean,
  timeoutMs = 120_000,
  what = 'the expected state',
): Promise<any> {
  let last: any;
  const done = await waitFor(
    async () => {
      const r = await api.request('GET', `/api/v1/namespaces/${ns}/pods/${name}`);
      last = r.body;
      return r.status === 200 && ok(r.body);
    },
    timeoutMs,
    500,
  );
  if (!done) throw new Error(`pod ${ns}/${name} did not reach ${what} in ${timeoutMs} ms: ${JSON.stringify(last?.status ?? last).slice(0, 3000)}`);
  return last;
}

/** Whether a pod's containers are all ready. */
export function podReady(pod: any): boolean {
  return pod?.status?.conditions?.some((c: any) => c.type === 'Ready' && c.status === 'True') === true;
}
