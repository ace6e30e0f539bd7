// Builds the optional native addons (native/: zlib checkpoints, fd passing) with node-gyp against Node's own headers.
// Failure is not fatal: without zinflate the pure-JS engine (pako) is selected; without fdpass, FUSE
// connections do not survive a daemon restart (said in one line at start).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
if (process.env.SOCI_SKIP_NATIVE === '1') process.exit(0);
if (!existsSync(join(root, 'binding.gyp'))) process.exit(0);
const nodeDir = resolve(process.execPath, '../..');
const gyp = join(dirname(process.execPath), '../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js');
const args = existsSync(gyp) ? [gyp] : [];
const cmd = existsSync(gyp) ? process.execPath : 'node-gyp';
const haveHeaders = existsSync(join(nodeDir, 'include/node/node_api.h'));
const r = spawnSync(cmd, [...args, 'rebuild', '--release', ...(haveHeaders ? [`--nodedir=${nodeDir}`] : [])], {
  cwd: root,
  stdio: ['ignore', 'ignore', 'pipe'],
  encoding: 'utf8',
});
if (r.status !== 0) {
  const why = (r.stderr || String(r.error ?? '')).trim().split('\n').slice(-3).join(' | ');
  console.warn(`soci: native zlib addon not built (${why || 'node-gyp failed'}); using the pure-JS engine`);
}
