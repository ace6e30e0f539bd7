/** The offline `soci` CLI end to end: create → index/ztoc list/info → get-file → rm → rebuild-db, and bad input. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../../harness/env.js';
import { buildLayout, pseudoRandom } from '../../harness/images.js';
import { oneLineError, soci as runSoci, sociFail as failSoci } from '../../harness/soci-cli.js';

const exec = promisify(execFile);
/** the installed entry, with our local content store */
const O = { bin: true, flags: ['--content-store', 'soci'] };
const soci = (root: string, args: string[]) => runSoci(root, args, O);
const sociFail = (root: string, args: string[]) => failSoci(root, args, O);
const MB = 1 << 20;

test('create, list, info, get-file, remove, rebuild-db', { timeout: 300_000 }, async (t) => {
  const tmp = await tempDir(t);
  const root = join(tmp, 'root');
  const big = pseudoRandom(12 * MB, 11, 0.4);
  const img = buildLayout(join(tmp, 'img'), {
    images: [{ layers: [{ files: { 'usr/lib/big.bin': big, 'etc/motd': 'welcome\n', 'etc/hard': 'x' } }, { files: { tiny: 't' } }] }],
  });
  const r = await soci(root, ['create', '--span-size', String(MB), `oci:${img.dir}`]);
  const ztocLine = r.stdout.split('\n').find((l) => l.startsWith(`layer ${img.layers[0]![0]} -> ztoc `));
  assert.ok(ztocLine, r.stdout);
  assert.match(r.stdout, /ztoc skipped - layer sha256:[0-9a-f]+ .* is less than min-layer-size 10485760/);
  const ztocDigest = ztocLine!.split(' ')[4]!;

  const list = await soci(root, ['index', 'list']);
  assert.match(list.stdout.split('\n')[0]!, /^DIGEST\s+SIZE\s+IMAGE REF\s+PLATFORM\s+MEDIA TYPE\s+MANIFEST VERSION\s+CREATED$/);
  assert.match(list.stdout, /linux\/amd64\s+application\/vnd\.oci\.image\.manifest\.v1\+json\s+v1/);
  const indexDigest = (await soci(root, ['index', 'ls', '-q'])).stdout.trim();
  assert.match(indexDigest, /^sha256:[0-9a-f]{64}$/);

  const info = JSON.parse((await soci(root, ['index', 'info', indexDigest])).stdout);
  assert.equal(info.config.mediaType, 'application/vnd.amazon.soci.index.v1+json');
  assert.equal(info.subject.digest, img.manifests[0]);
  assert.equal(info.layers.length, 1);
  assert.equal(info.layers[0].digest, ztocDigest);
  assert.equal(info.annotations['com.amazon.soci.build-tool-identifier'], 'AWS SOCI CLI v0.2');

  const zl = await soci(root, ['ztoc', 'ls']);
  assert.match(zl.stdout, new RegExp(`${ztocDigest}\\s+\\d+\\s+${img.layers[0]![0]}`));
  const zi = JSON.parse((await soci(root, ['ztoc', 'info', ztocDigest])).stdout);
  const bigInfo = zi.files.find((f: any) => f.filename === 'usr/lib/big.bin');
  assert.ok(bigInfo, JSON.stringify(zi.files.map((f: any) => f.filename)));
  assert.ok(bigInfo.end_span > bigInfo.start_span, 'a 12 MiB file spans several 1 MiB spans');

  const out = join(tmp, 'big.out');
  await soci(root, ['ztoc', 'get-file', ztocDigest, 'usr/lib/big.bin', '-o', out]);
  assert.ok(readFileSync(out).equals(big));
  const motd = await soci(root, ['ztoc', 'get-file', ztocDigest, 'etc/motd']);
  assert.equal(motd.stdout, 'welcome\n\n');

  // Second create reuses the zTOC; --force rebuilds it to the same bytes.
  assert.match((await soci(root, ['create', '--span-size', String(MB), `oci:${img.dir}`])).stdout, /\(already exists\)/);
  assert.doesNotMatch((await soci(root, ['create', '-f', '--span-size', String(MB), `oci:${img.dir}`])).stdout, /already exists/);
  assert.equal((await soci(root, ['ztoc', 'ls', '-q'])).stdout.trim(), ztocDigest);

  // rebuild-db from the content store after losing the DB.
  const dbFiles = readdirSync(root).filter((f) => f.startsWith('artifacts.db'));
  for (const f of dbFiles) writeFileSync(join(root, f), '');
  await exec('rm', ['-f', ...dbFiles.map((f) => join(root, f))]);
  await soci(root, ['rebuild-db']);
  assert.equal((await soci(root, ['index', 'ls', '-q'])).stdout.trim(), indexDigest);
  assert.equal((await soci(root, ['ztoc', 'ls', '-q'])).stdout.trim(), ztocDigest);

  await soci(root, ['index', 'rm', indexDigest]);
  assert.equal((await soci(root, ['index', 'ls', '-q'])).stdout.trim(), '');
  assert.equal((await soci(root, ['ztoc', 'ls', '-q'])).stdout.trim(), '');
  assert.ok(!existsSync(join(root, 'content', 'blobs', 'sha256', ztocDigest.slice(7))));
});

test('bad input: one-line errors, non-zero exit, nothing partial', { timeout: 120_000 }, async (t) => {
  const tmp = await tempDir(t);
  const root = join(tmp, 'root');
  oneLineError(await sociFail(root, ['create', '--span-size', '-1', join(tmp, 'nope')]), /span size must be >= 0/);
  oneLineError(await sociFail(root, ['create', '--min-layer-size', '-5', join(tmp, 'nope')]), /min layer size must be >= 0/);
  oneLineError(await sociFail(root, ['create', '--span-size', '99999999999999999999', join(tmp, 'nope')]), /span-size/);
  oneLineError(await sociFail(root, ['create', `oci:${join(tmp, 'nope')}`]), /does not exist/);
  oneLineError(await sociFail(root, ['ztoc', 'info', 'sha256:1234']), /invalid digest/);
  oneLineError(await sociFail(root, ['ztoc', 'info', `sha256:${'a'.repeat(64)}`]), /not found/);
  oneLineError(await sociFail(root, ['index', 'info', `sha256:${'b'.repeat(64)}`]), /not found/);
  oneLineError(await sociFail(root, ['convert', '--standalone', '--format', 'zip', join(tmp, 'x'), join(tmp, 'y')]), /unsupported output format "zip"/);

  // every layer below min size → no index, nothing stored
  const small = buildLayout(join(tmp, 'small'), { images: [{ layers: [{ files: { a: 'a' } }] }] });
  oneLineError(await sociFail(root, ['create', `oci:${small.dir}`]), /no ztocs created/);
  assert.equal((await soci(root, ['index', 'ls', '-q'])).stdout.trim(), '');

  // corrupt layer blob: digest mismatch, no zTOC stored, no output written
  const img = buildLayout(join(tmp, 'img'), { images: [{ layers: [{ files: { big: pseudoRandom(11 * MB, 12, 0.5) } }] }] });
  const layerPath = join(img.dir, 'blobs', 'sha256', img.layers[0]![0]!.slice(7));
  const bytes = readFileSync(layerPath);
  bytes[bytes.length - 100]! ^= 0xff;
  writeFileSync(layerPath, bytes);
  const r = await sociFail(root, ['create', `oci:${img.dir}`]);
  assert.match(r.stderr.trim().split('\n').pop()!, /^soci: .*(corrupt|does not match|invalid)/);
  assert.equal((await soci(root, ['ztoc', 'ls', '-q'])).stdout.trim(), '');
  const r2 = await sociFail(root, ['convert', '-q', '--standalone', img.dir, join(tmp, 'out.tar')]);
  oneLineError(r2, /corrupt|does not match|invalid/);
  assert.ok(!existsSync(join(tmp, 'out.tar')));
  assert.deepEqual(
    readdirSync(tmp).filter((f) => f.includes('.tmp')),
    [],
  );

  // a layout that is not a layout
  writeFileSync(join(tmp, 'junk.tar'), 'not a tar at all');
  oneLineError(await sociFail(root, ['convert', '--standalone', join(tmp, 'junk.tar'), join(tmp, 'o2')]), /OCI layout|oci-archive|index\.json/);
});
