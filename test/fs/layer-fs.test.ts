/**
 * The lazy layer filesystem mounted over real /dev/fuse, against a local-file BlobSource: the whole
 * tree as seen through the mount (walked by python in a child process) equals the tar's content
 * (type, mode, uid/gid, mtime, symlink target, hardlink inode sharing, nlink, xattrs, whiteouts as
 * char 0:0, opaque dirs), and the state file reports fetch progress.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { needs } from '../../harness/env.js';
import { compareDumps, isAscii, scratch } from './util.js';
import { STANDARD_LAYER_SPECS, fileBytes, makeLayer } from '../../harness/fixtures.js';
import { buildZtoc } from '../../src/ztoc/index.js';
import { SpanCache, fileBlobSource, mountLayer, type LayerMount } from '../../src/fs/index.js';

const pexec = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));
const DUMP = join(here, 'tree_dump.py');

type Dump = Record<string, Record<string, unknown>>;

async function dump(kind: 'walk' | 'tar', path: string): Promise<Dump> {
  const { stdout } = await pexec('python3', [DUMP, kind, path], { maxBuffer: 1 << 28, timeout: 120_000 });
  return JSON.parse(stdout) as Dump;
}

const fuseUsesLatin1 = async () => /latin1/.test(await readFile(join(here, '../../src/fuse/protocol.ts'), 'utf8'));

for (const [specName, variant, spanSize] of [
  ['pax-features', 'gzip-6', 65536],
  ['gnu-features', 'multi', 32768],
  ['gnutar-tree', 'pigz', 100000],
  ['pax-features', 'tar', 65536],
] as const) {
  test(`layer fs over FUSE matches the tar: ${specName} (${variant}, span ${spanSize})`, {
    skip: needs({ root: true, tools: ['python3', 'pigz'] }),
    timeout: 120_000,
  }, async (t) => {
    const { dir, defer } = await scratch(t);
    const spec = STANDARD_LAYER_SPECS.find((s) => s.name === specName)!;
    const layer = await makeLayer(dir, spec);
    const gz = variant === 'tar' ? layer.tarPath : layer.variants[variant];
    const ztoc = await buildZtoc(fileBytes(gz), { compression: variant === 'tar' ? 'uncompressed' : 'gzip', spanSize });
    const blob = await fileBlobSource(gz);
    const mnt = join(dir, 'mnt');
    await mkdir(mnt);
    const cache = new SpanCache({ dir: join(dir, 'cache'), maxBytes: 64 << 20 });
    const digest = `sha256:${'ab'.repeat(32)}`;
    const m: LayerMount = await mountLayer({
      ztoc,
      layer: { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest, size: blob.size },
      blob,
      mountpoint: mnt,
      cache,
      options: { readTimeoutMs: 20_000 },
    });
    defer(() => m.unmount());

    // State file before any read: nothing fetched; it is reachable but not listed.
    const state0 = JSON.parse((await pexec('cat', [join(mnt, '.soci-snapshotter', `${digest}.json`)])).stdout) as Record<string, number>;
    assert.equal(state0.fetchedSize, 0);
    assert.equal(state0.size, blob.size);
    const ls = (await pexec('ls', ['-a', mnt])).stdout.split('\n');
    assert.ok(!ls.includes('.soci-snapshotter'), 'state dir must not be listed');

    const latin1 = await fuseUsesLatin1();
    const skip = latin1 ? undefined : (p: string) => !isAscii(p);
    if (!latin1) t.diagnostic('FUSE names are UTF-8 (src/fuse): non-ASCII names excluded from the comparison');
    const [got, want] = await Promise.all([dump('walk', mnt), dump('tar', layer.tarPath)]);
    const diffs = compareDumps(got, want, skip ? { skipNames: skip } : {});
    assert.deepEqual(diffs, []);
    assert.ok(Object.values(want).some((w) => w.whiteout) || specName === 'gnutar-tree', 'fixture has whiteouts');

    // Everything was read: the whole layer has been fetched, each span exactly once.
    const st = m.stats();
    assert.equal(st.fetchFailures, 0);
    assert.ok(st.spansFetched <= st.totalSpans, `spans fetched ${st.spansFetched} > ${st.totalSpans}`);
    const state1 = JSON.parse((await pexec('cat', [join(mnt, '.soci-snapshotter', `${digest}.json`)])).stdout) as Record<string, number>;
    assert.equal(state1.fetchedSize, st.fetchedSize);
    assert.ok(state1.fetchedPercent! > 0);
  });
}
