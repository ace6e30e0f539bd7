/**
 * Golden zTOC bytes: AWS's own soci CLI (`aws-soci convert --standalone`, built by
 * scripts/install-test-tools.sh) indexes an OCI layout holding every standard fixture layer in
 * every compression flavour; our buildZtoc + marshalZtoc must produce the identical bytes (hence
 * the identical digest) for each layer, with both compression engines.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import { join } from 'node:path';
import { needs, tempDir } from '../../harness/env.js';
import { GZIP_VARIANTS, fileBytes, makeStandardLayers, paxPayload, rawHeader, rawTar } from '../../harness/fixtures.js';
import { gzipSync } from 'node:zlib';
import { buildZtoc, marshalZtoc, unmarshalZtoc } from '../../src/ztoc/index.js';
import { nativeAvailable } from '../../src/compression/index.js';
import { isSociError } from '../../src/errors.js';
import { digestOf, sha256Hex } from '../../src/oci/digest.js';
import { writeLayout } from '../../harness/layout.js';

const AWS = `${process.env.SOCI_TEST_TOOLS ?? '/opt/soci-test-tools/bin'}/aws-soci`;
const skip = needs({ tools: [AWS, 'python3', 'pigz'] });
const SPAN = 65536;

/** A minimal single-image OCI layout whose layers are the given blobs. */
function layoutOf(dir: string, layers: Array<{ bytes: Buffer; gzip: boolean }>): void {
  const mediaType = (gzip: boolean) => `application/vnd.oci.image.layer.v1.tar${gzip ? '+gzip' : ''}`;
  // aws-soci convert --standalone never reads diff_ids, and some fixture gzips do not inflate cleanly.
  const descs = layers.map((l) => ({ mediaType: mediaType(l.gzip), diffId: digestOf(l.bytes), bytes: l.bytes }));
  writeLayout(dir, [{ layers: descs, config: {} }]);
}

/** Runs aws-soci over a layout of these layers; returns layer sha256 hex → AWS zTOC bytes. */
function awsZtocs(dir: string, layers: Array<{ bytes: Buffer; gzip: boolean }>): Map<string, Buffer> {
  const input = join(dir, 'layout');
  layoutOf(input, layers);
  mkdirSync(join(dir, 'aws-root'));
  const out = execFileSync(
    AWS,
    [
      '--root',
      join(dir, 'aws-root'),
      'convert',
      '--standalone',
      '--format',
      'oci-dir',
      '--min-layer-size',
      '0',
      '--span-size',
      String(SPAN),
      input,
      join(dir, 'aws-out'),
    ],
    {
      env: { ...process.env, TZ: 'UTC' },
      maxBuffer: 1 << 24,
    },
  ).toString();
  const res = new Map<string, Buffer>();
  for (const m of out.matchAll(/layer sha256:([0-9a-f]{64}) -> ztoc sha256:([0-9a-f]{64})/g)) {
    res.set(m[1]!, readFileSync(join(dir, 'aws-out', 'blobs', 'sha256', m[2]!)));
  }
  assert.equal(res.size, new Set(layers.map((l) => sha256Hex(l.bytes))).size, `aws-soci indexed ${res.size} of ${layers.length} layers:\n${out}`);
  return res;
}

test('golden: our zTOCs are byte-identical to AWS soci for every fixture layer and gzip flavour', { skip, timeout: 300_000 }, async (t) => {
  const dir = await tempDir(t, 'soci-ztoc-golden-');
  const layers = await makeStandardLayers(dir);
  const blobs: Array<{ path: string; gzip: boolean; label: string }> = [];
  for (const l of layers) {
    blobs.push({ path: l.tarPath, gzip: false, label: `${l.name}.tar` });
    for (const v of GZIP_VARIANTS) blobs.push({ path: l.variants[v], gzip: true, label: `${l.name}.${v}` });
  }
  const ztocOf = awsZtocs(
    dir,
    blobs.map((b) => ({ bytes: readFileSync(b.path), gzip: b.gzip })),
  );
  const engines = nativeAvailable() ? (['native', 'js'] as const) : (['js'] as const);
  for (const b of blobs) {
    const golden = ztocOf.get(sha256Hex(readFileSync(b.path)))!;
    assert.ok(golden, `${b.label}: aws-soci made no zTOC`);
    for (const engine of engines) {
      const z = await buildZtoc(fileBytes(b.path), { compression: b.gzip ? 'gzip' : 'uncompressed', spanSize: SPAN, engine });
      const ours = marshalZtoc(z);
      assert.equal(ours.length, golden.length, `${b.label} (${engine}): zTOC size differs`);
      assert.ok(ours.equals(golden), `${b.label} (${engine}): zTOC bytes differ from AWS soci`);
    }
    // and decoding AWS's bytes re-encodes to the same bytes
    assert.ok(marshalZtoc(unmarshalZtoc(golden)).equals(golden), `${b.label}: decode→encode of the AWS zTOC differs`);
  }
});

const octal = (n: number, width = 12) => n.toString(8).padStart(width - 1, '0') + '\0';

/** Hand-made tars exercising Go archive/tar corner cases (see the comments per entry). */
function weirdTars(): Buffer[] {
  const size256 = Buffer.alloc(12);
  size256[0] = 0x80;
  size256.writeUInt32BE(1000, 8);
  const year10000 = Buffer.alloc(12);
  year10000[0] = 0x80;
  year10000.writeBigUInt64BE(253402300800n, 4);
  const negMtime = Buffer.alloc(12, 0xff); // base-256 -1
  const badAtime = Buffer.alloc(155);
  badAtime.write('legacy-go-prefix\0'); // GNU atime field that is not a number → prefix fallback
  const gnuPrefix = rawHeader({ name: 'after-prefix', magic: 'gnu' });
  badAtime.copy(gnuPrefix, 345);
  gnuPrefix.fill(0x20, 148, 156);
  let sum = 0;
  for (const c of gnuPrefix) sum += c;
  gnuPrefix.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
  const pax1 = paxPayload([
    ['uid', '4294967297'],
    ['gid', '-2'],
    ['mtime', '1700000000.1234567891'],
    ['gname', ''],
    ['SCHILY.xattr.security.capability', Buffer.from([1, 0, 0, 2, 0xff, 0, 0, 0])],
    ['LIBARCHIVE.xattr.user.y', 'eQ=='],
  ]);
  const pax2 = paxPayload([
    ['mtime', '-1.5'],
    ['path', 'pax-path-wins-over-ustar'],
  ]);
  const entries = [
    { header: { name: 'v7file', magic: 'v7' as const }, data: 'v7 data' },
    { header: { name: 'legacy/', typeflag: '\0' } },
    { header: { name: 'legacy/f', typeflag: '\0' }, data: 'legacy file' },
    { header: { name: 'prefixed', prefix: 'some/ustar/prefix' }, data: 'p' },
    { header: { name: 'dir-with-size/', typeflag: '5', size: octal(1000) } },
    { header: { name: 'neg-uid', uid: Buffer.alloc(8, 0xff), mtime: negMtime, magic: 'gnu' as const }, data: 'n' },
    { header: { name: 'far-future', mtime: year10000 }, data: 'f' },
    { header: { name: 'mode-with-type-bits', mode: '0100755\0' }, data: 'm' },
    { header: { name: 'PaxHeaders/1', typeflag: 'x' }, data: pax1 },
    { header: { name: 'pax-file' }, data: Buffer.alloc(70000, 0x61) },
    { header: { name: 'PaxHeaders/2', typeflag: 'x' }, data: pax2 },
    { header: { name: '././@LongLink', typeflag: 'L', magic: 'gnu' as const }, data: 'gnu-long-name-beats-pax-path\0' },
    { header: { name: 'short-name', typeflag: '0' }, data: 'which name?' },
    { header: { name: 'dev', typeflag: '3', magic: 'ustar' as const } },
  ];
  const main = rawTar(entries);
  const base256 = Buffer.concat([rawHeader({ name: 'base256-size', size: size256, magic: 'gnu' }), Buffer.alloc(1024, 0x62)]);
  const one = Buffer.concat([main.subarray(0, main.length - 1024), base256, gnuPrefix, Buffer.alloc(1024), Buffer.from('junk after the end marker')]);
  const noEnd = rawTar(
    [
      { header: { name: 'x' }, data: Buffer.alloc(3000, 1) },
      { header: { name: 'y' }, data: 'tail' },
    ],
    0,
  );
  const oneZero = rawTar([{ header: { name: 'z' }, data: Buffer.alloc(100, 2) }], 1);
  const noPad = noEnd.subarray(0, noEnd.length - 300);
  return [one, noEnd, oneZero, noPad];
}

test('golden: Go archive/tar corner cases give byte-identical zTOCs', { skip, timeout: 120_000 }, async (t) => {
  const dir = await tempDir(t, 'soci-ztoc-golden-weird-');
  const layers = weirdTars().flatMap((tar) => [
    { bytes: tar, gzip: false },
    { bytes: gzipSync(tar), gzip: true },
  ]);
  const golden = awsZtocs(dir, layers);
  for (const [i, l] of layers.entries()) {
    const want = golden.get(sha256Hex(l.bytes))!;
    const z = await buildZtoc(Readable.from([l.bytes]), { compression: l.gzip ? 'gzip' : 'uncompressed', spanSize: SPAN });
    const ours = marshalZtoc(z);
    if (!ours.equals(want)) {
      let at = 0;
      while (at < ours.length && ours[at] === want[at]) at++;
      t.diagnostic(`weird layer #${i}: first difference at byte ${at} of ${ours.length}/${want.length}`);
      const theirs = unmarshalZtoc(want);
      assert.deepEqual(z.toc.map(show), theirs.toc.map(show), `weird layer #${i}: TOC differs`);
      assert.deepEqual({ ...z, toc: [] }, { ...theirs, toc: [] }, `weird layer #${i}: header differs`);
      assert.fail(`weird layer #${i}: bytes differ`);
    }
  }
  // Layer 0 has a directory whose size field is 1000: Go records that size, so the header offset
  // recomputed on load runs past the next entry — AWS's own zTOC is then unloadable, as ours.
  assert.throws(
    () => unmarshalZtoc(golden.get(sha256Hex(layers[0]!.bytes))!),
    (e: unknown) => isSociError(e, 'ERR_INVALID_ZTOC'),
  );
  for (const l of layers.slice(2)) assert.ok(marshalZtoc(unmarshalZtoc(golden.get(sha256Hex(l.bytes))!)).equals(golden.get(sha256Hex(l.bytes))!));
});

function show(e: { name: Buffer; linkname: Buffer; uname: Buffer; gname: Buffer; pax: Array<{ key: Buffer; value: Buffer }> }) {
  return {
    ...e,
    name: e.name.toString('latin1'),
    linkname: e.linkname.toString('latin1'),
    uname: e.uname.toString('latin1'),
    gname: e.gname.toString('latin1'),
    pax: e.pax.map((p) => `${p.key.toString('latin1')}=${p.value.toString('hex')}`),
  };
}

test('golden: AWS soci also refuses layers with PAX global headers, GNU sparse or contiguous entries', { skip, timeout: 60_000 }, async (t) => {
  for (const type of ['g', 'S', '7']) {
    const dir = await tempDir(t, 'soci-ztoc-golden-bad-');
    const data = type === 'g' ? '18 comment=hello\n' : 'abc';
    const tar = rawTar([
      { header: { name: 'ok' }, data: 'x' },
      { header: { name: `bad-${type}`, typeflag: type, magic: type === 'S' ? 'gnu' : 'ustar' }, data },
    ]);
    layoutOf(join(dir, 'layout'), [{ bytes: gzipSync(tar), gzip: true }]);
    mkdirSync(join(dir, 'aws-root'));
    assert.throws(
      () =>
        execFileSync(
          AWS,
          ['--root', join(dir, 'aws-root'), 'convert', '--standalone', '--format', 'oci-dir', '--min-layer-size', '0', join(dir, 'layout'), join(dir, 'out')],
          { stdio: 'pipe' },
        ),
      `aws-soci accepted a layer with a '${type}' entry`,
    );
    await assert.rejects(buildZtoc(Readable.from([gzipSync(tar)]), { compression: 'gzip', spanSize: SPAN }), (e: unknown) => isSociError(e, 'ERR_BAD_TAR'));
  }
});
