/**
 * AWS's custom request headers: snapshot labels containerd.io/snapshot/remote/soci.header.<name> on
 * Prepare become request headers on every registry request made for the layer (index, zTOC, Range
 * reads), but only for names listed in [resolver] custom_headers; reserved, invalid and unlisted
 * names are dropped with a warning. Through the snapshotter's SOCI mounter, a real registry behind a
 * recording proxy, and FUSE.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { needs, recordingLogger, tempDir } from '../../harness/env.js';
import { mountTopLayer, pushIndexedImage, registryWithProxy } from '../../harness/indexed-image.js';
import { defaultConfig } from '../../src/snapshotter/config.js';
import { customHeadersFromLabels } from '../../src/snapshotter/custom-headers.js';
import { LABELS } from '../../src/snapshotter/labels.js';

const P = LABELS.customHeaderPrefix;
import { SociLayerMounter } from '../../src/snapshotter/soci-mounter.js';

const pexec = promisify(execFile);

test('custom headers from labels: allowlisted names only (case-insensitive); reserved, empty, invalid dropped with a warning', () => {
  const { headers: h, dropped } = customHeadersFromLabels(
    {
      [`${P}X-Request-Id`]: 'abc',
      [`${P}x-tenant`]: 't1',
      [`${P}Authorization`]: 'evil',
      [`${P}range`]: 'bytes=0-',
      [P]: 'x',
      [`${P}x-empty`]: '',
      [`${P}bad name`]: 'v',
      [`${P}x-ctl`]: 'a\nb',
      [`${P}x-other`]: 'o',
      'containerd.io/snapshot/cri.image-ref': 'r',
    },
    ['x-request-id', 'X-TENANT', 'x-empty', 'x-ctl', 'bad name'],
  );
  const warned = dropped.map((d) => `${d.header}: ${d.reason}`);
  assert.deepEqual(h, { 'x-request-id': 'abc', 'x-tenant': 't1' });
  assert.equal(warned.length, 7, warned.join('\n'));
  assert.ok(warned.some((w) => w.startsWith('Authorization: ignoring reserved')));
  assert.ok(warned.some((w) => w.startsWith('x-other: ignoring custom header not listed')));
});

test('custom headers reach every registry request of the layer: index, zTOC and Range reads', {
  skip: needs({ root: true, tools: ['docker-registry', 'skopeo'] }),
  timeout: 120_000,
}, async (t) => {
  const { reg, client, proxy } = await registryWithProxy(t);
  const img = await pushIndexedImage(reg, client, 'headers/app');
  const config = defaultConfig();
  config.background_fetch.disable = true;
  config.resolver.custom_headers = ['X-Request-Id'];
  const root = await tempDir(t, 'soci-headers-');
  const logger = recordingLogger();
  const mounter = new SociLayerMounter({ config, root, logger });
  try {
    const dir = join(root, 'm');
    await mkdir(dir);
    proxy.clear();
    await mountTopLayer(mounter, dir, proxy.host, img, { [`${P}x-request-id`]: 'req-42', [`${P}x-other`]: 'nope', [`${P}authorization`]: 'Basic ZXZpbA==' });
    await pexec('cat', [join(dir, 'layer1', 'random.bin')]);
    const seen = proxy.requests.filter((r) => r.path.startsWith('/v2/headers/app/'));
    const index = seen.filter((r) => r.path.includes(`/manifests/${img.indexDigest}`));
    const ztoc = seen.filter((r) => r.path.includes(`/blobs/sha256:${img.ztocHex}`));
    const ranges = seen.filter((r) => r.path.includes(`/blobs/${img.top}`) && r.headers.range);
    assert.ok(index.length >= 1 && ztoc.length >= 1 && ranges.length >= 1, JSON.stringify(seen.map((r) => r.path)));
    for (const r of [...index, ...ztoc, ...ranges]) {
      assert.equal(r.headers['x-request-id'], 'req-42', `${r.method} ${r.path}`);
      assert.equal(r.headers['x-other'], undefined);
      assert.notEqual(r.headers.authorization, 'Basic ZXZpbA==');
    }
    assert.deepEqual(
      logger.lines
        .filter((l) => l.level === 'warn')
        .map((l) => l.fields.header)
        .sort(),
      ['authorization', 'x-other'],
    );
  } finally {
    await mounter.close();
  }
});
