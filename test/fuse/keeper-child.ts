/**
 * Child process for the connection keeper test: `mount` mounts a SyntheticFs on argv[2], hands the
 * connection to a holder (ConnectionKeeper in argv[3]) and serves; `resume` takes the kept
 * connection of argv[2] back and serves it (`resume-noresend`: as on a kernel without
 * FUSE_NOTIFY_RESEND). Prints one line ("ready" or "resumed <resent> <lost requests answered>")
 * and serves until killed or unmounted.
 */
import { ConnectionKeeper, FuseServer } from '../../src/fuse/index.js';
import { SyntheticFs } from '../../harness/synthetic-fs.js';

const [dir, stateDir, mode] = process.argv.slice(2) as [string, string, string];
// The same options in both processes: node ids come from the construction order.
const fs = new SyntheticFs({ bigSize: 8 << 20, slowReadMs: 1500 });
const keeper = new ConnectionKeeper(stateDir);
let server: FuseServer;
if (mode === 'mount') {
  server = await FuseServer.mount(fs, { mountpoint: dir, subtype: 'keeptest', requestTimeoutMs: 0 });
  await keeper.keep(server);
  process.stdout.write('ready\n');
} else {
  const rec = (await keeper.live()).find((k) => k.mountpoint === dir);
  if (!rec) throw new Error(`no kept connection for ${dir}`);
  const opts = { mountpoint: dir, subtype: 'keeptest', requestTimeoutMs: 0, resend: mode !== 'resume-noresend' };
  server = await FuseServer.resume(keeper.take(rec), fs, opts, rec.kernel);
  process.stdout.write(`resumed ${server.resent} ${server.lostAnswered}\n`);
}
process.on('SIGTERM', () => {
  void server
    .unmount({ lazy: true })
    .then(() => keeper.release(dir))
    .finally(() => process.exit(0));
});
await server.closed;
