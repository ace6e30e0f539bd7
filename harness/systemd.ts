/**
 * A private systemd for tests of our daemon as a service: systemd runs as PID 1 of its own pid and
 * mount namespaces (`unshare`), with a tmpfs /run holding the test's units, and is driven with
 * systemctl inside those namespaces (`nsenter`). Nothing of the host's init is touched.
 *
 *   const sd = await startSystemd(t, { units: { 'x.service': '...' }, share: [dir] });
 *   await sd.systemctl(['start', 'x.service']);
 *
 * `share`: directories bind-mounted onto themselves and made shared before the namespace is made,
 * so that mounts made inside them by a service (FUSE) are seen outside, by containerd and the test.
 * Stopped (SIGKILL to its PID 1, which ends every process in the namespace) after the test.
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runCmd, type CmdResult } from '../src/host/index.js';
import { newTempDir, waitFor } from './env.js';
import { removeTree } from './containerd.js';

export const SYSTEMD_BIN = '/lib/systemd/systemd';

export interface StartedSystemd {
  /** systemd's pid, as this process sees it */
  pid: number;
  systemctl(args: string[]): Promise<CmdResult>;
  /** MainPID of a unit, as this process sees it (0 when it has none) */
  mainPid(unit: string): Promise<number>;
}

const sh = (cmd: string): Promise<CmdResult> => runCmd('sh', ['-c', cmd], { timeoutMs: 60_000 });

function q(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

export async function startSystemd(
  t: { after: (fn: () => unknown) => void },
  opts: { units: Record<string, string>; share?: string[] },
): Promise<StartedSystemd> {
  const dir = await newTempDir('soci-systemd-');
  t.after(() => removeTree(dir));
  const units = join(dir, 'units');
  await mkdir(units);
  await writeFile(join(units, 'soci-test.target'), '[Unit]\nDescription=test target\nDefaultDependencies=no\n');
  for (const [name, text] of Object.entries(opts.units)) await writeFile(join(units, name), text);
  for (const d of opts.share ?? []) {
    await sh(`mount --bind ${q(d)} ${q(d)} && mount --make-shared ${q(d)}`);
    t.after(() => sh(`umount -R -l ${q(d)}`));
  }
  const boot = [
    'set -e',
    'mount -t tmpfs -o mode=755 tmpfs /run',
    'mkdir -p /run/systemd/system',
    `cp ${q(units)}/* /run/systemd/system/`,
    'mount -t cgroup2 none /sys/fs/cgroup',
    'export container=soci-test',
    `exec ${SYSTEMD_BIN} --system --unit=soci-test.target --log-level=warning`,
  ].join('\n');
  const log = join(dir, 'systemd.log');
  const out = openSync(log, 'a');
  const u = spawn('unshare', ['--pid', '--fork', '--mount', '--propagation', 'unchanged', '--mount-proc', 'sh', '-c', boot], {
    stdio: ['ignore', out, out],
    detached: true,
  });
  closeSync(out);
  let pid = 0;
  const found = await waitFor(
    async () => {
      const kids = (await readFile(`/proc/${u.pid}/task/${u.pid}/children`, 'utf8').catch(() => '')).trim();
      pid = Number(kids.split(' ')[0] || 0);
      if (!pid) return false;
      const comm = (await readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '')).trim();
      if (comm !== 'systemd') return false;
      return (await sh(`nsenter -t ${pid} -m -p systemctl is-system-running`)).stdout.trim() === 'running';
    },
    30_000,
    100,
  );
  t.after(async () => {
    if (pid) process.kill(pid, 'SIGKILL');
    await new Promise((r) => (u.exitCode !== null ? r(null) : u.once('exit', r)));
  });
  if (!found) throw new Error(`systemd did not start:\n${await readFile(log, 'utf8').catch(() => '')}`);
  const systemctl = (args: string[]) => sh(`nsenter -t ${pid} -m -p systemctl ${args.map(q).join(' ')}`);
  return {
    pid,
    systemctl,
    async mainPid(unit) {
      // MainPID is a pid of the namespace: map it to ours through NSpid in /proc/<pid>/status.
      const inner = Number((await systemctl(['show', '-P', 'MainPID', unit])).stdout.trim());
      if (!inner) return 0;
      const r = await sh(`grep -l "^NSpid:.*\\s${inner}$" /proc/[0-9]*/status 2>/dev/null`);
      for (const path of r.stdout.split('\n').filter(Boolean)) {
        const p = Number(path.split('/')[2]);
        const ns = await sh(`readlink /proc/${p}/ns/pid /proc/${pid}/ns/pid`);
        const [a, b] = ns.stdout.trim().split('\n');
        if (a && a === b) return p;
      }
      return 0;
    },
  };
}
