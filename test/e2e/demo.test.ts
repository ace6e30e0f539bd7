/** The README's first command keeps working: the demo driver end to end (smaller bulk to stay quick). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { needs } from '../../harness/env.js';

const exec = promisify(execFile);

test('scripts/demo.ts: convert, lazy CRI pull, container serves HTTP', {
  skip: needs({ root: true, tools: ['containerd', 'ctr', 'runc', 'docker-registry', 'skopeo', 'curl'] }),
  timeout: 600_000,
}, async () => {
  const r = await exec(process.execPath, ['--import', 'tsx', 'scripts/demo.ts', '--bulk-mb', '24'], { maxBuffer: 1 << 24, timeout: 540_000 });
  assert.match(r.stdout, /converted in [\d.]+ s: .*sha256:[0-9a-f]{64}/);
  assert.match(r.stdout, /soci on .* type fuse\.soci/);
  assert.match(r.stdout, /HTTP 200 from the container/);
  const m = /fetched ([\d.]+) MB of ([\d.]+) MB/.exec(r.stdout);
  assert.ok(m, r.stdout);
  assert.ok(Number(m[1]) < Number(m[2]) / 2, r.stdout);
});
