/**
 * A kubelet for e2e tests (built by scripts/install-test-tools.sh): one node registered with the
 * private apiserver of harness/kubernetes.ts, talking CRI to a containerd the test started (and,
 * optionally, ImageService to our snapshotter's CRI keychain). Everything it writes lives under the
 * test's dir; its ports are on 127.0.0.1.
 *
 * The node has no CNI: pods use `hostNetwork`. This host uses cgroup v1, which kubelet refuses by
 * default (`failCgroupV1`); QoS cgroups and node allocatable enforcement are off, since the host's
 * cgroups belong to the machine, not to the test.
 */
import { spawn } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { KUBE_BIN, NODE_NAME, type KubeApi } from './kubernetes.js';
import { freePort } from './registry.js';
import { type AfterHost, captureOutput, stopProcess, waitReady } from './process.js';
import { waitFor } from './env.js';

export interface KubeletOptions {
  dir: string;
  api: KubeApi;
  /** containerd's socket */
  runtimeEndpoint: string;
  /** CRI ImageService socket (default: containerd's) */
  imageServiceEndpoint?: string;
  /** KubeletConfiguration fields over the defaults below */
  config?: Record<string, unknown>;
}

export interface StartedKubelet {
  logs(): string;
  /** kubelet's stats summary (`/stats/summary` on its own port; anonymous access is on in tests that read it). */
  stats(): Promise<any>;
  /** Restarts the kubelet, optionally with other configuration fields; the node stays registered. */
  restart(config?: Record<string, unknown>): Promise<void>;
  stop(): Promise<void>;
}

export async function startKubelet(t: AfterHost, opts: KubeletOptions): Promise<StartedKubelet> {
  const dir = join(opts.dir, 'kubelet');
  await mkdir(join(dir, 'pod-logs'), { recursive: true });
  const kubeconfig = join(dir, 'kubeconfig');
  await opts.api.kubeconfig('node', kubeconfig);
  const [port, healthzPort] = [await freePort(), await freePort()];
  const base: Record<string, unknown> = {
    apiVersion: 'kubelet.config.k8s.io/v1beta1',
    kind: 'KubeletConfiguration',
    address: '127.0.0.1',
    port,
    readOnlyPort: 0,
    healthzBindAddress: '127.0.0.1',
    healthzPort,
    authentication: { anonymous: { enabled: false }, webhook: { enabled: false }, x509: {} },
    authorization: { mode: 'AlwaysAllow' },
    cgroupDriver: 'cgroupfs',
    cgroupsPerQOS: false,
    enforceNodeAllocatable: [],
    failSwapOn: false,
    failCgroupV1: false,
    containerRuntimeEndpoint: `unix://${opts.runtimeEndpoint}`,
    imageServiceEndpoint: `unix://${opts.imageServiceEndpoint ?? opts.runtimeEndpoint}`,
    podLogsDir: join(dir, 'pod-logs'),
    // no evictions unless a test asks (the host's disk is not the test's)
    evictionHard: { 'memory.available': '1Mi', 'nodefs.available': '1%', 'imagefs.available': '1%', 'nodefs.inodesFree': '1%' },
    imageMinimumGCAge: '0s',
    syncFrequency: '5s',
    nodeStatusUpdateFrequency: '5s',
    fileCheckFrequency: '5s',
    serializeImagePulls: false,
    resolvConf: '/etc/resolv.conf',
    rotateCertificates: false,
  };
  let config = { ...base, ...opts.config };
  let proc: ReturnType<typeof spawn> | undefined;
  let logs = () => '';
  const healthy = async () => {
    try {
      const r = await fetch(`http://127.0.0.1:${healthzPort}/healthz`);
      return r.status === 200;
    } catch {
      return false;
    }
  };
  const start = async () => {
    const configPath = join(dir, 'config.json');
    await writeFile(configPath, JSON.stringify(config, null, 2));
    proc = spawn(
      join(KUBE_BIN, 'kubelet'),
      [
        `--kubeconfig=${kubeconfig}`,
        `--config=${configPath}`,
        `--root-dir=${join(dir, 'root')}`,
        `--cert-dir=${join(dir, 'pki')}`,
        `--hostname-override=${NODE_NAME}`,
        '--node-ip=127.0.0.1',
        '--v=2',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    logs = captureOutput(proc);
    await waitReady('kubelet start', healthy, 90_000, proc, logs);
    // registered, and the node object shows its runtime
    const registered = await waitFor(async () => (await opts.api.request('GET', `/api/v1/nodes/${NODE_NAME}`)).status === 200, 60_000, 500);
    if (!registered) throw new Error(`kubelet did not register node ${NODE_NAME}\n${logs().slice(-5000)}`);
  };
  const stop = async () => {
    if (proc) await stopProcess(proc, 'SIGTERM');
  };
  t.after(stop);
  await start();
  // kubelet serves with a certificate it made itself
  const insecure = new Agent({ connect: { rejectUnauthorized: false } });
  t.after(() => insecure.close());
  return {
    stats: async () => {
      const r = await request(`https://127.0.0.1:${port}/stats/summary`, { dispatcher: insecure });
      const text = await r.body.text();
      if (r.statusCode !== 200) throw new Error(`kubelet /stats/summary: ${r.statusCode} ${text.slice(0, 300)}`);
      return JSON.parse(text);
    },
    logs: () => logs(),
    stop,
    restart: async (more) => {
      await stop();
      config = { ...base, ...opts.config, ...more };
      await start();
    },
  };
}
