/**
 * soci-snapshotter-grpc entry point: flags/env, `config default|dump`, and the daemon.
 * `main(argv)` is what bin/soci-snapshotter-grpc.js calls; `main(argv, hooks)` lets the FUSE
 * module (or a test) plug its LayerMounter in.
 */
import { Command, CommanderError } from 'commander';
import { realpathSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { versionLine } from '../version.js';
import { configReports, configToToml, defaultConfig, DEFAULT_CONFIG_PATH, loadConfig, parallelPullSettings } from './config.js';
import { DEFAULT_ADDRESS, DEFAULT_ROOT, startDaemon, type DaemonHooks } from './daemon.js';
import { createLogger, flushLogs, type Logger } from './logger.js';
import { HANDOVER_ENV, handOverOnSignal, joinHandover } from './handover.js';

interface GlobalOpts {
  address: string;
  config?: string;
  logLevel: string;
  root: string;
}

function fail(message: string): never {
  flushLogs();
  process.stderr.write(`soci-snapshotter-grpc: ${message.split('\n')[0]}\n`);
  process.exit(1);
}

/** --config given (flag or env) means a missing file is an error. */
function configPath(opts: GlobalOpts): { path: string; explicit: boolean } {
  const explicit = opts.config ?? process.env.SOCI_SNAPSHOTTER_CONFIG;
  return explicit ? { path: explicit, explicit: true } : { path: DEFAULT_CONFIG_PATH, explicit: false };
}

async function runDaemon(opts: GlobalOpts, hooks: DaemonHooks): Promise<void> {
  const { path, explicit } = configPath(opts);
  const config = await loadConfig(path, explicit);
  const logger = createLogger(opts.logLevel);
  installFatalHandlers(logger);
  for (const r of configReports(config)) {
    logger.warn({ key: r.key, reason: r.why }, `config: ${r.key} has no effect here: ${r.why}`);
  }
  // [kubeconfig_keychain]: its library is imported by the sync loop, in the background.
  let kubeKeychain: import('./kubeconfig-keychain.js').KubeconfigKeychain | undefined;
  // The lazy (SOCI) mounter unless a test injects another one. Imported on demand so that
  // `config`, `--version` and injected-mounter runs do not load the whole lazy-loading stack.
  if (!hooks.mounter) {
    const { SociLayerMounter, cleanupStaleSociMounts } = await import('./soci-mounter.js');
    const { PullingUnpacker } = await import('./local-unpacker.js');
    const { ImagePuller } = await import('../pull/index.js');
    const { containerdBlobKeeper } = await import('./containerd-keep.js');
    let keychain: import('./cri-keychain.js').CriKeychain | undefined;
    if (config.cri_keychain.enable_keychain) {
      const { CriKeychain, addImageServiceProxy } = await import('./cri-keychain.js');
      const kc = new CriKeychain(join(opts.root, 'soci', 'cri-credentials.json'));
      await kc.load();
      keychain = kc;
      const target = config.cri_keychain.image_service_path.replace(/^unix:\/\//, '');
      hooks = { ...hooks, grpcServices: (server) => addImageServiceProxy(server, target, kc, logger) };
      logger.info({ target }, 'serving the CRI image service proxy');
    }
    if (config.kubeconfig_keychain.enable_keychain) {
      const { KubeconfigKeychain } = await import('./kubeconfig-keychain.js');
      kubeKeychain = new KubeconfigKeychain({ kubeconfigPath: config.kubeconfig_keychain.kubeconfig_path, logger });
      kubeKeychain.start();
    }
    // After the Docker config, as AWS's: CRI credentials, then Kubernetes secrets.
    const extra = [keychain?.provider, kubeKeychain?.provider].filter((p) => p !== undefined);
    const { chainCredentials } = await import('../registry/credentials.js');
    const mounter = new SociLayerMounter({
      config,
      root: opts.root,
      logger,
      ...(extra.length > 0 ? { extraCredentials: extra.length === 1 ? extra[0]! : chainCredentials(...extra) } : {}),
      handover: process.env[HANDOVER_ENV] !== undefined && process.send !== undefined,
    });
    // Layers an index does not cover (and every layer in parallel pull mode) are fetched,
    // digest- and diff_id-verified and unpacked by us.
    const unpacker =
      hooks.unpacker ??
      new PullingUnpacker(
        await ImagePuller.open({
          stagingDir: join(opts.root, 'snapshotter', 'staging'),
          contentDir: join(opts.root, 'content'),
          clientFor: (host) => mounter.clientFor(host),
          logger,
          settings: parallelPullSettings(config),
          ...(config.content_store.type === 'containerd' ? { keep: containerdBlobKeeper(config.content_store.containerd_address, logger) } : {}),
        }),
      );
    hooks = { cleanupStaleMounts: cleanupStaleSociMounts, ...hooks, mounter, unpacker };
  }
  const handover = await joinHandover(logger);
  const daemon = await startDaemon({ address: opts.address, root: opts.root, config, logger, hooks, configPath: path });
  const mounter = hooks.mounter;
  handover?.serving(async () => mounter?.recoverLost?.());
  const onSignal = (sig: NodeJS.Signals) => {
    logger.info({ signal: sig }, sig === 'SIGINT' ? 'unmounting all remote snapshots and exiting' : 'exiting without cleanup');
    Promise.all([daemon.stop(sig === 'SIGINT'), kubeKeychain?.stop()]).then(
      () => {
        flushLogs();
        process.exit(0);
      },
      (e: unknown) => {
        logger.error({ err: String(e) }, 'shutdown failed');
        flushLogs();
        process.exit(1);
      },
    );
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const { ConnectionKeeper } = await import('../fuse/index.js');
  handOverOnSignal(
    daemon,
    logger,
    () => onSignal('SIGTERM'),
    mounter?.recoverLost ? ConnectionKeeper.unavailable() : 'the layer mounter cannot keep its mounts',
  );
}

/** What every fatal line starts with (the e2e harness looks for it). */
export const FATAL_MSG_PREFIX = 'fatal:';

/**
 * A throw nobody catches leaves the daemon in an unknown state: log one recognisable fatal line
 * (message on one line, stack in its own field), flush, and exit non-zero so a supervisor (systemd
 * Restart=, a test harness) notices, instead of Node's multi-line dump.
 */
function installFatalHandlers(logger: Logger): void {
  let dying = false;
  const die = (kind: string) => (e: unknown) => {
    if (dying) return;
    dying = true;
    const message = (e instanceof Error ? e.message : String(e)).split('\n')[0];
    try {
      logger.fatal({ err: message, stack: e instanceof Error ? e.stack : undefined }, `${FATAL_MSG_PREFIX} ${kind}: ${message}`);
    } finally {
      flushLogs();
      process.stderr.write(`soci-snapshotter-grpc: ${kind}: ${message}\n`);
      process.exit(70);
    }
  };
  process.on('uncaughtException', die('uncaught exception'));
  process.on('unhandledRejection', die('unhandled rejection'));
}

export function main(argv: string[], hooks: DaemonHooks = {}): void {
  const program = new Command('soci-snapshotter-grpc');
  program
    .description('containerd snapshotter that lazily loads SOCI-indexed images')
    .version(versionLine('soci-snapshotter-grpc'), '-v, --version', 'print the version')
    .option(
      '--address <address>',
      'address for the snapshotter gRPC server (path, unix://path or fd://)',
      process.env.SOCI_SNAPSHOTTER_ADDRESS || DEFAULT_ADDRESS,
    )
    .option('--config <path>', `path to the configuration file (default ${DEFAULT_CONFIG_PATH})`)
    .option('--log-level <level>', 'log level: trace, debug, info, warn, error, fatal', process.env.SOCI_SNAPSHOTTER_LOG_LEVEL || 'info')
    .option('--root <dir>', 'path to the root directory for this snapshotter', process.env.SOCI_SNAPSHOTTER_ROOT || DEFAULT_ROOT)
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s.startsWith('error:') ? `soci-snapshotter-grpc: ${s.slice(7)}` : s) })
    .action(async () => {
      await runDaemon(program.opts<GlobalOpts>(), hooks);
    });

  const config = program.command('config').description('inspect the configuration');
  config
    .command('default')
    .description('print the default configuration as TOML')
    .action(() => {
      process.stdout.write(configToToml(defaultConfig()));
    });
  config
    .command('dump')
    .description('print the effective configuration (defaults merged with --config) as TOML')
    .action(async () => {
      const { path, explicit } = configPath(program.opts<GlobalOpts>());
      process.stdout.write(configToToml(await loadConfig(path, explicit)));
    });

  program.parseAsync(argv).catch((e: unknown) => {
    if (e instanceof CommanderError) {
      process.exit(e.exitCode);
    }
    fail(e instanceof Error ? e.message : String(e));
  });
}

// Run when executed directly (node --import tsx src/snapshotter/main.ts); bin/ calls main() itself.
function isEntry(path: string | undefined): boolean {
  try {
    return !!path && import.meta.url === pathToFileURL(realpathSync(path)).href;
  } catch {
    return false; // e.g. `node -e`: argv[1] is not a file
  }
}
if (isEntry(process.argv[1])) main(process.argv);
