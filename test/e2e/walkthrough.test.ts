/**
 * AWS's getting-started walkthrough, step by step, with our `soci` on containerd's image store, on
 * Debian's containerd 1.6 and on 2.2 (ctr where a person types nerdctl), against a private registry
 * with basic auth standing in for docker.io:
 *   pull → soci convert → images ls → push → ztoc ls/info/get-file → index list/info →
 *   rmi + `index list -q | xargs -r index rm` → CRI pull with our snapshotter → the container serves
 * HTTP from lazily mounted layers. AWS's own `soci` converts the same image to the same digest.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, rm as rmFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { appCommand, APP_INDEX_HTML, buildAppImage } from '../../harness/app-image.js';
import {
  CONTAINERD_VERSIONS,
  CONTAINERD2_BIN,
  exec as run,
  sociFuseMounts,
  startContainerd,
  startSnapshotter,
  type StartedContainerd,
} from '../../harness/containerd.js';
import { criPull } from '../../harness/cri.js';
import { needs, tempDir } from '../../harness/env.js';
import { freePort, startRegistry } from '../../harness/registry.js';

const exec = promisify(execFile);
const SOCI = join(process.cwd(), 'bin/soci.js');
const AWS = `${process.env.SOCI_TEST_TOOLS ?? '/opt/soci-test-tools/bin'}/aws-soci`;
const tools = ['containerd', 'ctr', 'runc', 'docker-registry', 'skopeo', 'curl', AWS, join(CONTAINERD2_BIN, 'containerd')];
const skip = needs({ root: true, tools });

async function waitHttp(url: string, ms: number): Promise<string> {
  const deadline = Date.now() + ms;
  let last = '';
  while (Date.now() < deadline) {
    const r = await run('curl', ['-sf', '--max-time', '2', url]);
    if (r.code === 0) return r.stdout;
    last = r.stderr;
    await new Promise((res) => setTimeout(res, 200));
  }
  throw new Error(`${url} never answered: ${last}`);
}

/** The target digest of a containerd image, from `ctr images ls`. */
async function target(cd: StartedContainerd, name: string): Promise<string> {
  const r = await cd.ctr(['images', 'ls']);
  const line = r.stdout.split('\n').find((l) => l.split(/\s+/)[0] === name);
  assert.ok(line, `ctr images ls has ${name}:\n${r.stdout}`);
  return line.split(/\s+/)[2]!;
}

for (const version of CONTAINERD_VERSIONS) {
  describe(`the walkthrough on containerd ${version}`, { skip, timeout: 900_000 }, () => {
    test('pull, convert, push, inspect, remove, lazy run', async (t) => {
      const tmp = await tempDir(t);
      const reg = await startRegistry(t, { auth: 'htpasswd' });
      const creds = `${reg.user}:${reg.password}`;
      const app = buildAppImage(join(tmp, 'app'), { bulkMb: 16, seed: 11 });
      await exec('skopeo', ['copy', '--dest-tls-verify=false', '--dest-creds', creds, `oci:${app.dir}:latest`, `docker://${reg.host}/library/app:latest`]);

      const ctdSocket = join(tmp, 'containerd.sock');
      // The snapshotter first (containerd would otherwise be in dial backoff towards it), told where
      // containerd's socket will be; it keeps its own temp dir (its FUSE mounts are unmounted first).
      const sn = await startSnapshotter(t, {
        config: `[cri_keychain]\nenable_keychain = true\nimage_service_path = "${ctdSocket}"\n[background_fetch]\ndisable = true\n`,
      });
      const cd = await startContainerd(t, {
        version,
        snapshotterSocket: sn.address,
        address: ctdSocket,
        cri: true,
        plainHttpRegistries: [reg.host],
      });
      const hosts = cd.hostsDir;
      const root = join(tmp, 'soci-root');
      const soci = async (args: string[], input?: string) =>
        run(process.execPath, [SOCI, '--address', ctdSocket, '--root', root, ...args], input === undefined ? {} : { input });
      const ok = async (args: string[]) => {
        const r = await soci(args);
        assert.equal(r.code, 0, `soci ${args.join(' ')}: ${r.stderr}`);
        return r.stdout;
      };

      // 1. sudo nerdctl pull docker.io/library/rabbitmq:latest
      const src = `${reg.host}/library/app:latest`;
      const dst = `${reg.host}/${reg.user}/app-soci:latest`;
      const pull = await cd.ctr(['images', 'pull', '--hosts-dir', hosts, '--user', creds, src], { timeoutMs: 300_000 });
      assert.equal(pull.code, 0, pull.stderr);

      // 2. sudo soci convert SRC DST: what AWS prints (a line per layer), nothing else on stdout.
      const conv = await ok(['convert', '--min-layer-size', String(1 << 20), src, dst]);
      const lines = conv.trim().split('\n');
      assert.equal(lines.length, 2, conv);
      assert.match(lines[0]!, /^layer sha256:[0-9a-f]{64} -> ztoc sha256:[0-9a-f]{64}$/);
      assert.match(
        lines[1]!,
        /^ztoc skipped - layer sha256:[0-9a-f]{64} \(application\/vnd\.oci\.image\.layer\.v1\.tar\+gzip\) size \d+ is less than min-layer-size 1048576$/,
      );
      const ztoc = /ztoc (sha256:[0-9a-f]{64})/.exec(lines[0]!)![1]!;

      // 3. sudo nerdctl images: DST is an image record; its graph carries containerd's GC references.
      const ours = await target(cd, dst);
      const leases = await cd.ctr(['leases', 'ls', '-q']);
      assert.equal(leases.stdout.trim(), '', 'the convert released its lease');
      const content = (await cd.ctr(['content', 'ls'])).stdout;
      const label = (d: string) => content.split('\n').find((l) => l.startsWith(d)) ?? '';
      assert.match(label(ours), /containerd\.io\/gc\.ref\.content\.m\.0=/);
      // containerd's GC keeps everything DST needs once the source image is gone.
      assert.equal((await cd.ctr(['images', 'rm', '--sync', src])).code, 0);
      assert.equal((await cd.ctr(['content', 'get', ztoc])).code, 0, 'the zTOC survives GC (referenced from DST)');

      // The oracle: AWS's soci converts the same image to the same digest, in both content-store modes.
      assert.equal((await cd.ctr(['images', 'pull', '--hosts-dir', hosts, '--user', creds, src], { timeoutMs: 300_000 })).code, 0);
      await mkdir(join(tmp, 'aws-root'));
      const aws = await run(AWS, [
        '--address',
        ctdSocket,
        '--root',
        join(tmp, 'aws-root'),
        'convert',
        '--min-layer-size',
        String(1 << 20),
        src,
        `${reg.host}/aws/app:latest`,
      ]);
      assert.equal(aws.code, 0, aws.stderr);
      assert.equal(await target(cd, `${reg.host}/aws/app:latest`), ours, 'the same image index digest as AWS soci');
      await ok(['--content-store', 'soci', 'convert', '--min-layer-size', String(1 << 20), src, `${reg.host}/soci-store/app:latest`]);
      assert.equal(await target(cd, `${reg.host}/soci-store/app:latest`), ours, 'the same digest with --content-store soci');

      // 4. sudo nerdctl push DST: the whole graph, zTOCs included.
      const push = await cd.ctr(['images', 'push', '--hosts-dir', hosts, '--user', creds, dst], { timeoutMs: 300_000 });
      assert.equal(push.code, 0, push.stderr);
      const blob = await run('curl', ['-sf', '-o', '/dev/null', '-u', creds, `http://${reg.host}/v2/${reg.user}/app-soci/blobs/${ztoc}`]);
      assert.equal(blob.code, 0, 'the zTOC is in the registry');

      // 5. soci ztoc ls / info / get-file; soci index list / info
      assert.match(await ok(['ztoc', 'ls']), new RegExp(`^DIGEST\\s+SIZE\\s+LAYER DIGEST\\n${ztoc}\\s+\\d+\\s+sha256:`));
      const zinfo = JSON.parse(await ok(['ztoc', 'info', ztoc]));
      assert.ok(zinfo.files.some((f: { filename: string }) => f.filename === 'www/index.html'));
      assert.equal(await ok(['ztoc', 'get-file', ztoc, 'www/index.html']), `${APP_INDEX_HTML}\n`);
      const list = await ok(['index', 'list']);
      assert.match(list, /^DIGEST\s+SIZE\s+IMAGE REF\s+PLATFORM\s+MEDIA TYPE\s+MANIFEST VERSION\s+CREATED\n/);
      assert.match(
        list,
        new RegExp(
          `sha256:[0-9a-f]{64}\\s+\\d+\\s+${dst.replace(/[.]/g, '\\.')}\\s+linux/amd64\\s+application/vnd\\.oci\\.image\\.manifest\\.v1\\+json\\s+v2\\s+\\d+(m\\d+)?s ago`,
        ),
      );
      const index = (await ok(['index', 'list', '-q'])).trim().split('\n')[0]!;
      assert.equal(JSON.parse(await ok(['index', 'info', index])).config.mediaType, 'application/vnd.amazon.soci.index.v2+json');

      // rebuild-db finds the indexes in containerd's content store again (here: after losing the DB)
      for (const f of ['soci-artifacts.sqlite', 'soci-artifacts.sqlite-wal', 'soci-artifacts.sqlite-shm']) await rmFile(join(root, f), { force: true });
      assert.equal(await ok(['index', 'list', '-q']), '');
      await ok(['rebuild-db']);
      assert.ok((await ok(['index', 'list', '-q'])).split('\n').includes(index), 'rebuild-db found the v2 index');
      assert.match(await ok(['ztoc', 'ls', '-q']), new RegExp(ztoc));

      // v1: soci create + soci push from containerd's store, the same index as AWS's create
      // with a prefetch artifact, listed by `soci prefetch ls/info` exactly as AWS's CLI lists it
      const create = ['create', '--min-layer-size', String(1 << 20), '--prefetch-file', 'www/index.html', src];
      const created = await soci(create);
      assert.equal(created.code, 0, created.stderr);
      const v1 = (await ok(['index', 'list', '-q', '--ref', src])).trim().split('\n')[0]!;
      const awsRoot = ['--address', ctdSocket, '--root', join(tmp, 'aws-root')];
      const awsV1 = await run(AWS, [...awsRoot, ...create]);
      assert.equal(awsV1.code, 0, awsV1.stderr);
      // AWS indexes layers concurrently, so its lines come in any order: the same lines, sorted.
      const sortedLines = (out: string) => out.trim().split('\n').sort();
      assert.deepEqual(sortedLines(created.stdout), sortedLines(awsV1.stdout), 'create prints what AWS prints (the prefetch artifact line included)');
      const noTime = (j: string) => (JSON.parse(j) as Array<Record<string, unknown>>).map(({ CreatedAt: _c, ...rest }) => rest);
      const awsPrefetch = await run(AWS, [...awsRoot, 'prefetch', 'ls', '--json']);
      assert.deepEqual(noTime(await ok(['prefetch', 'ls', '--json'])), noTime(awsPrefetch.stdout));
      const prefetchDigest = (noTime(awsPrefetch.stdout)[0] as { Digest: string }).Digest;
      const noCreated = (t: string) => t.replace(/^Created: .*$/m, '').replace(/ \d+(m\d+)?s ago/g, ' ago');
      const awsInfo = await run(AWS, [...awsRoot, 'prefetch', 'info', '--json', prefetchDigest]);
      assert.equal(noCreated(await ok(['prefetch', 'info', '--json', prefetchDigest])), noCreated(awsInfo.stdout));
      const awsLs = await run(AWS, [...awsRoot, 'prefetch', 'ls']);
      assert.equal(noCreated(await ok(['prefetch', 'ls'])), noCreated(awsLs.stdout), 'the same table, column widths included');
      const awsList = await run(AWS, ['--address', ctdSocket, '--root', join(tmp, 'aws-root'), 'index', 'list', '-q', '--ref', src]);
      assert.ok(awsList.stdout.split('\n').includes(v1), `AWS's create made the same v1 index ${v1}:\n${awsList.stdout}`);
      const pushed = await soci(['push', '-u', creds, '-q', src]);
      assert.equal(pushed.code, 0, pushed.stderr);
      assert.equal(pushed.stdout.trim(), v1);
      const subject = JSON.parse(await ok(['index', 'info', v1])).subject.digest as string;
      const referrers = await run('curl', [
        '-sf',
        '-u',
        creds,
        '-H',
        'Accept: application/vnd.oci.image.index.v1+json',
        `http://${reg.host}/v2/library/app/manifests/${subject.replace(':', '-')}`,
      ]);
      assert.equal(referrers.code, 0, 'the v1 index is discoverable through the referrers tag');
      assert.match(referrers.stdout, new RegExp(v1));

      // 6. sudo nerdctl rmi -f $(sudo nerdctl images -q); soci index list -q | xargs -r soci index rm
      for (const name of (await cd.ctr(['images', 'ls', '-q'])).stdout.trim().split('\n'))
        assert.equal((await cd.ctr(['images', 'rm', '--sync', name])).code, 0);
      const rm = await run('sh', [
        '-c',
        `${process.execPath} ${SOCI} --address ${ctdSocket} --root ${root} index list -q | xargs -r ${process.execPath} ${SOCI} --address ${ctdSocket} --root ${root} index rm`,
      ]);
      assert.equal(rm.code, 0, rm.stderr);
      assert.equal(rm.stdout, '', 'index rm is silent');
      assert.equal(await ok(['index', 'list', '-q']), '');
      assert.equal(await ok(['ztoc', 'ls', '-q']), '');
      const again = await run('sh', [
        '-c',
        `${process.execPath} ${SOCI} --root ${root} --address ${ctdSocket} index list -q | xargs -r ${process.execPath} ${SOCI} --root ${root} index rm`,
      ]);
      assert.equal(again.code, 0, 'on an empty store xargs -r runs nothing');

      // 7. sudo nerdctl pull --snapshotter soci DST && nerdctl run --snapshotter soci --net host --rm DST
      await criPull(sn.address, dst, { username: reg.user!, password: reg.password! });
      const mounts = await sociFuseMounts(sn.root);
      assert.equal(mounts.length, 1, `the indexed layer is mounted lazily\n${sn.logs().slice(-3000)}`);
      const port = await freePort();
      const id = `walk-${Date.now()}`;
      try {
        const r = await cd.ctr(['-n', 'k8s.io', 'run', '-d', '--net-host', '--snapshotter', 'soci', dst, id, ...appCommand(port)]);
        assert.equal(r.code, 0, r.stderr);
        assert.equal(await waitHttp(`http://127.0.0.1:${port}/index.html`, 60_000), APP_INDEX_HTML);
      } finally {
        await cd.ctr(['-n', 'k8s.io', 'task', 'kill', '-s', 'SIGKILL', id]);
        await new Promise((r) => setTimeout(r, 500));
        await cd.ctr(['-n', 'k8s.io', 'task', 'rm', '-f', id]);
        await cd.ctr(['-n', 'k8s.io', 'containers', 'rm', id]);
      }
    });
  });
}
