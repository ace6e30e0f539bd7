/**
 * Child process for the stale-mount test: mounts a SyntheticFs on argv[2] (subtype argv[3]), prints
 * "ready" and serves until killed. The test SIGKILLs it to leave a dead mount behind.
 */
import { FuseServer } from '../../src/fuse/index.js';
import { SyntheticFs } from './synthetic-fs.js';

const [dir, subtype] = process.argv.slice(2);
const server = await FuseServer.mount(new SyntheticFs({ bigSize: 1024 }), { mountpoint: dir!, subtype: subtype! });
process.stdout.write(`ready ${server.readerKind}\n`);
await server.closed;
