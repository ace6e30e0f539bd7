/**
 * The host half of `soci doctor`: containerd answers, its config file wires the `soci` proxy
 * plugin to a socket where our snapshotter answers (and containerd has loaded it, as
 * `nerdctl system info` would list), the CRI plugin uses it with snapshot annotations on, and the
 * snapshotter itself answers with its version, config and metrics endpoint.
 *
 * containerd's config keys: `[proxy_plugins.soci] type = "snapshot", address = …` (both majors);
 * CRI `snapshotter` and `disable_snapshot_annotations` live under
 * `plugins."io.containerd.grpc.v1.cri".containerd` in config version 2 (containerd 1.x) and under
 * `plugins."io.containerd.cri.v1.images"` in version 3 (containerd 2.x). Both majors default
 * `disable_snapshot_annotations` to true, which hides the labels a remote snapshotter needs.
 */
import { readFile } from 'node:fs/promises';
import { parse } from 'smol-toml';
import { ContainerdConnection } from '../containerd/client.js';
import { isSociError } from '../errors.js';
import { statusClient, type StatusInfo } from '../snapshotter/status-service.js';
import type { Report } from './report.js';

export const DEFAULT_CONTAINERD_CONFIG = '/etc/containerd/config.toml';
export const DEFAULT_SNAPSHOTTER_ADDRESS = '/run/soci-snapshotter-grpc/soci-snapshotter-grpc.sock';

export interface HostOptions {
  containerdAddress: string;
  namespace: string;
  containerdConfig: string;
  /** the snapshotter's socket; default: the config's proxy plugin address, else AWS's default */
  snapshotterAddress?: string;
}

export interface HostFacts {
  containerd?: ContainerdConnection;
  snapshotter?: StatusInfo & { address: string };
  /** the snapshotter the CRI plugin pulls with ('' when unknown) */
  criSnapshotter: string;
}

type Table = Record<string, unknown>;
const table = (v: unknown): Table | undefined => (v && typeof v === 'object' && !Array.isArray(v) ? (v as Table) : undefined);

export async function checkHost(r: Report, o: HostOptions): Promise<HostFacts> {
  const facts: HostFacts = { criSnapshotter: '' };
  const conn = new ContainerdConnection({ address: o.containerdAddress, namespace: o.namespace, deadline: new Date(Date.now() + 10_000) });
  try {
    const v = await conn.connect();
    r.ok('containerd', `containerd ${v.version} answers at ${conn.path}`);
    facts.containerd = conn;
  } catch (e) {
    conn.close();
    r.fail('containerd', (e as Error).message.replace(/ \(start containerd.*\)$/, ''), 'start containerd, or pass its socket with -a/--address');
  }

  const plugin = await checkConfig(r, o, facts);
  const address = o.snapshotterAddress ?? plugin ?? DEFAULT_SNAPSHOTTER_ADDRESS;
  if (facts.containerd && plugin !== undefined) await checkLoaded(r, facts.containerd);
  await checkSnapshotter(r, address, facts);
  return facts;
}

/** Returns the soci proxy plugin's address from the config (undefined when there is none). */
async function checkConfig(r: Report, o: HostOptions, facts: HostFacts): Promise<string | undefined> {
  let cfg: Table;
  try {
    cfg = parse(await readFile(o.containerdConfig, 'utf8')) as Table;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'does not exist (containerd runs on its defaults)' : `cannot be read: ${(e as Error).message.split('\n')[0]}`;
    r.fail(
      'containerd-config.proxy-plugin',
      `${o.containerdConfig} ${why}, so there is no [proxy_plugins.soci]`,
      `add [proxy_plugins.soci] type = "snapshot" address = "${DEFAULT_SNAPSHOTTER_ADDRESS}" to it (or pass --containerd-config), then restart containerd`,
    );
    return undefined;
  }
  const soci = table(table(cfg.proxy_plugins)?.soci);
  let address: string | undefined;
  if (!soci) {
    r.fail(
      'containerd-config.proxy-plugin',
      `no [proxy_plugins.soci] in ${o.containerdConfig}`,
      `add [proxy_plugins.soci] type = "snapshot" address = "${DEFAULT_SNAPSHOTTER_ADDRESS}", then restart containerd`,
    );
  } else if (soci.type !== 'snapshot' || typeof soci.address !== 'string' || !soci.address) {
    r.fail(
      'containerd-config.proxy-plugin',
      `[proxy_plugins.soci] in ${o.containerdConfig} has type "${String(soci.type ?? '')}" and address "${String(soci.address ?? '')}"`,
      'set type = "snapshot" and address to the snapshotter\'s socket',
    );
  } else {
    address = soci.address.replace(/^unix:\/\//, '');
    r.ok('containerd-config.proxy-plugin', `[proxy_plugins.soci] type "snapshot" at ${address}`);
  }

  const v3 = Number(cfg.version ?? 1) >= 3;
  const plugins = table(cfg.plugins);
  const cri = v3 ? table(plugins?.['io.containerd.cri.v1.images']) : table(table(plugins?.['io.containerd.grpc.v1.cri'])?.containerd);
  const where = v3 ? '[plugins."io.containerd.cri.v1.images"]' : '[plugins."io.containerd.grpc.v1.cri".containerd]';
  const snapshotter = typeof cri?.snapshotter === 'string' ? cri.snapshotter : 'overlayfs';
  facts.criSnapshotter = snapshotter;
  const annotationsOff = cri?.disable_snapshot_annotations !== false;
  if (snapshotter === 'soci') r.ok('containerd-config.cri-snapshotter', `CRI pulls with snapshotter "soci" (${where})`);
  else
    r.warn(
      'containerd-config.cri-snapshotter',
      `CRI pulls with snapshotter "${snapshotter}": Kubernetes pods are not lazy (nerdctl/ctr --snapshotter soci still are)`,
      `set snapshotter = "soci" in ${where} for pods`,
    );
  if (!annotationsOff) r.ok('containerd-config.snapshot-annotations', `disable_snapshot_annotations = false (${where})`);
  else if (snapshotter === 'soci')
    r.fail(
      'containerd-config.snapshot-annotations',
      `disable_snapshot_annotations is ${cri?.disable_snapshot_annotations === true ? 'true' : 'unset (default true)'}: CRI sends no image labels, so no pod layer can be lazy`,
      `set disable_snapshot_annotations = false in ${where}, then restart containerd`,
    );
  else
    r.warn(
      'containerd-config.snapshot-annotations',
      `disable_snapshot_annotations is ${cri?.disable_snapshot_annotations === true ? 'true' : 'unset (default true)'}`,
      `set disable_snapshot_annotations = false in ${where} before switching CRI to soci`,
    );
  return address;
}

/** containerd has the plugin loaded and reaches it: a Stat of a key that does not exist says NotFound. */
async function checkLoaded(r: Report, conn: ContainerdConnection): Promise<void> {
  try {
    await conn.unary('snapshots', 'Stat', { snapshotter: 'soci', key: 'soci-doctor-no-such-key' });
    r.ok('containerd.soci-plugin', 'containerd has the soci snapshotter loaded');
  } catch (e) {
    if (isSociError(e, 'ERR_NOT_FOUND')) {
      r.ok('containerd.soci-plugin', 'containerd has the soci snapshotter loaded and reaches it');
      return;
    }
    const msg = (e as Error).message;
    if (/not loaded/.test(msg))
      r.fail('containerd.soci-plugin', `containerd has no soci snapshotter loaded (${msg})`, 'restart containerd after adding [proxy_plugins.soci]');
    else r.fail('containerd.soci-plugin', `containerd cannot use the soci snapshotter: ${msg}`, "start soci-snapshotter-grpc at the plugin's address");
  }
}

async function checkSnapshotter(r: Report, address: string, facts: HostFacts): Promise<void> {
  const c = statusClient(address);
  try {
    const info = await c.info();
    facts.snapshotter = { ...info, address };
    const config = info.configPath ? `config ${info.configPath}` : 'default config';
    r.ok('snapshotter', `soci-snapshotter-grpc ${info.version} (pid ${info.pid}) answers at ${address}, root ${info.root}, ${config}`);
  } catch (e) {
    const code = (e as { code?: number }).code;
    if (code === 12 /* UNIMPLEMENTED */)
      r.warn(
        'snapshotter',
        `a snapshotter answers at ${address} but has no status service (AWS's soci-snapshotter-grpc?)`,
        "per-layer decisions need this project's snapshotter",
      );
    else r.fail('snapshotter', `nothing answers at ${address}`, 'start soci-snapshotter-grpc (or pass --snapshotter-address)');
    c.close();
    return;
  }
  c.close();
  const m = facts.snapshotter;
  if (!m.metricsAddress) {
    r.info('snapshotter.metrics', 'no metrics_address configured');
  } else if (m.metricsNetwork.startsWith('tcp')) {
    try {
      const res = await fetch(`http://${m.metricsAddress}/metrics`, { signal: AbortSignal.timeout(5000) });
      if (res.ok) r.ok('snapshotter.metrics', `metrics served at http://${m.metricsAddress}/metrics`);
      else r.fail('snapshotter.metrics', `http://${m.metricsAddress}/metrics answered ${res.status}`, 'check metrics_address');
      await res.body?.cancel();
    } catch (e) {
      r.fail('snapshotter.metrics', `http://${m.metricsAddress}/metrics: ${(e as Error).message}`, 'check metrics_address and metrics_network');
    }
  } else {
    r.info('snapshotter.metrics', `metrics on ${m.metricsNetwork} ${m.metricsAddress}`);
  }
}
