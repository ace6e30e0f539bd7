/**
 * A registry that ignores Range (answers 200 with the whole blob, as Nexus or a Harbor proxy cache
 * do) still gets the right bytes served through the mount, without a hang: each read takes its
 * window from the stream and closes the connection. The case is logged once per registry and
 * counted in soci_registry_range_ignored_total. Through the snapshotter's SOCI mounter, a real
 * registry behind a proxy that drops the Range header, and FUSE.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { collect, needs, recordingLogger, tempDir } from '../../harness/env.js';
import { mountTopLayer, pushIndexedImage, registryWithProxy } from '../../harness/indexed-image.js';
import { defaultConfig } from '../../src/snapshotter/config.js';
import { registry as metrics } from '../../src/snapshotter/metrics.js';
import { SociLayerMounter } from '../../src/snapshotter/soci-mounter.js';

const pexec = promisify(execFile);

async function ignoredCount(registry: string): Promise<number> {
  const m = new RegExp(`^soci_registry_range_ignored_total\\{registry="${registry.replace(/\./g, '\\.')}"\\} (\\d+)$`, 'm').exec(await metrics.metrics());
  return m ? Number(m[1]) : 0;
}

test('a registry that ignores Range: right bytes, no hang, one warning per registry, counted', {
  skip: needs({ root: true, tools: ['docker-registry', 'skopeo'] }),
  timeout: 120_000,
}, async (t) => {
  const { reg, client, proxy } = await registryWithProxy(t);
  const img = await pushIndexedImage(reg, client, 'norange/app');
  const root = await tempDir(t, 'soci-norange-');
  const blob = join(root, 'top.tar.gz');
  await writeFile(blob, await collect(client.fetchBlob(img.repo, img.top)));
  const expected = async (name: string) => (await pexec('tar', ['-xzOf', blob, name], { encoding: 'buffer', maxBuffer: 1 << 26 })).stdout;

  const config = defaultConfig();
  config.background_fetch.disable = true;
  const logger = recordingLogger();
  const mounter = new SociLayerMounter({ config, root, logger });
  try {
    proxy.add({ method: 'GET', path: `/blobs/${img.top}`, times: Number.POSITIVE_INFINITY, fault: { kind: 'dropRange' } });
    const dir = join(root, 'm');
    await mkdir(dir);
    await mountTopLayer(mounter, dir, proxy.host, img);
    for (const name of ['layer1/random.bin', 'layer1/text.txt']) {
      assert.ok((await readFile(join(dir, name))).equals(await expected(name)), `${name} served with the right bytes`);
    }
    const dropped = proxy.requests.filter((r) => r.fault === 'dropRange');
    assert.ok(dropped.length >= 2, `span reads went through the Range-dropping proxy (${dropped.length})`);
    assert.ok(
      dropped.every((r) => r.headers.range),
      'the mounter asked for ranges',
    );
    assert.equal(await ignoredCount(proxy.host), dropped.length, 'every ignored Range read is counted');
    const warnings = logger.lines.filter((l) => l.level === 'warn' && l.msg.includes('ignores Range'));
    assert.equal(warnings.length, 1, 'logged once for the registry');
    assert.equal(warnings[0]!.fields.registry, proxy.host);
  } finally {
    await mounter.close();
  }
});
