/**
 * A container that reads files of a lazily loaded image in a loop, for tests of what happens to
 * running containers when the snapshotter goes away and comes back: the loop's script, starting and
 * stopping its container, the lines it logged, and waiting for containerd to reach the daemon again.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { appPartBytes, buildAppImage } from './app-image.js';
import { exec, repoRoot, type StartedContainerd } from './containerd.js';
import { waitFor } from './env.js';
import type { TestRegistry } from './registry.js';

/**
 * The app image (./app-image.ts) with `parts` bulk files of 4 MiB, pushed to `reg` as app:v1 and
 * converted there by our CLI: `<host>/app:soci`, the md5 of each part, and the image's layer digests.
 */
export async function convertedAppImage(reg: TestRegistry, dir: string, parts: number): Promise<{ image: string; md5s: string[]; layers: string[] }> {
  const app = buildAppImage(join(dir, 'app'), { bulkMb: parts * 4 });
  const md5s = Array.from({ length: parts }, (_, i) => createHash('md5').update(appPartBytes(i)).digest('hex'));
  const copied = await exec('skopeo', ['copy', '--dest-tls-verify=false', `oci:${app.dir}:latest`, `docker://${reg.host}/app:v1`]);
  assert.equal(copied.code, 0, copied.stderr);
  const soci = [join(repoRoot, 'bin/soci.js'), '--root', join(dir, 'soci'), 'convert', '--remote', '-q', `${reg.host}/app:v1`, `${reg.host}/app:soci`];
  const converted = await exec(process.execPath, soci);
  assert.equal(converted.code, 0, converted.stderr);
  return { image: `${reg.host}/app:soci`, md5s, layers: app.layers[0]! };
}

/**
 * The container's loop: parts 0–2 over and over until /out/go exists, then all parts; each read
 * checked against its md5 and logged, one line per file: "ok <file>" or "BAD <file> <why>".
 */
export function loopScript(md5s: string[]): string {
  const check = (i: number) =>
    `s=$(/bin/busybox md5sum /usr/share/bulk/part${i}.bin 2>&1) && [ "\${s%% *}" = ${md5s[i]} ] && echo "ok part${i}" >> /out/log || echo "BAD part${i} $s" >> /out/log`;
  const first = [0, 1, 2].map(check).join('; ');
  const all = md5s.map((_, i) => check(i)).join('; ');
  return `while :; do if [ -e /out/go ]; then ${all}; else ${first}; fi; /bin/busybox sleep 0.05; done`;
}

export async function waitForDaemon(cd: StartedContainerd): Promise<void> {
  // containerd redials a proxy snapshotter with a backoff of up to 3 s.
  let ls = await cd.ctr(['-n', 'k8s.io', 'snapshots', '--snapshotter', 'soci', 'ls']);
  for (let i = 0; i < 40 && ls.code !== 0; i++) {
    await new Promise((res) => setTimeout(res, 250));
    ls = await cd.ctr(['-n', 'k8s.io', 'snapshots', '--snapshotter', 'soci', 'ls']);
  }
  assert.equal(ls.code, 0, `containerd never reached the restarted snapshotter: ${ls.stderr}`);
}

/** Runs `script` under busybox sh in a container of `image`, with `out` at /out; stopped after the test. */
export async function startLoop(
  t: { after: (fn: () => unknown) => void },
  cd: StartedContainerd,
  image: string,
  out: string,
  id: string,
  script: string,
): Promise<void> {
  t.after(() => stopLoop(cd, id));
  const mount = `type=bind,src=${out},dst=/out,options=rbind:rw`;
  const run = await cd.ctr([
    '-n',
    'k8s.io',
    'run',
    '-d',
    '--net-host',
    '--snapshotter',
    'soci',
    '--mount',
    mount,
    image,
    id,
    '/bin/busybox',
    'sh',
    '-c',
    script,
  ]);
  assert.equal(run.code, 0, run.stderr);
}

/** Stops the loop container at once: the test dir is removed after, and the loop writes into it. */
export async function stopLoop(cd: StartedContainerd, id: string): Promise<void> {
  const killed = await cd.ctr(['-n', 'k8s.io', 'task', 'kill', '-s', 'SIGKILL', id]);
  if (killed.code === 0) await waitFor(async () => (await cd.ctr(['-n', 'k8s.io', 'task', 'rm', '-f', id])).code === 0, 10_000, 200);
  await cd.ctr(['-n', 'k8s.io', 'containers', 'rm', id]);
}

export async function lines(out: string): Promise<string[]> {
  return (await readFile(join(out, 'log'), 'utf8').catch(() => '')).split('\n').filter(Boolean);
}
