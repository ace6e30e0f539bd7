/**
 * AWS's snapshotter (v0.16.1, built by scripts/install-test-tools.sh) reads the prefetch artifacts
 * our `soci convert --prefetch-file` writes: with `[prefetch] enable = true` and background fetch
 * off, a CRI pull of our converted image makes it fetch the layer's prefetch spans at mount (Range
 * GETs of the layer blob, seen by a proxy in front of the registry), and a pull of the same image
 * converted without prefetch files fetches no span (only AWS's 2-byte availability probe and 10-byte header read).
 * containerd 2.2, AWS's daemon as the `soci` proxy plugin.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { buildAppImage } from '../../harness/app-image.js';
import { CONTAINERD2_BIN, removeTree, startContainerd } from '../../harness/containerd.js';
import { criPull } from '../../harness/cri.js';
import { needs, newTempDir, waitFor } from '../../harness/env.js';
import { AWS_SNAPSHOTTER, startAwsSnapshotter } from '../../harness/aws-snapshotter.js';
import { startRegistry } from '../../harness/registry.js';
import { sociOn } from '../../harness/store-soci.js';
import { startFaultProxy } from '../../harness/fault-proxy.js';

const exec = promisify(execFile);
const skip = needs({ root: true, tools: ['runc', 'docker-registry', 'skopeo', AWS_SNAPSHOTTER, join(CONTAINERD2_BIN, 'containerd')] });

test("AWS's snapshotter prefetches the spans of our prefetch artifacts at mount", { skip, timeout: 600_000 }, async (t) => {
  const dir = await newTempDir('soci-aws-prefetch-');
  const reg = await startRegistry(t);
  const proxy = await startFaultProxy(t, reg.host);
  // Two images with layers of their own: a layer already unpacked is never mounted again.
  const sources: string[] = [];
  for (const seed of [41, 42]) {
    const app = buildAppImage(join(dir, `app${seed}`), { bulkMb: 16, seed });
    sources.push(`${proxy.host}/library/app${seed}:latest`);
    await exec('skopeo', ['copy', '--dest-tls-verify=false', `oci:${app.dir}:latest`, `docker://${reg.host}/library/app${seed}:latest`]);
  }

  // AWS's daemon, private root and socket; stopped by PID, its FUSE mounts removed with its dir.
  const ctdAddress = join(dir, 'containerd.sock');
  t.after(() => removeTree(dir));
  const aws = await startAwsSnapshotter(t, {
    dir,
    containerdAddress: ctdAddress,
    config: '[prefetch]\nenable = true\n[background_fetch]\ndisable = true\n',
    logLevel: 'debug',
  });
  const logs = () => aws.logs();
  const address = aws.address;

  const cd = await startContainerd(t, { version: '2.2', snapshotterSocket: address, address: ctdAddress, cri: true, plainHttpRegistries: [proxy.host] });
  const soci = sociOn(cd, join(dir, 'soci-root'));
  const convertAndPush = async (src: string, dst: string, extra: string[]) =>
    /^layer (sha256:[0-9a-f]{64}) -> ztoc /m.exec(await soci.convertAndPush(src, dst, ['--min-layer-size', String(1 << 20), ...extra]))![1]!;
  // Span reads: Range GETs of more than 1 KiB (AWS also probes 2 bytes for availability, 10 for the gzip header).
  const spanGets = (repo: string, layer: string) =>
    proxy.requests.filter((r) => {
      const m = /^bytes=(\d+)-(\d+)$/.exec(String(r.headers.range ?? ''));
      return r.method === 'GET' && r.path === `/v2/${repo}/blobs/${layer}` && m && Number(m[2]) - Number(m[1]) + 1 > 1024;
    }).length;

  const plain = `${proxy.host}/library/app-plain:v1`;
  const withPrefetch = `${proxy.host}/library/app-prefetch:v1`;
  const plainLayer = await convertAndPush(sources[0]!, plain, []);
  const layer = await convertAndPush(sources[1]!, withPrefetch, ['--prefetch-file', 'bin/busybox', '--prefetch-file', 'www/index.html']);

  await criPull(cd.address, plain);
  await new Promise((r) => setTimeout(r, 3000));
  assert.equal(
    spanGets('library/app-plain', layer),
    0,
    `no span is fetched at mount without a prefetch artifact: ${JSON.stringify(proxy.requests.filter((r) => r.path.includes(plainLayer)).map((r) => [r.method, r.path, r.headers.range]))}`,
  );

  await criPull(cd.address, withPrefetch);
  await waitFor(() => spanGets('library/app-prefetch', layer) > 0, 30_000, 200).catch(() => undefined);
  assert.ok(spanGets('library/app-prefetch', layer) > 0, `AWS's snapshotter fetched the prefetch spans at mount:\n${logs().slice(-3000)}`);
});
