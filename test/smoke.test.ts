import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { VERSION } from '../src/version.js';

test('package.json and VERSION agree', () => {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
  assert.equal(pkg.version, VERSION);
});

test('built bins print their version', () => {
  const out = execFileSync(process.execPath, ['bin/soci.js', '--version'], { encoding: 'utf8' });
  // AWS's shape: `soci version v0.16.1 <commit>`
  assert.match(out.trim(), new RegExp(`^soci version v${VERSION.replace(/\./g, '\\.')} ([0-9a-f]{40}|unknown)$`));
  const out2 = execFileSync(process.execPath, ['bin/soci-snapshotter-grpc.js', '--version'], { encoding: 'utf8' });
  assert.match(out2, new RegExp(VERSION.replace(/\./g, '\\.')));
});
