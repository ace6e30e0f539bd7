/**
 * Runs soci-snapshotter-grpc: root dir, stale-mount cleanup, metadata, gRPC on a unix socket
 * (or systemd's fd), metrics, and signal handling (SIGINT unmounts remote snapshots, SIGTERM not).
 */
import * as grpc from '@grpc/grpc-js';
import { chmod, lstat, mkdir, readFile, rm } from 'node:fs/promises';
import { createServer as createNetServer, type Server as NetServer } from 'node:net';
import type { Server as HttpServer } from 'node:http';
import { dirname } from 'node:path';
import { SociError } from '../errors.js';
import { type Config, parallelPullMode } from './config.js';
import { createHandlers, loadSnapshotsService } from './grpc-service.js';
import { DeferringMounter, type LayerMounter, type LocalUnpacker } from './layer-mounter.js';
import type { Logger } from './logger.js';
import { initFallbackCounters, serveMetrics } from './metrics.js';
import { unmountAllUnder } from '../host/index.js';
import { listenFds } from '../host/systemd.js';
import { STORE_PREFIX } from '../fuse/keeper.js';
import { overlayNeedsIndexOff } from './mounts.js';
import { Snapshotter } from './snapshotter.js';
import { STATUS_SERVICE, statusHandlers } from './status-service.js';
import { VERSION } from '../version.js';

export const DEFAULT_ADDRESS = '/run/soci-snapshotter-grpc/soci-snapshotter-grpc.sock';
export const DEFAULT_ROOT = '/var/lib/soci-snapshotter-grpc';

/** What the lazy-loading modules plug in; everything is optional. */
export interface DaemonHooks {
  mounter?: LayerMounter;
  unpacker?: LocalUnpacker;
  /** Called at start before anything is mounted; default: umount everything under the dir. */
  cleanupStaleMounts?: (snapshotsDir: string, keep: readonly string[]) => Promise<void>;
  /** Extra gRPC services on the same socket (the CRI image-service proxy); returns a closer. */
  grpcServices?: (server: grpc.Server) => (() => void) | void;
}

export interface DaemonOptions {
  address: string; // path, unix://path or fd://
  root: string;
  config: Config;
  logger: Logger;
  hooks?: DaemonHooks;
  /** the config file read (reported by the status service) */
  configPath?: string;
}

export interface RunningDaemon {
  snapshotter: Snapshotter;
  socketPath: string | null; // null when serving a systemd-provided fd
  /** Stops serving; with unmount=true remote snapshots are unmounted first (SIGINT path). */
  stop(unmount: boolean): Promise<void>;
  /**
   * A handover: stops the gRPC server (calls in progress finish) and metrics, so that the next
   * daemon can take the socket, while the FUSE mounts go on being served. resume() starts them
   * again when the next daemon failed.
   */
  pause(): Promise<void>;
  resume(): Promise<void>;
}

async function checkOverlaySupported(): Promise<void> {
  const fsList = await readFile('/proc/filesystems', 'utf8').catch(() => '');
  if (!/\toverlay$/m.test(fsList)) {
    throw new SociError('ERR_UNSUPPORTED', 'overlayfs is not supported by this kernel (set skip_check_snapshotter_supported = true to skip this check)');
  }
}

/** Removes a stale socket file, refusing to delete anything that is not a socket. */
async function removeStaleSocket(path: string): Promise<void> {
  try {
    const st = await lstat(path);
    if (!st.isSocket()) throw new SociError('ERR_USAGE', `${path} exists and is not a socket`);
    await rm(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}

/** Listens on the unix socket: dir 0711 (like AWS's), socket 0660 (not world-writable). */
async function bindUnix(server: grpc.Server, path: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o711 });
  await removeStaleSocket(path);
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(`unix://${path}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
  );
  await chmod(path, 0o660);
}

/** systemd socket activation: the first fd systemd passed that is not a FUSE connection from its fd store. */
function systemdFd(): number | null {
  return listenFds().find((f) => !f.name.startsWith(STORE_PREFIX))?.fd ?? null;
}

export async function startDaemon(o: DaemonOptions): Promise<RunningDaemon> {
  const { config, logger } = o;
  const hooks = o.hooks ?? {};
  await mkdir(o.root, { recursive: true, mode: 0o700 });
  await chmod(o.root, 0o700);
  if (!config.skip_check_snapshotter_supported) await checkOverlaySupported();

  const parallelPull = parallelPullMode(config);
  const snapshotter = await Snapshotter.open({
    root: o.root,
    mounter: hooks.mounter ?? new DeferringMounter(),
    ...(hooks.unpacker ? { unpacker: hooks.unpacker } : {}),
    logger,
    minLayerSize: config.snapshotter.min_layer_size,
    allowInvalidMountsOnRestart: config.snapshotter.allow_invalid_mounts_on_restart,
    indexOff: overlayNeedsIndexOff(),
    ...(parallelPull ? { parallelPull } : {}),
  });
  try {
    // The hook (FUSE module) gets the first chance to release its mounts cleanly; anything
    // still mounted below the snapshots dir is then force-unmounted.
    // Mounts whose connections a previous daemon kept alive are served again, not unmounted.
    const kept = (await hooks.mounter?.keptMounts?.()) ?? [];
    if (kept.length) logger.info({ count: kept.length }, 'taking over FUSE mounts kept by the previous daemon');
    if (hooks.cleanupStaleMounts) await hooks.cleanupStaleMounts(snapshotter.snapshotsDir, kept);
    const points = await unmountAllUnder(snapshotter.snapshotsDir, kept);
    if (points.length) logger.info({ count: points.length }, 'unmounted stale mounts');
    await snapshotter.restoreRemoteSnapshots();
    await hooks.mounter?.releaseUnclaimed?.();
  } catch (e) {
    snapshotter.close();
    throw e;
  }

  initFallbackCounters();
  const info = (metrics: boolean) => ({
    version: VERSION,
    pid: process.pid,
    root: o.root,
    configPath: o.configPath ?? '',
    metricsAddress: metrics ? config.metrics_address : '',
    metricsNetwork: metrics ? config.metrics_network : '',
    minLayerSize: config.snapshotter.min_layer_size,
    v1: config.pull_modes.soci_v1.enable,
    v2: config.pull_modes.soci_v2.enable,
  });

  /** The gRPC services and metrics: started here, stopped and started again around a handover. */
  const serve = async () => {
    let metrics: HttpServer | null = null;
    if (config.metrics_address && !config.no_prometheus) {
      metrics = await serveMetrics(config.metrics_address, config.metrics_network);
      logger.info({ address: config.metrics_address, network: config.metrics_network }, 'serving metrics');
    }
    const server = new grpc.Server();
    server.addService(loadSnapshotsService(), createHandlers(snapshotter, logger));
    server.addService(
      STATUS_SERVICE,
      statusHandlers(
        () => info(metrics !== null),
        (image) => snapshotter.decisions.list(image),
      ),
    );
    const closeExtra = hooks.grpcServices?.(server);
    let fdServer: NetServer | null = null;
    const fd = o.address.startsWith('fd://') ? systemdFd() : null;
    if (fd !== null) {
      const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
      fdServer = createNetServer((sock) => injector.injectConnection(sock));
      await new Promise<void>((resolve, reject) => {
        fdServer!.once('error', reject);
        fdServer!.listen({ fd }, resolve);
      });
      logger.info({ fd }, 'serving on systemd socket');
    } else {
      if (o.address.startsWith('fd://')) logger.warn({}, 'no systemd socket passed; falling back to the default socket');
      socketPath = o.address.startsWith('fd://') ? DEFAULT_ADDRESS : o.address.replace(/^unix:\/\//, '');
      await bindUnix(server, socketPath);
      logger.info({ address: socketPath }, 'soci-snapshotter-grpc successfully started');
    }
    /** graceful: calls in progress may finish (for up to 10 s) */
    return async (graceful: boolean) => {
      if (graceful) {
        const done = new Promise<void>((r) => server.tryShutdown(() => r()));
        const late = setTimeout(() => server.forceShutdown(), 10_000);
        await done;
        clearTimeout(late);
      } else server.forceShutdown();
      if (closeExtra) closeExtra();
      fdServer?.close();
      if (metrics) {
        const closed = new Promise<void>((r) => metrics!.close(() => r()));
        metrics.closeAllConnections();
        await closed;
      }
    };
  };
  let socketPath: string | null = null;
  let closeServing: ((graceful: boolean) => Promise<void>) | null = await serve();

  let stopped = false;
  return {
    snapshotter,
    get socketPath() {
      return socketPath;
    },
    async pause() {
      const close = closeServing;
      closeServing = null;
      await close?.(true);
    },
    async resume() {
      closeServing ??= await serve();
    },
    async stop(unmount: boolean) {
      if (stopped) return;
      stopped = true;
      const handedOver = closeServing === null; // the socket path is the next daemon's now
      await closeServing?.(false);
      if (unmount) await snapshotter.unmountAll();
      snapshotter.close();
      if (socketPath && !handedOver) await rm(socketPath, { force: true });
    },
  };
}
