/**
 * Child process for the stale-mount tests: mounts a SyntheticFs on argv[2] (subtype argv[3]),
 * prints "ready" and serves until killed. With argv[4] = 'hang', getattr never answers (and there
 * is no request timeout): a hung daemon.
 */
import { FuseServer } from '../../src/fuse/index.js';
import { SyntheticFs } from '../../harness/synthetic-fs.js';

const [dir, subtype, mode] = process.argv.slice(2);
const fs = new SyntheticFs({ bigSize: 1024 });
if (mode === 'hang') fs.getattr = () => new Promise(() => undefined);
const server = await FuseServer.mount(fs, { mountpoint: dir!, subtype: subtype!, ...(mode === 'hang' ? { requestTimeoutMs: 0 } : {}) });
process.stdout.write(`ready ${server.readerKind}\n`);
await server.closed;
