/**
 * AWS's fuse_metrics_emit_wait_duration_sec and [background_fetch] emit_metric_period_sec, through
 * the snapshotter's SOCI mounter (real registry, FUSE): an image's FUSE operation counts appear in
 * soci_fs_image_operation_count_key under AWS's operation names once the wait is over (not before),
 * with an info line each; the background fetcher's queue size is emitted every period.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { needs, recordingLogger, tempDir } from '../../harness/env.js';
import { mountTopLayer, pushIndexedImage, registryWithClient } from '../../harness/indexed-image.js';
import { defaultConfig } from '../../src/snapshotter/config.js';
import { registry as metrics } from '../../src/snapshotter/metrics.js';
import { SociLayerMounter } from '../../src/snapshotter/soci-mounter.js';

const pexec = promisify(execFile);

async function imageCount(op: string, image: string): Promise<number | undefined> {
  const m = new RegExp(`^soci_fs_image_operation_count_key\\{operation_type="${op.replace('.', '\\.')}",image="${image}"\\} (\\d+)$`, 'm').exec(
    await metrics.metrics(),
  );
  return m ? Number(m[1]) : undefined;
}

test('per-image FUSE operation counts after fuse_metrics_emit_wait_duration_sec; queue size every emit_metric_period_sec', {
  skip: needs({ root: true, tools: ['docker-registry', 'skopeo'] }),
  timeout: 120_000,
}, async (t) => {
  const { reg, client } = await registryWithClient(t);
  const root = await tempDir(t, 'soci-image-metrics-');
  const img = await pushIndexedImage(reg, client, 'metrics/app');
  const config = defaultConfig();
  config.fuse_metrics_emit_wait_duration_sec = 2;
  config.background_fetch.emit_metric_period_sec = 1;
  const logger = recordingLogger();
  const mounter = new SociLayerMounter({ config, root: join(root, 'r'), logger });
  try {
    const dir = join(root, 'm');
    await mkdir(dir);
    await mountTopLayer(mounter, dir, reg.host, img);
    await pexec('cat', [join(dir, 'layer1', 'text.txt')]);
    assert.equal(await imageCount('file.Read', img.manifestDigest), undefined, 'nothing before the wait is over');
    await sleep(2500);
    assert.ok((await imageCount('file.Read', img.manifestDigest))! >= 1);
    assert.ok((await imageCount('node.Lookup', img.manifestDigest))! >= 2, 'layer1, then text.txt');
    assert.equal(await imageCount('node.Readlink', img.manifestDigest), 0, 'every AWS operation is emitted, 0 when none');
    assert.ok(
      logger.lines.some((l) => l.level === 'info' && l.msg.startsWith(`fuse operation count for image ${img.manifestDigest}: file.Read = `)),
      logger.lines.map((l) => l.msg).join('\n'),
    );
    assert.notEqual(await imageCount('background_fetch_work_queue_size', ''), undefined, 'queue size emitted');
    // AWS's soci_fs_bytes_served: every byte the reads were given
    const served = new RegExp(`^soci_fs_bytes_served\\{operation_type="synchronous_bytes_served",layer="${img.top}"\\} (\\d+)$`, 'm').exec(
      await metrics.metrics(),
    );
    assert.ok(served && Number(served[1]) > 0, 'bytes served counted');
  } finally {
    await mounter.close();
  }
});
