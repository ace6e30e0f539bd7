/**
 * A private containerd 1.6 using our daemon as proxy snapshotter "soci": `ctr snapshots`
 * behaves like containerd's own overlayfs snapshotter, and a real image imports and runs.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { needs } from '../../harness/env.js';
import { startContainerd, startSnapshotter, type StartedContainerd, CONTAINERD_VERSIONS } from '../../harness/containerd.js';
import { buildTinyImage } from './tiny-image.js';
import { mkdtemp, readdir } from 'node:fs/promises';
import { TestClient } from './grpc-client.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { removeTree } from '../../harness/containerd.js';

const skip = needs({ root: true, tools: ['containerd', 'ctr', 'runc', 'gcc'] });

/** A fixed ctr snapshots script; outputs normalised so overlayfs and soci can be compared. */
async function script(cd: StartedContainerd, snapshotter: string): Promise<string[]> {
  const S = ['-n', 'cmp', 'snapshots', '--snapshotter', snapshotter];
  const steps: string[][] = [
    ['prepare', 'a'],
    ['mounts', '/mnt/x', 'a'],
    ['commit', 'base', 'a'],
    ['commit', 'base2', 'a'],
    ['prepare', '--mounts', 'b', 'base'],
    ['commit', 'mid', 'b'],
    ['prepare', '--mounts', 'c', 'mid'],
    ['view', 'v1', 'base'],
    ['view', 'v2', 'mid'],
    ['mounts', '/mnt/y', 'v2'],
    ['prepare', 'a', 'base'],
    ['prepare', 'bad', 'nope'],
    ['prepare', 'bad', 'c'],
    ['mounts', '/mnt/z', 'base'],
    ['ls'],
    ['label', 'base', 'foo=bar'],
    ['label', 'base', 'foo='],
    ['tree'],
    ['usage', 'c'],
    ['rm', 'base'],
    ['rm', 'c'],
    ['rm', 'nope'],
    ['info', 'nope'],
    ['info', 'mid'],
  ];
  const out: string[] = [];
  for (const s of steps) {
    const r = await cd.ctr([...S, ...s]);
    const text = (r.stdout + r.stderr)
      .replace(/\/[^\s,:"]*\/snapshots\/(\d+)\/(fs|work)/g, '<snap$1>/$2')
      // containerd adds index=off only when the kernel has the feature (1.6 first, 2.2 last in the list)
      .replace(/"index=off",?\s*/g, '')
      .replace(/,\s*\]/g, ' ]')
      .replace(/-o (.*?)index=off,?/g, '-o $1')
      .replace(/,(\s|$)/g, '$1')
      .replace(/"(Created|Updated)": "[^"]*"/g, '"$1": T')
      .replace(/(gc\.root"?[=:] ?"?)\d{4}-[\dT:.Z-]+/g, '$1T')
      .replace(/\s+/g, ' ')
      .trim();
    // `label` prints a Go map: order is random
    let stable = s[0] === 'label' ? text.split(',').sort().join(',') : text;
    // `ctr snapshots view` takes no lease and sets no gc.root label: containerd's garbage collector
    // may remove the views at any moment after they are made, so whether ls and tree still show them
    // depends on when it last ran, not on the snapshotter.
    if (s[0] === 'ls') stable = stable.replace(/ v\d (base|mid) View/g, '');
    if (s[0] === 'tree') stable = stable.replace(/ \\_ v\d/g, '');
    // containerd 2.x's own snapshotters wrap errors with their errdefs class (": invalid argument");
    // through a proxy snapshotter the gRPC code carries the class instead.
    if (cd.version !== '1.6') stable = stable.replace(/: (invalid argument|failed precondition)$/, '');
    out.push(`${s.join(' ')} => ${r.code} ${stable}`);
  }
  return out;
}

for (const version of CONTAINERD_VERSIONS)
  test(`ctr snapshots: soci behaves like overlayfs (containerd ${version})`, { skip }, async (t) => {
    const sn = await startSnapshotter(t);
    const cd = await startContainerd(t, { version, snapshotterSocket: sn.address });
    const overlay = await script(cd, 'overlayfs');
    const soci = await script(cd, 'soci');
    assert.deepEqual(soci, overlay);
    // and the results are what containerd documents, not just equal
    assert.match(
      soci.find((l) => l.startsWith('prepare --mounts c mid'))!,
      /"Type": "overlay".*workdir=<snap\d+>\/work.*upperdir=<snap\d+>\/fs.*lowerdir=<snap\d+>\/fs:<snap\d+>\/fs/,
    );
    assert.match(soci.find((l) => l.startsWith('prepare bad nope'))!, /=> 1 .*not found/);
    assert.match(soci.find((l) => l.startsWith('rm base'))!, /=> 1 /);
    // `ctr snapshots rm` only marks; containerd's GC then calls List → Remove → Cleanup on us
    const c = new TestClient(sn.address, 'cmp');
    t.after(() => c.close());
    const keys = async () => (await c.list()).map((i) => String(i.name));
    for (let i = 0; (await keys()).some((k) => k.endsWith('/c')); i++) {
      assert.ok(i < 100, `GC never removed c: ${(await keys()).join(' ')}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok((await keys()).some((k) => k.endsWith('/mid')));
    // GC's Cleanup, which removes the directories, comes after Remove (a little later on 2.2).
    const dirs = () => readdir(join(sn.root, 'snapshotter', 'snapshots'));
    for (let i = 0; (await dirs()).length !== (await keys()).length && i < 100; i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal((await dirs()).length, (await keys()).length, `dirs ${(await dirs()).join(',')} vs keys ${(await keys()).join(',')}`);
  });

for (const version of CONTAINERD_VERSIONS)
  test(`ctr images import + run through the soci snapshotter (containerd ${version})`, { skip }, async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'soci-img-'));
    t.after(() => removeTree(dir));
    const image = await buildTinyImage(dir, 'docker.io/library/soci-hello:latest');
    const sn = await startSnapshotter(t);
    const cd = await startContainerd(t, { version, snapshotterSocket: sn.address });
    // 2.x imports through its transfer service, whose unpack platforms name only the default
    // snapshotter; `--local` is the client-side import that 1.6 always does.
    const imp = await cd.ctr(['-n', 'test', 'images', 'import', ...(version === '1.6' ? [] : ['--local']), '--snapshotter', 'soci', image]);
    assert.equal(imp.code, 0, imp.stderr);
    const run = await cd.ctr(['-n', 'test', 'run', '--snapshotter', 'soci', '--rm', 'docker.io/library/soci-hello:latest', 'hello-1'], { timeoutMs: 60_000 });
    assert.equal(run.code, 0, run.stderr + cd.logs().slice(-2000));
    assert.equal(run.stdout, 'hello from soci\nmsg=layer two\ngone=absent\n');
    // containerd unpacked both layers into our snapshots and the container's active one was removed
    const ls = await cd.ctr(['-n', 'test', 'snapshots', '--snapshotter', 'soci', 'ls']);
    const kinds = ls.stdout
      .trim()
      .split('\n')
      .slice(1)
      .map((l) => l.trim().split(/\s+/).pop());
    assert.deepEqual(kinds, ['Committed', 'Committed'], ls.stdout);
    // no import fallback was needed: every prepare was a plain (non-remote) one
    assert.ok(!sn.logs().includes('remote-snapshot-prepared'), 'ctr import does not use the remote protocol');
  });
