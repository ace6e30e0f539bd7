/**
 * `soci` on containerd's image store, bad input: one line, exit ≠ 0, nothing partial left behind
 * (no image record, no lease, no DB row). Also a node that ran AWS's soci (its bbolt artifacts.db
 * under the same --root) and the standalone output in a missing directory.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmod, copyFile, mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CONTAINERD_VERSIONS, CONTAINERD2_BIN, exec as run, startContainerd, type StartedContainerd } from '../../harness/containerd.js';
import { needs, tempDir } from '../../harness/env.js';
import { buildLayout, pseudoRandom } from '../../harness/images.js';
import { startRegistry } from '../../harness/registry.js';

const SOCI = join(process.cwd(), 'bin/soci.js');
const AWS = `${process.env.SOCI_TEST_TOOLS ?? '/opt/soci-test-tools/bin'}/aws-soci`;
const skip = needs({ root: true, tools: ['containerd', 'ctr', 'docker-registry', 'skopeo', 'setpriv', AWS, join(CONTAINERD2_BIN, 'containerd')] });

function oneLine(r: { code: number; stderr: string }, re: RegExp): void {
  assert.notEqual(r.code, 0, 'non-zero exit');
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `one line:\n${r.stderr}`);
  assert.match(lines[0]!, /^soci: /);
  assert.match(lines[0]!, re);
  assert.doesNotMatch(r.stderr, /\n\s+at |Error:/, 'no stack trace');
}

async function nothingPartial(cd: StartedContainerd, dst: string, root: string): Promise<void> {
  assert.ok(!(await cd.ctr(['images', 'ls', '-q'])).stdout.split('\n').includes(dst), `no image record ${dst}`);
  assert.equal((await cd.ctr(['leases', 'ls', '-q'])).stdout.trim(), '', 'no lease left');
  const list = await run(process.execPath, [SOCI, '--address', cd.address, '--root', root, 'index', 'list', '-q']);
  assert.equal(list.stdout, '', 'no DB row');
}

for (const version of CONTAINERD_VERSIONS) {
  describe(`soci on containerd ${version}: bad input`, { skip, timeout: 600_000 }, () => {
    test('not in containerd, wrong namespace, containerd down, permission denied, missing layer, Ctrl-C', async (t) => {
      const tmp = await tempDir(t);
      const reg = await startRegistry(t);
      const cd = await startContainerd(t, { version, snapshotterSocket: join(tmp, 'none.sock'), plainHttpRegistries: [reg.host] });
      const root = join(tmp, 'root');
      const soci = (args: string[], o: { ns?: string; address?: string } = {}) =>
        run(process.execPath, [SOCI, '--address', o.address ?? cd.address, '-n', o.ns ?? 'default', '--root', root, ...args]);
      // Two big layers, so a convert is still busy when Ctrl-C comes.
      const img = buildLayout(join(tmp, 'img'), {
        images: [
          {
            layers: [
              { files: { 'a/big': pseudoRandom(24 << 20, 5, 0.5) } },
              { files: { 'b/big': pseudoRandom(24 << 20, 6, 0.5) } },
              { files: { 'c/small': 'x' } },
            ],
          },
        ],
      });
      await run('skopeo', ['copy', '--dest-tls-verify=false', `oci:${img.dir}:latest`, `docker://${reg.host}/app:v1`]);
      const src = `${reg.host}/app:v1`;
      assert.equal((await cd.ctr(['images', 'pull', '--hosts-dir', cd.hostsDir, src], { timeoutMs: 300_000 })).code, 0);

      // an image that is not in containerd: says so, and names both ways out
      let r = await soci(['convert', `${reg.host}/other:v1`, `${reg.host}/x:soci`]);
      oneLine(
        r,
        /image 127\.0\.0\.1:\d+\/other:v1 not found in containerd \(namespace default\): pull it first .*or convert registry to registry with --remote/,
      );
      await nothingPartial(cd, `${reg.host}/x:soci`, root);

      // the right image in the wrong namespace
      r = await soci(['convert', src, `${reg.host}/x:soci`], { ns: 'elsewhere' });
      oneLine(r, /not found in containerd \(namespace elsewhere\): it is in namespace default \(use -n default\)/);

      // containerd not running (no socket), and a socket we may not use
      r = await soci(['convert', src, `${reg.host}/x:soci`], { address: join(tmp, 'no-such.sock') });
      oneLine(r, /containerd is not running: no socket at .*no-such\.sock.*--remote/);
      const nobodyRoot = join(tmp, 'nobody-root');
      await mkdir(nobodyRoot);
      await chmod(nobodyRoot, 0o777);
      await chmod(tmp, 0o755);
      // soci as user nobody, with a root of its own
      const asNobody = (args: string[]) =>
        run('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, SOCI, '--address', cd.address, '--root', nobodyRoot, ...args]);
      r = await asNobody(['index', 'list']);
      assert.equal(r.code, 0, `index list works without containerd names: ${r.stderr}`);
      r = await asNobody(['convert', src, `${reg.host}/x:soci`]);
      oneLine(r, /permission denied on containerd's socket .*: run as root/);

      // a layer blob missing from containerd's content store
      const manifest = JSON.parse((await cd.ctr(['content', 'get', img.manifests[0]!])).stdout) as { layers: Array<{ digest: string }> };
      const gone = manifest.layers[1]!.digest;
      const copy = `${reg.host}/partial:v1`;
      // a second namespace holds a partial copy: same manifest, one layer deleted
      const ns2 = ['-n', 'partial'];
      assert.equal((await cd.ctr([...ns2, 'images', 'pull', '--hosts-dir', cd.hostsDir, src], { timeoutMs: 300_000 })).code, 0);
      assert.equal((await cd.ctr([...ns2, 'images', 'tag', src, copy])).code, 0);
      assert.equal((await cd.ctr([...ns2, 'content', 'rm', gone])).code, 0);
      r = await soci(['convert', copy, `${reg.host}/x:soci`], { ns: 'partial' });
      oneLine(r, new RegExp(`layer ${gone} of .* is not in containerd's content store`));
      assert.equal((await cd.ctr([...ns2, 'leases', 'ls', '-q'])).stdout.trim(), '', 'no lease left');
      assert.ok(!(await cd.ctr([...ns2, 'images', 'ls', '-q'])).stdout.includes('x:soci'));

      // Ctrl-C in the middle of a convert: exit 130, the lease released, no image record, no DB row
      const child = spawn(process.execPath, [SOCI, '--address', cd.address, '--root', root, 'convert', '--min-layer-size', '1000', src, `${reg.host}/x:soci`], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      let err = '';
      child.stdout.on('data', (b: Buffer) => (out += b.toString()));
      child.stderr.on('data', (b: Buffer) => (err += b.toString()));
      const code = await new Promise<number | null>((res) => {
        child.stdout.on('data', () => {
          if (out.includes('-> ztoc')) child.kill('SIGINT');
        });
        child.on('exit', (c) => res(c));
      });
      assert.equal(code, 130, `exit ${code}\n${out}\n${err}`);
      assert.match(err, /^soci: interrupted/m);
      await nothingPartial(cd, `${reg.host}/x:soci`, root);

      // and after all that, a clean convert works
      r = await soci(['convert', src, `${reg.host}/x:soci`]);
      assert.equal(r.code, 0, r.stderr);
    });
  });
}

describe('soci beside AWS soci, and standalone output', { skip }, () => {
  test("AWS's bbolt artifacts.db under the same root: a one-line note, never 'file is not a database'", async (t) => {
    const tmp = await tempDir(t);
    const awsRoot = join(tmp, 'root');
    await mkdir(awsRoot);
    const img = buildLayout(join(tmp, 'img'), { images: [{ layers: [{ files: { big: pseudoRandom(11 << 20, 3, 0.5) } }] }] });
    // AWS's soci makes its bbolt database with a standalone conversion's root; copy it into ours.
    await mkdir(join(tmp, 'aws'));
    const aws = await run(AWS, ['--root', join(tmp, 'aws'), 'ztoc', 'ls']);
    assert.equal(aws.code, 0, aws.stderr);
    const awsFiles = await readdir(join(tmp, 'aws'));
    assert.ok(awsFiles.includes('artifacts.db'), awsFiles.join(','));
    await copyFile(join(tmp, 'aws', 'artifacts.db'), join(awsRoot, 'artifacts.db'));
    const first = await run(process.execPath, [SOCI, '--content-store', 'soci', '--root', awsRoot, 'index', 'list']);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stderr, /^soci: note: .*artifacts\.db is AWS soci's database and is left alone; this soci keeps its own \(.*soci-artifacts\.sqlite\)/);
    assert.doesNotMatch(first.stderr, /not a database/);
    const second = await run(process.execPath, [SOCI, '--content-store', 'soci', '--root', awsRoot, 'create', `oci:${img.dir}`]);
    assert.equal(second.code, 0, second.stderr);
    assert.doesNotMatch(second.stderr, /note:/, 'the note is said once');
    // AWS's file is untouched and still works for AWS's soci
    assert.equal((await run(AWS, ['--root', awsRoot, 'ztoc', 'ls'])).code, 0);
  });

  test('standalone output in a directory that does not exist: one line, nothing created', async (t) => {
    const tmp = await tempDir(t);
    const img = buildLayout(join(tmp, 'img'), { images: [{ layers: [{ files: { big: pseudoRandom(11 << 20, 4, 0.5) } }] }] });
    for (const format of ['oci-archive', 'oci-dir']) {
      const r = await run(process.execPath, [
        SOCI,
        '--root',
        join(tmp, 'root'),
        'convert',
        '--standalone',
        '--format',
        format,
        img.dir,
        join(tmp, 'nonexistent-dir', 'out.tar'),
      ]);
      oneLine(r, /cannot write .*out\.tar: directory .*nonexistent-dir does not exist/);
      assert.ok(!(await readdir(tmp)).includes('nonexistent-dir'));
    }
    await writeFile(join(tmp, 'file'), '');
    const r = await run(process.execPath, [SOCI, '--root', join(tmp, 'root'), 'convert', '--standalone', img.dir, join(tmp, 'file', 'out.tar')]);
    oneLine(r, /does not exist/);
  });
});
