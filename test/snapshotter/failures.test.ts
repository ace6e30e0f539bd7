/**
 * Failures of lazily loaded layers are visible: the snapshotter's SOCI mounter against a real
 * registry (behind a fault proxy) and FUSE. For each of a zTOC that lies about where a file's bytes
 * are, a registry that corrupts every Range response, one that answers 500, and one that stalls
 * past the read deadline, a reader gets EIO, the log has ONE line for the failure (however often it
 * is read again) naming the layer and the span or file, and soci_fs_operation_count counts every
 * occurrence.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { needs, recordingLogger, tempDir } from '../../harness/env.js';
import { mountTopLayer, pushIndexedImage, type IndexedImage, registryWithProxy } from '../../harness/indexed-image.js';
import { defaultConfig } from '../../src/snapshotter/config.js';
import { registry as metrics } from '../../src/snapshotter/metrics.js';
import { SociLayerMounter } from '../../src/snapshotter/soci-mounter.js';

const pexec = promisify(execFile);

/** soci_fs_operation_count for one operation type and layer (0 when absent). */
async function count(operation: string, layer: string): Promise<number> {
  const text = await metrics.metrics();
  const m = new RegExp(`^soci_fs_operation_count\\{operation_type="${operation}",layer="${layer}"\\} (\\d+)$`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

test('layer failures: one log line per span or file, every occurrence counted (lying zTOC, corrupt, 500, stalled registry)', {
  skip: needs({ root: true, tools: ['docker-registry', 'skopeo'] }),
  timeout: 180_000,
}, async (t) => {
  const { reg, client, proxy } = await registryWithProxy(t);
  const lie = await pushIndexedImage(reg, client, 'fail/lie', (z) => {
    // text.txt's data said to start one block later than it does: its bytes would be off by 512.
    const e = z.toc.find((x) => x.name.toString() === 'layer1/text.txt')!;
    e.uncompressedOffset += 512;
  });
  const flip = await pushIndexedImage(reg, client, 'fail/flip');
  const e500 = await pushIndexedImage(reg, client, 'fail/e500');
  const stall = await pushIndexedImage(reg, client, 'fail/stall');
  const forever = 1_000_000;
  proxy.add({ path: `/blobs/${flip.top}`, times: forever, fault: { kind: 'flip', offset: 100 } });
  proxy.add({ path: `/blobs/${e500.top}`, times: forever, fault: { kind: 'status', status: 500 } });
  proxy.add({ path: `/blobs/${stall.top}`, times: forever, fault: { kind: 'stall', afterBytes: -1 } });

  const config = defaultConfig();
  config.blob.max_retries = 0; // the span manager's own retries are enough here
  config.blob.max_span_verification_retries = 2; // AWS's key: bytes that fail their digest are fetched 3 times
  config.blob.read_deadline_sec = 2;
  config.background_fetch.disable = true;
  const root = await tempDir(t, 'soci-failures-');
  const logger = recordingLogger();
  const lines = logger.lines;
  const mounter = new SociLayerMounter({ config, root, logger });
  // closed before the temp dir's cleanup (which would meet busy mountpoints), also when an assertion fails
  try {
    const mountTop = async (img: IndexedImage) => {
      const dir = join(root, img.repo.replace('/', '-'));
      await mkdir(dir);
      await mountTopLayer(mounter, dir, proxy.host, img);
      return dir;
    };
    /** cat a file of the mount three times: EIO each time */
    const readFails = async (dir: string, file: string) => {
      for (let i = 0; i < 3; i++) {
        const r = await pexec('cat', [join(dir, file)], { timeout: 30_000 }).then(
          () => 'read fine',
          (e: { stderr: string }) => e.stderr,
        );
        assert.match(r, /Input\/output error/, `${dir}/${file} read ${i + 1}`);
      }
    };
    const linesFor = (layer: string, msg: string) => lines.filter((l) => l.fields.layer === layer && l.msg === msg);

    // A lying zTOC: the header check catches it before a byte is served; one error line naming the
    // entry and what differed; the mismatch is final (not re-checked, not re-logged).
    const lieDir = await mountTop(lie);
    await readFails(lieDir, 'layer1/text.txt');
    const lied = linesFor(lie.top, 'zTOC entry does not match the layer');
    assert.equal(lied.length, 1, JSON.stringify(lines));
    assert.equal(lied[0]!.level, 'error');
    assert.equal(lied[0]!.fields.entry, 'layer1/text.txt');
    assert.match(String(lied[0]!.fields.error), /data starts at \d+, the zTOC says \d+/);
    assert.equal(await count('ztoc_entry_mismatch_count', lie.top), 1);
    assert.ok((await count('fuse_file_read_failure_count', lie.top)) >= 3);
    assert.equal(await count('fuse_failure_state', lie.top), 1, 'at most once per 5 minutes');
    // the honest file of the same layer still reads
    assert.equal((await pexec('cat', [join(lieDir, 'layer1/random.bin')], { encoding: 'buffer' })).stdout.length, 32 * 1024);

    // Every Range response corrupted: each attempt counted, one error line per span.
    const flipDir = await mountTop(flip);
    await readFails(flipDir, 'layer1/random.bin');
    const bad = linesFor(flip.top, 'span verification failed');
    assert.ok(bad.length >= 1, JSON.stringify(lines));
    assert.equal(new Set(bad.map((l) => l.fields.span)).size, bad.length, 'one line per span');
    assert.ok(bad.every((l) => l.level === 'error' && /attempt \d of 3: compressed bytes \d+-\d+ from the registry do not match/.test(String(l.fields.error))));
    const verifications = await count('span_verification_failure_count', flip.top);
    assert.ok(verifications >= 3 * 3, `3 reads × 3 attempts at least, counted ${verifications}`);
    assert.ok(verifications > bad.length, 'more occurrences counted than lines written');
    assert.equal(linesFor(flip.top, 'layer read failed').length, 1, 'one line for the file that got EIO');

    // 500 on every Range request: warnings, one per span, every attempt counted.
    const e500Dir = await mountTop(e500);
    await readFails(e500Dir, 'layer1/random.bin');
    const net = linesFor(e500.top, 'registry fetch failed');
    assert.ok(net.length >= 1 && net.every((l) => l.level === 'warn' && /500/.test(String(l.fields.error))), JSON.stringify(net));
    assert.equal(new Set(net.map((l) => l.fields.span)).size, net.length);
    assert.ok((await count('remote_registry_fetch_failure_count', e500.top)) >= 3 * 3);

    // A registry that never answers: the reader gets EIO at the read deadline, and it is said.
    const stallDir = await mountTop(stall);
    const t0 = performance.now();
    await readFails(stallDir, 'layer1/random.bin');
    const late = linesFor(stall.top, 'read deadline exceeded');
    assert.ok(late.length >= 1 && late.every((l) => l.level === 'warn' && /did not finish within 2000 ms/.test(String(l.fields.error))), JSON.stringify(late));
    assert.ok((await count('read_deadline_exceeded_count', stall.top)) >= 1);
    t.diagnostic(`3 stalled reads took ${Math.round(performance.now() - t0)} ms`);

    // Nothing of this reached the healthy parts of the log: every warning and error names one of these layers.
    const layers = new Set([lie.top, flip.top, e500.top, stall.top]);
    const problems = lines.filter((l) => l.level === 'warn' || l.level === 'error');
    assert.ok(
      problems.length > 0 && problems.every((l) => layers.has(String(l.fields.layer))),
      JSON.stringify(problems.filter((l) => !layers.has(String(l.fields.layer)))),
    );
  } finally {
    await mounter.close();
  }
});
