/**
 * `soci mount` when a layer cannot be had: the registry lost the blob (its file deleted from the
 * storage), answers 500 for it, resets the connection mid-body, or serves bytes that do not match
 * the digest. Foreground and --detach alike: exit non-zero with one `soci: …` line on stderr (no
 * stack, no "Node.js v20"), nothing left mounted (the lazy layer mounted before the failure is taken
 * down again), no unpacked layer left in the state dir.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { needs } from '../../harness/env.js';
import { startFaultProxy, type Fault } from '../../harness/fault-proxy.js';
import { blobPath, twoLayerImage } from '../../harness/hostile-image.js';
import { startRegistry } from '../../harness/registry.js';
import { mountsUnder } from '../../harness/containerd.js';
import { scratch } from './util.js';
import { sociRun } from '../../harness/soci-cli.js';

const pexec = promisify(execFile);

async function mountinfoText(): Promise<string> {
  return readFile('/proc/self/mountinfo', 'utf8');
}

test('soci mount: a layer 404/500/reset/corrupt ends in one line, non-zero, nothing mounted or left behind', {
  skip: needs({ root: true, tools: ['docker-registry', 'skopeo'] }),
  timeout: 600_000,
}, async (t) => {
  const { dir, defer } = await scratch(t, 'soci-mount-hostile-');
  const reg = await startRegistry(t);
  const proxy = await startFaultProxy(t, reg.host);
  const root = join(dir, 'root');
  const images: Record<string, { tiny: string; big: string }> = {};
  for (const [i, name] of ['healthy', 'gone', 'e500', 'reset', 'flip'].entries()) {
    const img = twoLayerImage(join(dir, `oci-${name}`), name, 1000 + i);
    images[name] = img;
    await pexec('skopeo', ['copy', '--dest-tls-verify=false', `oci:${img.dir}:latest`, `docker://${reg.host}/src/${name}:v1`]);
    const c = await sociRun(root, ['convert', '--remote', '-q', '--min-layer-size', '1048576', `${reg.host}/src/${name}:v1`, `${reg.host}/dst/${name}:v1`]);
    assert.equal(c.code, 0, c.stderr);
  }
  // the tiny layer is not indexed (unpacked locally), the big one is lazy
  const mnt0 = join(dir, 'mnt0');
  await mkdir(mnt0);
  const explain = await sociRun(root, ['mount', '--detach', '--explain', '--state-dir', join(dir, 'state0'), `${reg.host}/dst/healthy:v1`, mnt0]);
  defer(() => sociRun(root, ['umount', '--state-dir', join(dir, 'state0'), mnt0]));
  assert.equal(explain.code, 0, explain.stderr);
  assert.match(explain.stdout, /layer 0 .*: lazy/);
  assert.match(explain.stdout, /layer 1 .*: local/);
  assert.equal(await readFile(join(mnt0, 'etc/healthy.txt'), 'utf8'), 'healthy\n');
  assert.equal((await sociRun(root, ['umount', '--state-dir', join(dir, 'state0'), mnt0])).code, 0);

  await rm(blobPath(reg, images.gone!.tiny));
  const everyTime = (digest: string, fault: Fault) => proxy.add({ path: `/blobs/${digest}`, times: 1_000_000, fault });
  everyTime(images.e500!.tiny, { kind: 'status', status: 500 });
  everyTime(images.reset!.tiny, { kind: 'reset', afterBytes: 1 });
  everyTime(images.flip!.tiny, { kind: 'flip', offset: 30 });

  const cases: Array<[string, string, RegExp]> = [
    ['blob deleted from the registry', `${reg.host}/dst/gone:v1`, /not found|unknown|404/i],
    ['registry answers 500', `${proxy.host}/dst/e500:v1`, /500|server error/i],
    ['connection reset mid-body', `${proxy.host}/dst/reset:v1`, /ECONNRESET|socket|closed|reset|terminated|short/i],
    ['bytes that do not match the digest', `${proxy.host}/dst/flip:v1`, /digest|gzip/i],
  ];
  let n = 0;
  for (const [what, ref, re] of cases) {
    for (const detach of [false, true]) {
      const mnt = join(dir, `mnt${++n}`);
      const stateDir = join(dir, `state${n}`);
      await mkdir(mnt);
      defer(() => sociRun(root, ['umount', '--state-dir', stateDir, mnt]));
      const before = await mountinfoText();
      const r = await sociRun(root, ['mount', ...(detach ? ['--detach'] : []), '--state-dir', stateDir, ref, mnt]);
      const label = `${what}${detach ? ' (--detach)' : ''}`;
      t.diagnostic(`${label}: ${r.stderr.trim()}`);
      assert.notEqual(r.code, 0, `${label}: exit code`);
      const lines = r.stderr.trim().split('\n');
      assert.equal(lines.length, 1, `${label}: one line on stderr, got:\n${r.stderr}`);
      assert.match(lines[0]!, /^soci: /, label);
      assert.match(lines[0]!, re, label);
      assert.doesNotMatch(r.stderr, /Node\.js v|\n\s+at |Unhandled|uncaught/i, label);
      assert.deepEqual(await mountsUnder(mnt), [], `${label}: target not mounted`);
      assert.deepEqual(await mountsUnder(stateDir), [], `${label}: no layer mount left`);
      assert.ok(!existsSync(join(stateDir, 'layers')), `${label}: no unpacked layer left`);
      assert.ok(!existsSync(join(stateDir, 'state.json')), `${label}: no state left`);
      assert.equal(
        (await mountinfoText()).split('\n').filter((l) => l.includes(dir)).length,
        before.split('\n').filter((l) => l.includes(dir)).length,
        `${label}: mount table unchanged`,
      );
    }
  }
  assert.ok(proxy.count('GET', `/blobs/${images.reset!.tiny}`) > 1, 'the reset blob was retried');
});
