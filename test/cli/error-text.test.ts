/**
 * Error messages are one line in plain words: a corrupt zTOC (random bytes, truncated, mutated)
 * through `soci ztoc info` gives a `soci: invalid zTOC: …`-style line with no JavaScript internals,
 * and control characters that come from the input (a file name) are shown escaped by `errorLine`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../../harness/env.js';
import { buildLayout, pseudoRandom } from '../../harness/images.js';
import { errorLine } from '../../src/cli/soci.js';
import { SociError, isSociError } from '../../src/errors.js';
import { unmarshalZtoc, ztocInfo } from '../../src/ztoc/index.js';
import { oneLineError, soci, sociFail as failSoci } from '../../harness/soci-cli.js';

const O = { flags: ['--content-store', 'soci'] };

/** The failure's one line, which must not carry raw control characters either. */
async function sociFail(root: string, args: string[]): Promise<string> {
  const line = oneLineError(await failSoci(root, args, O));
  assert.doesNotMatch(line, /[\u0000-\u001f\u007f-\u009f]/, 'no raw control characters');
  return line;
}
/** What a message must never show: the runtime's own words instead of ours. */
const INTERNALS =
  /typed array|array length|RangeError|TypeError|SyntaxError|out of bounds|out of range\. It must|ERR_[A-Z_]{3,}|Cannot read prop|is not a function|undefined|NaN|\bat .*\.[jt]s:\d+/;

function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return s / 2 ** 32;
  };
}

test('errorLine: one line, control characters escaped', () => {
  assert.equal(errorLine(new SociError('ERR_NOT_FOUND', 'file a\nb\r\tc not found')), 'file a\\nb\\r\\tc not found');
  assert.equal(
    errorLine(new SociError('ERR_REGISTRY', 'registry said: \x1b[31mred\x1b[0m\x00\x7f\x85\u2028end')),
    'registry said: \\x1b[31mred\\x1b[0m\\x00\\x7f\\x85\\u2028end',
  );
  assert.equal(errorLine(new Error('first\nsecond\n')), 'first\\nsecond');
  assert.equal(errorLine('plain\vtext'), 'plain\\x0btext');
  assert.equal(errorLine(new SociError('ERR_IO', '')), 'error');
  // Text outside the controls is kept as is (UTF-8 names stay readable).
  assert.equal(errorLine(new SociError('ERR_NOT_FOUND', 'file "café/日本" not found')), 'file "café/日本" not found');
});

test('corrupt zTOCs: always ERR_INVALID_ZTOC or ERR_INVALID_CHECKPOINTS, in plain words (in process)', async (t) => {
  const tmp = await tempDir(t);
  const img = buildLayout(join(tmp, 'img'), { images: [{ layers: [{ files: { 'big.bin': pseudoRandom(300_000, 3, 0.4), 'etc/motd': 'hi\n' } }] }] });
  const root = join(tmp, 'root');
  await soci(root, ['create', '--min-layer-size', '0', '--span-size', '65536', `oci:${img.dir}`], O);
  const digest = (await soci(root, ['ztoc', 'ls', '-q'], O)).stdout.trim();
  const good = readFileSync(join(root, 'content', 'blobs', 'sha256', digest.slice(7)));
  // The tables sit after the checkpoint bytes: mutate all over, and more often near the end.
  const rnd = lcg(7);
  let decoded = 0;
  for (let i = 0; i < 3000; i++) {
    const b = Buffer.from(good);
    for (let k = 1 + Math.floor(rnd() * 4); k > 0; k--) {
      const p = rnd() < 0.7 ? b.length - 1 - Math.floor(rnd() * Math.min(b.length, 4096)) : Math.floor(rnd() * b.length);
      const v = [0xff, 0x00, 0x7f, 0x80, Math.floor(rnd() * 256)][Math.floor(rnd() * 5)]!;
      if (rnd() < 0.5 && p + 4 <= b.length) b.writeUInt32LE([0xffffffff, 0x80000000, 0x7fffffff, 8, Math.floor(rnd() * 2 ** 32)][Math.floor(rnd() * 5)]!, p);
      else b[p] = v;
    }
    const cut = rnd() < 0.1 ? b.subarray(0, Math.floor(rnd() * b.length)) : b;
    try {
      ztocInfo(unmarshalZtoc(cut), { size: cut.length });
      decoded++;
    } catch (e) {
      assert.ok(isSociError(e, 'ERR_INVALID_ZTOC') || isSociError(e, 'ERR_INVALID_CHECKPOINTS'), `mutation ${i}: ${String(e)}`);
      const line = errorLine(e);
      assert.doesNotMatch(line, INTERNALS, `mutation ${i}: ${line}`);
      assert.doesNotMatch(line, /[\n\r]/);
    }
  }
  t.diagnostic(`decoded ${decoded} of 3000 mutated zTOCs`);
});

test('soci ztoc info on a corrupt zTOC, soci ztoc get-file of a name with controls: one plain line', { timeout: 300_000 }, async (t) => {
  const tmp = await tempDir(t);
  const img = buildLayout(join(tmp, 'img'), { images: [{ layers: [{ files: { 'big.bin': pseudoRandom(300_000, 3, 0.4), 'etc/motd': 'hi\n' } }] }] });
  const root = join(tmp, 'root');
  await soci(root, ['create', '--min-layer-size', '0', '--span-size', '65536', `oci:${img.dir}`], O);
  const digest = (await soci(root, ['ztoc', 'ls', '-q'], O)).stdout.trim();
  assert.match(digest, /^sha256:[0-9a-f]{64}$/);
  const blob = join(root, 'content', 'blobs', 'sha256', digest.slice(7));
  const good = readFileSync(blob);

  // A name from the command line, echoed back in "not found": newline and ESC escaped.
  const nf = await sociFail(root, ['ztoc', 'get-file', digest, 'etc/\nmotd\x1b[2J']);
  assert.match(nf, /etc\/\\nmotd\\x1b\[2J/);

  const rnd = lcg(99);
  const garbage = (n: number) => Buffer.from(Array.from({ length: n }, () => Math.floor(rnd() * 256)));
  const bigCount = Buffer.from(good);
  bigCount.writeUInt32LE(0x7fffffff, bigCount.length - 64);
  const inputs: Array<[string, Buffer]> = [
    ['empty', Buffer.alloc(0)],
    ['7 bytes', garbage(7)],
    ['random 1 KiB', garbage(1024)],
    ['random 200 KiB', garbage(200_000)],
    ['all 0xff', Buffer.alloc(4096, 0xff)],
    ['truncated', good.subarray(0, Math.floor(good.length / 2))],
    ['tail cut', good.subarray(0, good.length - 17)],
    ['huge count near the tables', bigCount],
  ];
  for (const [what, bytes] of inputs) {
    writeFileSync(blob, bytes);
    const line = await sociFail(root, ['ztoc', 'info', digest]);
    assert.match(line, /^soci: invalid (zTOC|checkpoints|gzip checkpoints)|zTOC|checkpoint/i, `${what}: ${line}`);
    assert.doesNotMatch(line, INTERNALS, `${what}: ${line}`);
    t.diagnostic(`${what}: ${line}`);
  }
  writeFileSync(blob, good);
});
