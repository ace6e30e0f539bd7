/**
 * AWS's layer availability check ([blob] valid_interval, check_always): before the snapshotter hands
 * out mounts, the SOCI mounter probes each lazily mounted layer that is not wholly fetched with a
 * 2-byte Range request, at most once per valid_interval (every time with check_always), against a
 * real registry behind a fault proxy, over FUSE. A failing registry makes the check fail; the
 * snapshotter turns that into UNAVAILABLE (its own test).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { needs, tempDir } from '../../harness/env.js';
import { mountTopLayer, pushIndexedImage, registryWithProxy } from '../../harness/indexed-image.js';
import { defaultConfig } from '../../src/snapshotter/config.js';
import { SociLayerMounter } from '../../src/snapshotter/soci-mounter.js';
import { silentLogger } from '../../src/logger.js';

const skip = needs({ root: true, tools: ['docker-registry', 'skopeo'] });

test('check: a 2-byte probe per valid_interval, or on every call with check_always; a failing registry fails it', { skip, timeout: 120_000 }, async (t) => {
  const { reg, client, proxy } = await registryWithProxy(t);
  const img = await pushIndexedImage(reg, client, 'avail/app');
  const probes = () => proxy.requests.filter((r) => r.path.includes(`/blobs/${img.top}`) && r.headers.range === 'bytes=0-1').length;

  // closed before the hooks remove the temp dirs (a mounted dir cannot be removed)
  const mounters: SociLayerMounter[] = [];
  try {
    await checks();
  } finally {
    for (const m of mounters) await m.close();
  }

  async function checks() {
    const mountWith = async (edit: (c: ReturnType<typeof defaultConfig>) => void) => {
      const config = defaultConfig();
      config.background_fetch.disable = true;
      config.blob.max_retries = 1;
      edit(config);
      const root = await tempDir(t, 'soci-avail-');
      const mounter = new SociLayerMounter({ config, root, logger: silentLogger });
      mounters.push(mounter);
      const dir = join(root, 'layer');
      await mkdir(dir);
      await mountTopLayer(mounter, dir, proxy.host, img);
      return { mounter, dir };
    };

    // AWS's defaults: the mount itself counts as a check, so none for 60 s
    const lazy = await mountWith(() => undefined);
    await lazy.mounter.check(lazy.dir);
    await lazy.mounter.check(lazy.dir);
    assert.equal(probes(), 0, 'within valid_interval: no probe');
    await assert.rejects(lazy.mounter.check(join(lazy.dir, 'elsewhere')), /no layer is mounted/);

    // check_always: a probe every time, and a failing registry fails the check
    const always = await mountWith((c) => (c.blob.check_always = true));
    await always.mounter.check(always.dir);
    await always.mounter.check(always.dir);
    assert.equal(probes(), 2, 'one probe per check');
    proxy.add({ path: `/blobs/${img.top}`, times: 1_000_000, fault: { kind: 'status', status: 500 } });
    await assert.rejects(always.mounter.check(always.dir), /cannot be fetched: .*HTTP 500/);
    // and a layer within its interval is not probed even while the registry fails
    await lazy.mounter.check(lazy.dir);
    proxy.clear();
    await always.mounter.check(always.dir);
  }
});
