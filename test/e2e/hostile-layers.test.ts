/**
 * A layer the snapshotter cannot download must fail that one pull, never the daemon. Every component
 * real: registry (+ a fault proxy), `soci convert`, our soci-snapshotter-grpc, containerd with CRI,
 * runc. A healthy image is pulled and lazily mounted first; then, for images whose small layer (not
 * in the SOCI index, so our daemon downloads and unpacks it itself) has its blob deleted from the
 * registry's storage, answered with 500, or cut by a connection reset mid-body, a CRI pull fails
 * cleanly, the daemon keeps running and answering on its socket, and the healthy image's lazy
 * layer still serves new reads from the registry. startSnapshotter's after-hook fails the test if
 * the daemon logged a crash or exited on its own.
 *
 * Also: containers keep containerd's semantics on our lazy layers: a setuid-root binary run by uid
 * 65534 inside the container gets euid 0 (the container's rootfs is not nosuid, as with overlayfs).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { needs, tempDir } from '../../harness/env.js';
import { freePort, startRegistry } from '../../harness/registry.js';
import { startFaultProxy, type Fault } from '../../harness/fault-proxy.js';
import { exec as run, sociFuseMounts, startContainerd, startSnapshotter, CONTAINERD_VERSIONS } from '../../harness/containerd.js';
import { criPull } from '../../harness/cri.js';
import { BIG_FILE, bigFile, blobPath, buildEuidProbe, twoLayerImage } from '../../harness/hostile-image.js';
import { TestClient } from '../snapshotter/grpc-client.js';
import { sha256Hex } from '../../src/oci/digest.js';

const exec = promisify(execFile);
const SOCI = join(process.cwd(), 'bin/soci.js');
const skip = needs({ root: true, tools: ['containerd', 'ctr', 'runc', 'docker-registry', 'skopeo', 'gcc', 'sha256sum'] });
const SPAN = 262_144;

for (const version of CONTAINERD_VERSIONS)
  test(`hostile layers: a failed layer download fails one CRI pull, the daemon and its mounts live on (containerd ${version})`, {
    skip,
    timeout: 900_000,
  }, async (t) => {
    const tmp = await tempDir(t, 'soci-hostile-');
    const reg = await startRegistry(t);
    const proxy = await startFaultProxy(t, reg.host);
    const probe = await buildEuidProbe(tmp);
    const images: Record<string, { tiny: string; big: string }> = {};
    for (const [i, name] of ['healthy', 'gone', 'e500', 'reset', 'corrupt'].entries()) {
      const extra: Record<string, { content: Buffer; mode: number }> =
        name === 'healthy'
          ? {
              'bin/euid': { content: probe, mode: 0o4755 },
              'bin/drop': { content: probe, mode: 0o755 },
              'bin/busybox': { content: readFileSync('/bin/busybox'), mode: 0o755 },
            }
          : {};
      const img = twoLayerImage(join(tmp, name), name, 7000 + i, extra);
      images[name] = img;
      await exec('skopeo', ['copy', '--dest-tls-verify=false', `oci:${img.dir}:latest`, `docker://${reg.host}/${name}:v1`]);
      await exec(process.execPath, [
        SOCI,
        '--root',
        join(tmp, 'soci'),
        'convert',
        '--remote',
        '-q',
        '--min-layer-size',
        '1048576',
        '--span-size',
        String(SPAN),
        `${reg.host}/${name}:v1`,
        `${reg.host}/${name}:soci`,
      ]);
    }

    const metricsPort = await freePort();
    const sn = await startSnapshotter(t, {
      config: `metrics_address = "127.0.0.1:${metricsPort}"\n[background_fetch]\ndisable = true\n[blob]\nmax_retries = 2\nmax_span_verification_retries = 2\n`,
    });
    const cd = await startContainerd(t, { version, snapshotterSocket: sn.address, cri: true, plainHttpRegistries: [reg.host, proxy.host] });

    // The healthy image: its big layer lazily mounted (FUSE), its tiny one unpacked by us.
    const healthy = `${reg.host}/healthy:soci`;
    await criPull(cd.address, healthy);
    const mounts = await sociFuseMounts(sn.root);
    assert.equal(mounts.length, 1, `one lazy layer mounted\n${sn.logs().slice(-3000)}`);
    const want = bigFile(7000);
    let span = 0;
    /** Reads a 4 KiB block of the next span of the healthy lazy layer (not cached yet: a registry fetch). */
    const readNextSpan = async () => {
      const k = span++;
      const r = await run('sh', ['-c', `dd if='${join(mounts[0]!, BIG_FILE)}' bs=4096 skip=${(k * SPAN) / 4096} count=1 status=none | sha256sum`], {
        timeoutMs: 60_000,
      });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.split(' ')[0], sha256Hex(want.subarray(k * SPAN, k * SPAN + 4096)), `span ${k} of the healthy layer reads right`);
    };
    await readNextSpan();

    // Containers see setuid bits as with overlayfs: uid 65534 runs /bin/euid (04755 root) with euid 0.
    const cid = `suid-${Date.now()}`;
    const c = await cd.ctr(
      ['-n', 'k8s.io', 'run', '--rm', '--net-host', '--allow-new-privs', '--snapshotter', 'soci', healthy, cid, '/bin/drop', '/bin/euid'],
      { timeoutMs: 120_000 },
    );
    assert.equal(c.code, 0, c.stderr);
    assert.equal(c.stdout.trim(), '65534 0', 'setuid root honoured in the container');
    const st = await cd.ctr(
      [
        '-n',
        'k8s.io',
        'run',
        '--rm',
        '--net-host',
        '--snapshotter',
        'soci',
        healthy,
        `${cid}-stat`,
        '/bin/busybox',
        'sh',
        '-c',
        "busybox stat -c '%a %u' /bin/euid; busybox awk '$2 == \"/\" { print $4 }' /proc/mounts",
      ],
      { timeoutMs: 120_000 },
    );
    assert.equal(st.code, 0, st.stderr);
    const [mode, opts] = st.stdout.trim().split('\n');
    assert.equal(mode, '4755 0');
    assert.doesNotMatch(opts ?? '', /(^|,)nosuid(,|$)/, `container rootfs options: ${opts}`);

    // The faults, each on its own image's tiny layer (every request: retries do not get through).
    await rm(blobPath(reg, images.gone!.tiny));
    const always = (digest: string, fault: Fault) => proxy.add({ path: `/blobs/${digest}`, times: 1_000_000, fault });
    always(images.e500!.tiny, { kind: 'status', status: 500 });
    // The first response is cut mid-body, every resumed one right after its headers: no download
    // (ours, or containerd's, which resumes while it makes progress) ever gets the whole blob.
    proxy.add({ path: `/blobs/${images.reset!.tiny}`, times: 1, fault: { kind: 'reset', afterBytes: 40 } });
    always(images.reset!.tiny, { kind: 'reset', afterBytes: 0 });
    const cases: Array<[string, string, string]> = [
      ['blob deleted from the registry storage', `${reg.host}/gone:soci`, images.gone!.tiny],
      ['registry answers 500', `${proxy.host}/e500:soci`, images.e500!.tiny],
      ['connection reset mid-body', `${proxy.host}/reset:soci`, images.reset!.tiny],
    ];
    const grpc = new TestClient(sn.address, 'k8s.io');
    t.after(() => grpc.close());
    for (const [what, ref, tiny] of cases) {
      const err = await criPull(cd.address, ref, { timeoutMs: 180_000 }).then(
        () => null,
        (e: Error) => e,
      );
      assert.ok(err, `${what}: the CRI pull of ${ref} must fail`);
      t.diagnostic(`${what}: ${err.message.split('\n')[0]}`);
      // our daemon tried the layer itself and said why it could not
      const failed = await sn.waitLine(
        (l) => (l['local-snapshot-prepared'] === 'false' || l['local-snapshot-prepared'] === false) && String(l.reason ?? '').includes(tiny.slice(7, 19)),
      );
      assert.ok(failed, `${what}: a local-snapshot-prepared=false line naming the layer\n${sn.logs().slice(-3000)}`);
      assert.ok(!String(failed.reason).includes('\n'), 'one-line reason');
      // the daemon is alive and answers on its socket
      assert.equal(sn.proc.exitCode, null, `${what}: daemon exited\n${sn.logs().slice(-3000)}`);
      assert.equal(sn.proc.signalCode, null);
      assert.equal(await grpc.code('Stat', { key: 'no-such-snapshot' }), 5, `${what}: daemon answers (NOT_FOUND)`);
      const ls = await cd.ctr(['-n', 'k8s.io', 'snapshots', '--snapshotter', 'soci', 'ls']);
      assert.equal(ls.code, 0, ls.stderr);
      // the healthy mount is still there and still fetches from the registry
      assert.ok((await sociFuseMounts(sn.root)).includes(mounts[0]!), `${what}: healthy mount gone`);
      await readNextSpan();
    }
    assert.ok(proxy.count('GET', `/blobs/${images.reset!.tiny}`) > 1, 'the reset blob was retried');
    // …and a container of the healthy image still runs.
    const again = await cd.ctr(['-n', 'k8s.io', 'run', '--rm', '--net-host', '--snapshotter', 'soci', healthy, `${cid}-again`, '/bin/euid'], {
      timeoutMs: 120_000,
    });
    assert.equal(again.code, 0, again.stderr);
    assert.equal(again.stdout.trim(), '0 0');

    // Every Range response for a lazy layer corrupted (the image pulls: nothing reads the layer until
    // a container does): readers get EIO, the daemon logs one error line per span (not one per
    // attempt or reader) and counts every failed verification.
    const big = images.corrupt!.big;
    proxy.add({ path: `/blobs/${big}`, times: 1_000_000, fault: { kind: 'flip', offset: 1000 } });
    const before = new Set(await sociFuseMounts(sn.root));
    await criPull(cd.address, `${proxy.host}/corrupt:soci`);
    const lazy = (await sociFuseMounts(sn.root)).filter((m) => !before.has(m));
    assert.equal(lazy.length, 1, 'the corrupt image has one lazy layer');
    for (let i = 0; i < 3; i++) {
      const r = await run('dd', [`if=${join(lazy[0]!, BIG_FILE)}`, 'of=/dev/null', 'bs=4096', 'count=1', 'status=none'], { timeoutMs: 60_000 });
      assert.notEqual(r.code, 0, 'corrupt bytes are never served');
      assert.match(r.stderr, /Input\/output error/);
    }
    const bad = sn.logLines().filter((l) => l.msg === 'span verification failed' && l.layer === big);
    assert.ok(bad.length >= 1, `an error line for the span\n${sn.logs().slice(-3000)}`);
    assert.ok(bad.every((l) => l.level === 'error'));
    assert.equal(new Set(bad.map((l) => l.span)).size, bad.length, 'one line per span');
    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const counted = Number(
      new RegExp(`soci_fs_operation_count\\{operation_type="span_verification_failure_count",layer="${big}"\\} (\\d+)`).exec(metrics)?.[1] ?? 0,
    );
    assert.ok(counted >= 3 && counted > bad.length, `every failed verification counted (${counted}), lines ${bad.length}`);
    assert.match(metrics, new RegExp(`soci_fs_operation_count\\{operation_type="fuse_file_read_failure_count",layer="${big}"\\} [1-9]`));
  });

test('a throw nobody catches in the daemon: one fatal log line, exit non-zero; the harness after-hook fails the test', {
  skip: needs({ root: true }),
  timeout: 120_000,
}, async (t) => {
  const tmp = await tempDir(t, 'soci-fatal-');
  for (const kind of ['exception', 'rejection'] as const) {
    // A daemon whose extra gRPC hook throws from a timer (or rejects) once it is serving.
    const entry = join(tmp, `crash-${kind}.mts`);
    await writeFile(
      entry,
      `import { main } from ${JSON.stringify(join(process.cwd(), 'src/snapshotter/main.ts'))};
main(process.argv, { grpcServices: () => { setTimeout(() => { ${kind === 'exception' ? "throw new Error('boom\\nsecond line')" : "void Promise.reject(new Error('boom\\nsecond line'))"}; }, 1500); } });
`,
    );
    const hooks: Array<() => unknown> = [];
    const sn = await startSnapshotter({ after: (fn) => hooks.push(fn) }, { entry });
    t.after(async () => {
      for (const h of hooks) await Promise.resolve(h()).catch(() => undefined);
    });
    const code = await new Promise<number | null>((r) => (sn.proc.exitCode !== null ? r(sn.proc.exitCode) : sn.proc.once('exit', (c) => r(c))));
    assert.equal(code, 70, sn.logs());
    const fatal = sn.logLines().filter((l) => l.level === 'fatal');
    assert.equal(fatal.length, 1, sn.logs());
    const what = kind === 'exception' ? 'uncaught exception' : 'unhandled rejection';
    assert.equal(fatal[0]!.msg, `fatal: ${what}: boom`, 'one line: the message without its second line');
    assert.match(sn.logs(), new RegExp(`^soci-snapshotter-grpc: ${what}: boom$`, 'm'));
    // startSnapshotter's after-hook reports it
    let hookError: Error | null = null;
    for (const h of hooks) {
      try {
        await h();
      } catch (e) {
        hookError ??= e as Error;
      }
    }
    hooks.length = 0;
    assert.ok(hookError, 'the health check failed the test');
    assert.match(hookError.message, /snapshotter unhealthy: exited with code 70: [\s\S]*fatal: /);
  }
});
