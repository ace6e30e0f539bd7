/**
 * `soci prefetch ls|list [--json]` and `soci prefetch info <digest> [--json]` over our content
 * store, after `soci create --prefetch-file`: AWS's table (tabwriter, terminated cells), its JSON
 * (`null` for none), the info summary with each span range, and one-line errors. The same
 * commands are compared byte for byte with AWS's CLI in the walkthrough e2e test.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { tempDir } from '../../harness/env.js';
import { buildLayout, pseudoRandom } from '../../harness/images.js';
import { oneLineError, soci as runSoci, sociFail as failSoci } from '../../harness/soci-cli.js';

const O = { flags: ['--content-store', 'soci'] };
const soci = (root: string, args: string[]) => runSoci(root, args, O);

test('prefetch ls and info: AWS table and JSON, span ranges, errors', { timeout: 300_000 }, async (t) => {
  const tmp = await tempDir(t);
  const root = join(tmp, 'root');
  assert.equal((await soci(root, ['prefetch', 'ls', '--json'])).stdout, 'null\n', 'Go encodes an empty list as null');
  assert.equal((await soci(root, ['prefetch', 'ls'])).stdout, 'DIGEST    LAYER DIGEST    SPANS    CREATED    \n');

  const img = buildLayout(join(tmp, 'img'), {
    images: [{ layers: [{ files: { 'app/big.bin': pseudoRandom(3 << 20, 7, 0.2), 'app/main.js': 'm'.repeat(500), 'etc/conf': 'c\n' } }] }],
  });
  const created = await soci(root, [
    'create',
    '--min-layer-size',
    '0',
    '--span-size',
    '65536',
    '--prefetch-file',
    'app/main.js',
    '--prefetch-file',
    'etc/conf',
    `oci:${img.dir}`,
  ]);
  const line = created.stdout.split('\n').find((l) => l.startsWith('Created prefetch artifact for layer '));
  assert.ok(line, created.stdout);
  const m = /^Created prefetch artifact for layer (sha256:[0-9a-f]{64}): (sha256:[0-9a-f]{64})$/.exec(line)!;
  const [layer, digest] = [m[1]!, m[2]!];
  assert.equal(layer, img.layers[0]![0]);

  const list = JSON.parse((await soci(root, ['prefetch', 'list', '--json'])).stdout) as Array<Record<string, unknown>>;
  assert.equal(list.length, 1);
  assert.deepEqual(Object.keys(list[0]!), ['Digest', 'LayerDigest', 'TotalSpans', 'CreatedAt']);
  assert.equal(list[0]!.Digest, digest);
  assert.equal(list[0]!.LayerDigest, layer);
  assert.match(String(list[0]!.CreatedAt), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);
  const spans = Number(list[0]!.TotalSpans);
  assert.ok(spans >= 1);

  const table = (await soci(root, ['prefetch', 'ls'])).stdout.split('\n');
  assert.match(table[0]!, /^DIGEST {69}LAYER DIGEST {63}SPANS {4}CREATED {4}$/);
  assert.match(table[1]!, new RegExp(`^${digest} {4}${layer} {4}${spans} +\\d+s ago +$`));

  const info = (await soci(root, ['prefetch', 'info', digest])).stdout;
  assert.match(
    info,
    new RegExp(
      `^Digest:        ${digest}\nVersion:       1\\.0\nSpan Ranges:   \\d+\nLayer Digest:  ${layer}\nSize:          \\d+ bytes\nCreated:       \\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d\n\nPrefetch Spans:\n`,
    ),
  );
  assert.match(info, /\n {2}\[0\] StartSpan: \d+, EndSpan: \d+ \(covers \d+ spans\)\n/);
  assert.ok(info.endsWith(`\nTotal spans to prefetch: ${spans}\n`), info);
  const withJson = (await soci(root, ['prefetch', 'info', '--json', digest])).stdout;
  const raw = JSON.parse(withJson.slice(withJson.indexOf('\nRaw JSON:\n') + 11)) as { version: string; prefetch_spans: unknown[] };
  assert.equal(raw.version, '1.0');
  assert.equal(raw.prefetch_spans.length, Number(/Span Ranges:\s+(\d+)/.exec(info)![1]));

  const ztoc = /-> ztoc (sha256:[0-9a-f]{64})/.exec(created.stdout)![1]!;
  oneLineError(await failSoci(root, ['prefetch', 'info', ztoc], O), /the provided digest is not a prefetch artifact \(type: soci_layer\)/);
  oneLineError(await failSoci(root, ['prefetch', 'info', `sha256:${'0'.repeat(64)}`], O), /not found/);
  oneLineError(await failSoci(root, ['prefetch', 'info', 'nope'], O));
});
