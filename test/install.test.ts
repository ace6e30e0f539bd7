/** `npm install -g .` from a fresh clone gives working `soci` and `soci-snapshotter-grpc` (private prefix). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { needs, tempDir } from '../harness/env.js';
import { buildLayout, pseudoRandom } from '../harness/images.js';
import { VERSION } from '../src/version.js';

const exec = promisify(execFile);

test('npm install -g . from a fresh clone', { skip: needs({ tools: ['git', 'npm'] }), timeout: 900_000 }, async (t) => {
  const tmp = await tempDir(t);
  await exec('git', ['clone', '-q', process.cwd(), join(tmp, 'clone')]);
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.toLowerCase().startsWith('npm_')));
  await exec('npm', ['install', '-g', '.', '--prefix', join(tmp, 'prefix'), '--loglevel=error'], { cwd: join(tmp, 'clone'), env, maxBuffer: 1 << 26 });
  const soci = join(tmp, 'prefix', 'bin', 'soci');
  // the installed copy names the commit it was built from (no checkout to ask at run time)
  const head = (await exec('git', ['rev-parse', 'HEAD'])).stdout.trim();
  assert.equal((await exec(soci, ['--version'])).stdout.trim(), `soci version v${VERSION} ${head}`);
  assert.match((await exec(join(tmp, 'prefix', 'bin', 'soci-snapshotter-grpc'), ['--version'])).stdout, new RegExp(VERSION.replace(/\./g, '\\.')));
  // and it does real work: a standalone conversion
  const img = buildLayout(join(tmp, 'img'), { images: [{ layers: [{ files: { big: pseudoRandom(11 << 20, 31, 0.5) } }] }] });
  const out = await exec(soci, ['--root', join(tmp, 'root'), 'convert', '-q', '--json', '--standalone', img.dir, join(tmp, 'out.tar')]);
  assert.match(JSON.parse(out.stdout).digest, /^sha256:[0-9a-f]{64}$/);
});
