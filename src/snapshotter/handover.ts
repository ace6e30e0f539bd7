/**
 * A graceful upgrade on SIGUSR2, as nginx and HAProxy do it: the running daemon starts the binary
 * now installed at its own path, with the same arguments, and hands over to it with no gap in the
 * FUSE mounts. Over an IPC channel:
 *
 *   new → old  ready     the new daemon read its config and is about to take over
 *   old        stops its gRPC server (calls in progress finish) and metrics; FUSE goes on
 *   old → new  drained
 *   new        takes each kept FUSE connection from its holder and serves it beside the old
 *              daemon (the kernel gives each request to one reader), binds the socket
 *   new → old  serving
 *   old        exits, keeping the mounts; the new daemon then recovers the requests the old one
 *              had read and not answered (FUSE_NOTIFY_RESEND, or EINTR on older kernels)
 *
 * If the new daemon fails before it serves, the old one starts its gRPC server again and goes on.
 * containerd sees the socket refuse calls for the time the takeover takes, and redials.
 */
import { spawn } from 'node:child_process';
import type { Logger } from './logger.js';
import type { RunningDaemon } from './daemon.js';

/** Set in the new daemon's environment: the pid of the daemon it takes over from. */
export const HANDOVER_ENV = 'SOCI_SNAPSHOTTER_HANDOVER_FROM';

type Message = { type: 'ready' | 'drained' | 'serving' };

/**
 * The old daemon's side: on SIGUSR2, hand over to a new process, then call `exit`. `unavailable`:
 * why the mounts could not outlive this process (then SIGUSR2 only says so).
 */
export function handOverOnSignal(daemon: RunningDaemon, logger: Logger, exit: () => void, unavailable: string | null): void {
  let busy = false;
  process.on('SIGUSR2', () => {
    if (unavailable) return logger.warn({ reason: unavailable }, 'SIGUSR2: no handover, the FUSE mounts cannot outlive this daemon');
    if (busy) return logger.warn({}, 'SIGUSR2: a handover is already in progress');
    // systemd would take the old process's exit for the service's and stop what it started
    if (process.env.INVOCATION_ID) {
      return logger.warn({}, 'SIGUSR2: no handover under systemd; systemctl restart keeps the FUSE mounts (fd store)');
    }
    if (!daemon.socketPath) {
      return logger.warn({}, 'SIGUSR2: a handover needs a socket path, not a systemd socket; restart the unit instead (FUSE mounts are kept)');
    }
    busy = true;
    let stage: 'starting' | 'drained' | 'done' = 'starting';
    const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
      env: { ...process.env, [HANDOVER_ENV]: String(process.pid) },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      detached: true, // its own session: it outlives this process and its process group
    });
    logger.info({ pid: child.pid }, 'SIGUSR2: handing over to a new daemon');
    child.on('message', (m: Message) => {
      if (m.type === 'ready' && stage === 'starting') {
        void daemon.pause().then(() => {
          stage = 'drained';
          child.send({ type: 'drained' } satisfies Message);
        });
      } else if (m.type === 'serving' && stage === 'drained') {
        stage = 'done';
        logger.info({ pid: child.pid }, 'handed over to the new daemon; exiting without unmounting');
        child.unref();
        exit();
      }
    });
    child.once('exit', (code, signal) => {
      if (stage === 'done') return;
      logger.error({ pid: child.pid, code, signal }, 'handover failed: the new daemon exited; this one goes on serving');
      const was = stage;
      stage = 'done';
      busy = false;
      if (was === 'drained') void daemon.resume().catch((e: unknown) => logger.error({ error: String(e) }, 'cannot serve gRPC again'));
    });
  });
}

/** The new daemon's side, before it takes anything over: null when this is no handover. */
export async function joinHandover(logger: Logger): Promise<{ serving(recover: () => Promise<void>): void } | null> {
  const from = process.env[HANDOVER_ENV];
  if (!from || !process.send) return null;
  delete process.env[HANDOVER_ENV];
  const drained = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer from the daemon being replaced (pid ${from}) within 60 s`)), 60_000);
    const gone = () => {
      clearTimeout(timer);
      reject(new Error(`the daemon being replaced (pid ${from}) went away before it handed over`));
    };
    process.once('disconnect', gone);
    process.on('message', (m: Message) => {
      if (m.type !== 'drained') return;
      clearTimeout(timer);
      process.off('disconnect', gone);
      resolve();
    });
  });
  process.send({ type: 'ready' } satisfies Message);
  await drained;
  logger.info({ from: Number(from) }, 'taking over from the running daemon');
  return {
    serving(recover) {
      const done = () => void recover().then(() => logger.info({ pid: process.pid, from: Number(from) }, 'handover complete'));
      // The old daemon exits once told; if it already went away (a crash), recover at once.
      if (!process.connected) return done();
      process.once('disconnect', done);
      process.send!({ type: 'serving' } satisfies Message);
    },
  };
}
