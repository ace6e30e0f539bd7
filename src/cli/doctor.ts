/**
 * `soci doctor [IMAGE]` (ours): why is this image not lazy, answered end to end. Checks the host
 * (containerd, its config, the snapshotter), then for IMAGE the index discovery, each layer, the
 * registry's behaviour on a real blob, credentials, and what happened to a pulled copy. One line
 * per check (ok / warn / fail / info, what was seen, the fix), or `--json`. Exit 1 when a check
 * fails. A check that cannot run is itself a fail line, never a stack trace.
 */
import { Command } from 'commander';
import { DEFAULT_CONTAINERD_CONFIG, checkHost } from '../doctor/host.js';
import { checkDiscovery, checkLayers, checkPulled, resolveImage, type ImageFacts } from '../doctor/image.js';
import { checkAuth, checkRanges, checkReferrers } from '../doctor/registry.js';
import { Report, formatCheck } from '../doctor/report.js';
import { isSociError } from '../errors.js';
import { parseReference } from '../oci/reference.js';
import type { LayerDecision } from '../snapshotter/decisions.js';
import { statusClient } from '../snapshotter/status-service.js';
import { parseSize } from './common.js';
import { out, printJson } from './output.js';
import { addRegistryFlags, registryClient, type RegistryFlags } from './registry-opts.js';
import { globals } from './session.js';

type DoctorFlags = RegistryFlags & {
  containerdConfig: string;
  snapshotterAddress?: string;
  json: boolean;
  sociIndexDigest?: string;
  minLayerSize: number;
};

export function doctorCommand(): Command {
  return addRegistryFlags(new Command('doctor'))
    .description('check why lazy loading does or does not happen: containerd, the snapshotter, and optionally an image (ours)')
    .argument('[image_ref]', 'an image to check: index discovery, layers, registry behaviour, credentials, what a pull did')
    .option('--containerd-config <path>', "containerd's config file", DEFAULT_CONTAINERD_CONFIG)
    .option('--snapshotter-address <socket>', "the snapshotter's socket (default: the config's [proxy_plugins.soci] address)")
    .option('--soci-index-digest <digest>', 'check this SOCI index instead of discovering one')
    .option('--min-layer-size <bytes>', 'the min-layer-size the image was converted with', parseSize('min-layer-size'), 10 << 20)
    .option('--json', 'print the checks as JSON', false)
    .action(async (image: string | undefined, o: DoctorFlags, cmd: Command) => {
      const g = globals(cmd);
      const r = new Report();
      const host = await checkHost(r, {
        containerdAddress: g.address!,
        namespace: g.namespace!,
        containerdConfig: o.containerdConfig,
        ...(o.snapshotterAddress ? { snapshotterAddress: o.snapshotterAddress } : {}),
      });
      try {
        if (image) await checkImage(r, image, o, Boolean(g.debug), host);
      } finally {
        host.containerd?.close();
      }
      if (o.json) printJson({ ok: !r.failed, checks: r.checks });
      else for (const c of r.checks) out(formatCheck(c));
      if (r.failed) process.exitCode = 1;
    });
}

async function checkImage(r: Report, image: string, o: DoctorFlags, debug: boolean, host: Awaited<ReturnType<typeof checkHost>>): Promise<void> {
  const ref = parseReference(image);
  const client = registryClient(ref.registry, o, debug);
  // One failing step is a fail line; the steps after it still run where they can.
  const step = async <T>(id: string, fn: () => Promise<T>): Promise<T | undefined> => {
    try {
      return await fn();
    } catch (e) {
      if (isSociError(e, 'ERR_USAGE')) throw e;
      r.fail(id, (e as Error).message.split('\n')[0]!, isSociError(e, 'ERR_AUTH') ? 'see registry.auth' : 'see the line above');
      return undefined;
    }
  };
  let needsAuth = false;
  try {
    const res = await fetch(`${client.origin}/v2/`, { signal: AbortSignal.timeout(10_000) });
    needsAuth = res.status === 401;
    await res.body?.cancel();
  } catch (e) {
    r.fail('registry', `cannot reach ${client.origin}: ${(e as Error).message}`, 'check the network, or pass --plain-http / --insecure-registry');
    return;
  }
  await checkAuth(r, ref.registry, needsAuth, Boolean(o.user || o.refresh));
  const img: ImageFacts | undefined = await step('image', () => resolveImage(r, client, ref));
  if (!img) return;
  const v1 = host.snapshotter?.v1 ?? false;
  const index = await step('index', () => checkDiscovery(r, client, ref, img, { v1, ...(o.sociIndexDigest ? { explicitDigest: o.sociIndexDigest } : {}) }));
  await step('layers', () => checkLayers(r, client, ref.repository, img, index, o.minLayerSize));
  if (img.probeBlob) await step('registry.range', () => checkRanges(r, client, ref.repository, img.probeBlob!));
  await step('registry.referrers', () => checkReferrers(r, client, ref.repository, img.manifestDigest));
  if (host.containerd) {
    const config = await readConfig(client, ref.repository, img.manifest.config.digest).catch(() => undefined);
    let decisions: LayerDecision[] | undefined;
    if (host.snapshotter) {
      const s = statusClient(host.snapshotter.address);
      decisions = await s.layers(img.manifestDigest).catch(() => undefined);
      s.close();
    }
    await step('pulled', () => checkPulled(r, host.containerd!, ref.string(), img, config, decisions));
  }
  await client.close();
}

/** The image config, digest-verified (fetchBlob checks the digest at the end). */
async function readConfig(client: ReturnType<typeof registryClient>, repo: string, digest: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of client.fetchBlob(repo, digest)) parts.push(c);
  return Buffer.concat(parts);
}
