/**
 * e2e helpers: a PRIVATE containerd 1.6 (own root/state/sockets under a temp dir, never the
 * system one) wired to our snapshotter as `[proxy_plugins.soci]`, and our daemon as a child process.
 *
 *   const sn = await startSnapshotter(t);                       // our daemon, waits for its socket
 *   const cd = await startContainerd(t, { snapshotterSocket: sn.address });
 *   const r = await cd.ctr(['-n', 'test', 'snapshots', '--snapshotter', 'soci', 'ls']);
 *
 * Both register an after-hook on `t` that stops the process (by PID), kills the runc shims this
 * containerd started, unmounts anything left under the temp dir, then deletes it. The snapshotter's
 * hook also fails the test when the daemon exited on its own or logged a crash (uncaught exception,
 * unhandled rejection, unhandled 'error' event).
 * Needs root and containerd/ctr/runc: gate tests with `needs({ root: true, tools: [...] })`.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConnectionKeeper } from '../src/fuse/index.js';
import { mountPointsUnder, readMountinfo } from '../src/host/index.js';
import { newTempDir, waitFor } from './env.js';
import { type AfterHost, captureOutput, stopProcess, waitReady } from './process.js';

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');

export interface ExecResult {
  stdout: string;
  stderr: string;
  code: number;
}

export function exec(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number; input?: string } = {}): Promise<ExecResult> {
  return new Promise((res) => {
    const child = execFile(cmd, args, { env: opts.env ?? process.env, timeout: opts.timeoutMs ?? 120_000, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      res({ stdout: String(stdout), stderr: String(stderr), code });
    });
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}

/** Like exec, but throws with the command's stderr (or stdout) unless it exits 0; resolves with stdout. */
export async function execOk(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number; input?: string } = {}): Promise<string> {
  const r = await exec(cmd, args, opts);
  if (r.code !== 0) throw new Error(`${cmd} ${args[0] ?? ''} failed (${r.code}): ${(r.stderr || r.stdout).trim()}`);
  return r.stdout;
}

/** Mount points under dir (deepest first; a path mounted twice appears twice). */
export const mountsUnder = mountPointsUnder;

/** Mount points of our lazy layers (`fuse.soci`), optionally only those under `dir`. */
export async function sociFuseMounts(dir?: string): Promise<string[]> {
  return (await readMountinfo())
    .filter((m) => m.fstype === 'fuse.soci')
    .map((m) => m.mountpoint)
    .filter((m) => !dir || m === dir || m.startsWith(dir + '/'));
}

/** Unmounts everything under dir then removes it; never deletes through a mount. */
export async function removeTree(dir: string): Promise<void> {
  for (const m of await mountsUnder(dir)) {
    const r = await exec('umount', [m]);
    if (r.code !== 0) await exec('umount', ['-l', m]);
  }
  if ((await mountsUnder(dir)).length > 0) throw new Error(`still mounted under ${dir}; not deleting`);
  await rm(dir, { recursive: true, force: true });
}

/**
 * The FUSE connection holders a daemon with this root started, ended: they outlive the daemon on
 * purpose, but not the test.
 */
export async function killFuseHolders(root: string): Promise<void> {
  const keeper = new ConnectionKeeper(join(root, 'soci', 'fuse-connections'));
  for (const k of await keeper.live()) await keeper.release(k.mountpoint); // live() ends the stale ones
}

/** PIDs whose command line mentions `needle` (our unique socket path): the shims we caused. */
async function pidsMentioning(needle: string): Promise<number[]> {
  const pids: number[] = [];
  for (const d of await readdir('/proc')) {
    if (!/^\d+$/.test(d) || Number(d) === process.pid) continue;
    const cmd = await readFile(`/proc/${d}/cmdline`, 'utf8').catch(() => '');
    if (cmd.includes(needle)) pids.push(Number(d));
  }
  return pids;
}

/** PIDs whose parent is one of `parents`. */
async function childrenOf(parents: number[]): Promise<number[]> {
  if (parents.length === 0) return [];
  const want = new Set(parents);
  const out: number[] = [];
  for (const d of await readdir('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const stat = await readFile(`/proc/${d}/stat`, 'utf8').catch(() => '');
    // the ppid is the second field after the parenthesised command, which may hold spaces
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    if (want.has(ppid)) out.push(Number(d));
  }
  return out;
}

export interface StartedSnapshotter {
  /** Socket path of our daemon. */
  address: string;
  root: string;
  configPath: string;
  proc: ChildProcess;
  /** Everything the daemon wrote to stderr so far (pino JSON lines). */
  logs(): string;
  /** Parsed JSON log lines. */
  logLines(): Record<string, unknown>[];
  /**
   * The first parsed log line `match` accepts, waiting up to `timeoutMs` for it: the daemon's
   * stderr pipe can lag a gRPC reply that was sent after the line was logged.
   */
  waitLine(match: (l: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown> | undefined>;
  /**
   * Sends the signal (default SIGINT) and resolves with the exit code (null for a daemon that took
   * over in a handover: it is no child of ours).
   */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  /**
   * SIGUSR2: the daemon hands over to a new process of the same binary and exits. Resolves with the
   * new daemon's 'handover complete' line, once the old one has exited; stop() then stops the new one.
   */
  handover(timeoutMs?: number): Promise<Record<string, unknown>>;
  /** The pid of the daemon serving now. */
  pid(): number;
}

/** Whether `pid` has ended (gone, or a zombie nobody reaped yet). */
async function pidEnded(pid: number): Promise<boolean> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => null);
  return stat === null || /^\d+ \(.*\) Z/.test(stat);
}

/** Stops a process that is not our child (a daemon that took over in a handover). */
async function stopPid(pid: number, signal: NodeJS.Signals, timeoutMs = 15_000): Promise<null> {
  try {
    process.kill(pid, signal);
  } catch {
    return null;
  }
  if (!(await waitFor(() => pidEnded(pid), timeoutMs, 100))) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
    await waitFor(() => pidEnded(pid), 5000, 100);
  }
  return null;
}

export interface SnapshotterOptions {
  /** Daemon root; default a fresh dir inside the helper's temp dir. Reuse it to test restarts. */
  root?: string;
  /** TOML text written to the --config file (default empty = defaults). */
  config?: string;
  /** Entry script (default src/snapshotter/main.ts); a fixture can call main(argv, hooks). */
  entry?: string;
  env?: NodeJS.ProcessEnv;
  logLevel?: string;
  /** Directory for the socket/config (default: a new temp dir removed after the test). */
  dir?: string;
  /** Socket path (default: a fresh one in `dir`); reuse it with `root` to restart "the same" daemon. */
  address?: string;
  /**
   * The daemon's flags, instead of the ones built from the options above (a DaemonSet's command);
   * they must name the same `address` and `root`.
   */
  args?: string[];
}

/**
 * Lines that mean the daemon crashed or nearly did: its own fatal handler's line (main.ts), or
 * Node's reports when no handler ran.
 */
const DAEMON_FATAL =
  /"level":"fatal"|"msg":"fatal:|Unhandled 'error' event|uncaughtException|unhandledRejection|UnhandledPromiseRejection|triggerUncaughtException|uncaught exception|unhandled rejection/i;

export async function startSnapshotter(t: AfterHost, opts: SnapshotterOptions = {}): Promise<StartedSnapshotter> {
  let dir = opts.dir;
  if (!dir) {
    const d = await newTempDir('soci-sn-');
    t.after(() => removeTree(d));
    dir = d;
  }
  const root = opts.root ?? join(dir, 'root');
  const address = opts.address ?? join(dir, `sn-${Date.now()}-${Math.random().toString(36).slice(2, 8)}.sock`);
  const configPath = join(dir, 'config.toml');
  await writeFile(configPath, opts.config ?? '');
  const entry = opts.entry ?? join(repoRoot, 'src', 'snapshotter', 'main.ts');
  const proc = spawn(
    process.execPath,
    // The TypeScript loader only for a TypeScript entry (.ts, .mts): it runs a thread of its own,
    // which a built daemon (bin/*.js, as users run it) does not have, and the bench measures memory.
    [
      ...(/\.[cm]?js$/.test(entry) ? [] : ['--import', 'tsx']),
      entry,
      ...(opts.args ?? ['--address', address, '--root', root, '--config', configPath, '--log-level', opts.logLevel ?? 'debug']),
    ],
    {
      cwd: repoRoot,
      env: { ...process.env, ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const logs = captureOutput(proc);
  // Health: the daemon must not die on its own, nor log an uncaught exception / unhandled rejection.
  let stopAsked = false;
  let died: string | null = null;
  proc.once('exit', (code, signal) => {
    if (!stopAsked && (code !== 0 || signal)) died = signal ? `killed by ${signal}` : `exited with code ${code}`;
  });
  // the pid of a daemon that took over from `proc` in a handover
  let successor: number | null = null;
  const stopNow = (signal: NodeJS.Signals) => (successor !== null ? stopPid(successor, signal) : stopProcess(proc, signal));
  t.after(async () => {
    stopAsked = true;
    await stopNow('SIGTERM');
    await killFuseHolders(root);
    const fatal = logs()
      .split('\n')
      .find((l) => DAEMON_FATAL.test(l));
    if (died || fatal) throw new Error(`snapshotter unhealthy: ${died ?? 'crash logged'}${fatal ? `: ${fatal.slice(0, 2000)}` : ''}\n${logs().slice(-4000)}`);
  });
  await waitReady('snapshotter start', () => existsSync(address) && logs().includes('successfully started'), 30_000, proc, logs);
  const logLines = (): Record<string, unknown>[] =>
    logs()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  return {
    address,
    root,
    configPath,
    proc,
    logs,
    logLines,
    waitLine: async (match, timeoutMs = 10_000) => {
      let found: Record<string, unknown> | undefined;
      await waitFor(() => (found = logLines().find(match)) !== undefined, timeoutMs);
      return found;
    },
    stop: (signal: NodeJS.Signals = 'SIGINT') => {
      stopAsked = true;
      return stopNow(signal);
    },
    handover: async (timeoutMs = 60_000) => {
      const from = successor ?? proc.pid!;
      stopAsked = true; // the old daemon exits 0 by itself
      process.kill(from, 'SIGUSR2');
      let line: Record<string, unknown> | undefined;
      await waitFor(() => (line = logLines().find((l) => l.msg === 'handover complete' && l.from === from)) !== undefined, timeoutMs);
      if (!line) throw new Error(`no handover from pid ${from}:\n${logs().slice(-3000)}`);
      successor = Number(line.pid);
      return line;
    },
    pid: () => successor ?? proc.pid!,
  };
}

export interface StartedContainerd {
  /** containerd's gRPC socket. */
  address: string;
  root: string;
  state: string;
  proc: ChildProcess;
  logs(): string;
  version: ContainerdVersion;
  /** containerd's hosts directory (CRI's registry config_path; pass it to `ctr images pull --hosts-dir`) */
  hostsDir: string;
  /** the config.toml it runs with */
  configPath: string;
  /** Runs `ctr --address <ours> ...args` (the ctr of the same version). */
  ctr(args: string[], opts?: { timeoutMs?: number; input?: string }): Promise<ExecResult>;
  stop(): Promise<void>;
}

export interface ContainerdOptions {
  /** Our snapshotter's socket; registered as proxy plugin "soci". */
  snapshotterSocket: string;
  /** Appended to the generated config.toml (version 2 format). */
  extraToml?: string;
  /** Enable the CRI plugin with snapshotter = "soci", disable_snapshot_annotations = false. */
  cri?: boolean;
  /** CRI's snapshotter (default "soci"; "overlayfs" for full-pull baselines) */
  criSnapshotter?: string;
  /** containerd's socket path (default: inside its temp dir); fix it when something must know it first */
  address?: string;
  /** Debian's 1.6 (default) or 2.2, built from the Go module proxy by scripts/install-test-tools.sh */
  version?: ContainerdVersion;
  /** registries that CRI (and `ctr --hosts-dir <hostsDir>`) reach over plain http */
  plainHttpRegistries?: string[];
  /**
   * The snapshotter's root, exported to containerd as the proxy plugin's `root` (CRI reports that
   * filesystem as the image filesystem, which kubelet's disk accounting and image GC read).
   */
  snapshotterRoot?: string;
}

export type ContainerdVersion = '1.6' | '2.2';
const CGROUP_V1_WARNING = /level=warning msg="DEPRECATION: The support for cgroup v1 is deprecated/;
/** Every containerd the e2e suites run on. */
export const CONTAINERD_VERSIONS: ContainerdVersion[] = ['1.6', '2.2'];
export const CONTAINERD2_BIN = process.env.SOCI_TEST_TOOLS_CONTAINERD2 ?? '/opt/soci-test-tools/containerd-2.2/bin';

/** containerd and ctr of a version; 2.2's directory also goes first in PATH (its shim is found there). */
export function containerdTools(version: ContainerdVersion = '1.6'): { containerd: string; ctr: string; env: NodeJS.ProcessEnv } {
  if (version === '1.6') return { containerd: 'containerd', ctr: 'ctr', env: process.env };
  return {
    containerd: join(CONTAINERD2_BIN, 'containerd'),
    ctr: join(CONTAINERD2_BIN, 'ctr'),
    env: { ...process.env, PATH: `${CONTAINERD2_BIN}:${process.env.PATH ?? ''}` },
  };
}

export async function startContainerd(t: AfterHost, opts: ContainerdOptions): Promise<StartedContainerd> {
  const dir = await newTempDir('soci-ctd-');
  const root = join(dir, 'root');
  const state = join(dir, 'state');
  const address = opts.address ?? join(dir, 'containerd.sock');
  // Registries reached over plain http, the way containerd's docs set it: a hosts.toml per host.
  const hostsDir = join(dir, 'certs.d');
  for (const host of opts.plainHttpRegistries ?? []) {
    await mkdir(join(hostsDir, host), { recursive: true });
    await writeFile(join(hostsDir, host, 'hosts.toml'), `server = "http://${host}"\n[host."http://${host}"]\n  capabilities = ["pull", "resolve", "push"]\n`);
  }
  const toml = (opts.version ?? '1.6') === '1.6' ? configV2(opts, root, state, address, dir, hostsDir) : configV3(opts, root, state, address, hostsDir);
  const configPath = join(dir, 'config.toml');
  await writeFile(configPath, toml);
  const tools = containerdTools(opts.version);
  const proc = spawn(tools.containerd, ['--config', configPath], { stdio: ['ignore', 'pipe', 'pipe'], env: tools.env });
  const logs = captureOutput(proc);
  // containerd 2.2's ctr warns on every call on a cgroup v1 host (as this one is); that says nothing
  // about the command, so it is dropped and outputs compare across versions.
  const ctr = async (args: string[], o: { timeoutMs?: number; input?: string } = {}) => {
    const r = await exec(tools.ctr, ['--address', address, ...args], { ...o, env: tools.env });
    return {
      ...r,
      stderr: r.stderr
        .split('\n')
        .filter((l) => !CGROUP_V1_WARNING.test(l))
        .join('\n'),
    };
  };
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    // Shims outlive containerd; they carry our socket path in their command line. The containers
    // they still run (pods kubelet left running) are their children: killed first, they would
    // otherwise be adopted by init and outlive the test.
    const shims = await pidsMentioning(address);
    for (const pid of [...(await childrenOf(shims)), ...shims]) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
    await stopProcess(proc, 'SIGTERM');
  };
  t.after(async () => {
    await stop();
    await removeTree(dir);
  });
  await waitReady('containerd start', async () => existsSync(address) && (await ctr(['version'], { timeoutMs: 5000 })).code === 0, 30_000, proc, logs);
  return { address, root, state, proc, logs, ctr, stop, version: opts.version ?? '1.6', hostsDir, configPath };
}

/** The sections both config versions share: sockets, log level, our snapshotter as a proxy plugin. */
function sockets(opts: ContainerdOptions, address: string): string {
  return `
[grpc]
  address = "${address}"

[ttrpc]
  address = "${address}.ttrpc"

[debug]
  level = "info"

[proxy_plugins.soci]
  type = "snapshot"
  address = "${opts.snapshotterSocket}"
${opts.snapshotterRoot ? `  [proxy_plugins.soci.exports]\n    root = "${opts.snapshotterRoot}"\n` : ''}`;
}

/** containerd 1.6's config (version 2). */
function configV2(opts: ContainerdOptions, root: string, state: string, address: string, dir: string, hostsDir: string): string {
  const disabled = [
    'io.containerd.snapshotter.v1.btrfs',
    'io.containerd.snapshotter.v1.zfs',
    'io.containerd.snapshotter.v1.aufs',
    'io.containerd.snapshotter.v1.devmapper',
  ];
  if (!opts.cri) disabled.push('io.containerd.grpc.v1.cri');
  const cri = opts.cri
    ? `
[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "${opts.criSnapshotter ?? 'soci'}"
    disable_snapshot_annotations = false
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "${hostsDir}"
`
    : '';
  return `version = 2
root = "${root}"
state = "${state}"
disabled_plugins = ${JSON.stringify(disabled)}

[plugins."io.containerd.internal.v1.opt"]
  path = "${join(dir, 'opt')}"
${sockets(opts, address)}${cri}
${opts.extraToml ?? ''}
`;
}

/** containerd 2.x's config (version 3: CRI is split into the images and runtime plugins). */
function configV3(opts: ContainerdOptions, root: string, state: string, address: string, hostsDir: string): string {
  const disabled = [
    'io.containerd.snapshotter.v1.btrfs',
    'io.containerd.snapshotter.v1.zfs',
    'io.containerd.snapshotter.v1.devmapper',
    'io.containerd.snapshotter.v1.blockfile',
    'io.containerd.snapshotter.v1.erofs',
  ];
  if (!opts.cri)
    disabled.push(
      'io.containerd.grpc.v1.cri',
      'io.containerd.cri.v1.images',
      'io.containerd.cri.v1.runtime',
      'io.containerd.podsandbox.controller.v1.podsandbox',
    );
  const cri = opts.cri
    ? `
[plugins.'io.containerd.cri.v1.images']
  snapshotter = "${opts.criSnapshotter ?? 'soci'}"
  disable_snapshot_annotations = false
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = "${hostsDir}"

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
`
    : '';
  return `version = 3
root = "${root}"
state = "${state}"
disabled_plugins = ${JSON.stringify(disabled)}

${sockets(opts, address)}${cri}
${opts.extraToml ?? ''}
`;
}
