/**
 * Receiving requests from /dev/fuse. Two interchangeable readers:
 * - `pipe`: a libuv pipe handle on the fd (process.binding('pipe_wrap'), an internal but allow-listed
 *   API): epoll-driven, no threadpool, lowest latency. Each read(2) returns exactly one request.
 * - `worker`: a worker thread looping over a blocking fs.readSync and transferring each request to
 *   the main thread. Public API only; used when pipe_wrap is unavailable.
 * Replies are not written here: the server writes them synchronously on the main thread.
 */
import net from 'node:net';
import { Worker } from 'node:worker_threads';

export type ReaderKind = 'pipe' | 'worker';

/** The fd stopped delivering requests: ENODEV (unmounted), ECONNABORTED (aborted), or another error. */
export interface ReaderEnd {
  code: string;
  message: string;
}

export interface RequestReader {
  readonly kind: ReaderKind;
  /** Closes the reader. The pipe reader also closes the fd (it owns it once opened). */
  close(): void;
  /** True when closing the reader already closed the fd. */
  readonly ownsFd: boolean;
}

export interface ReaderCallbacks {
  onRequest(buf: Buffer): void;
  onEnd(end: ReaderEnd): void;
}

/** Big enough for any request of a read-only fs (max_write 4096; kernel minimum 8192). */
export const READ_BUFFER_SIZE = 64 * 1024 + 4096;

interface PipeBinding {
  Pipe: new (type: number) => { open(fd: number): number | void };
  constants: { SOCKET: number };
}

function pipeBinding(): PipeBinding | null {
  try {
    const bind = (process as unknown as { binding(name: string): unknown }).binding;
    if (typeof bind !== 'function') return null;
    const b = bind.call(process, 'pipe_wrap') as Partial<PipeBinding>;
    if (typeof b?.Pipe !== 'function' || typeof b.constants?.SOCKET !== 'number') return null;
    return b as PipeBinding;
  } catch {
    return null;
  }
}

/** Whether the pipe reader can be used in this Node build. */
export function pipeReaderAvailable(): boolean {
  return pipeBinding() !== null;
}

/** Splits a chunk into requests by in_header.len (defensive: the kernel gives one per read). */
function framer(cb: ReaderCallbacks): (chunk: Buffer) => void {
  let rest: Buffer | null = null;
  return (chunk: Buffer) => {
    let b = rest ? Buffer.concat([rest, chunk]) : chunk;
    rest = null;
    while (b.length >= 4) {
      const len = b.readUInt32LE(0);
      if (len < 40) {
        cb.onEnd({ code: 'EPROTO', message: `bad request length ${len}` });
        return;
      }
      if (b.length < len) break;
      cb.onRequest(len === b.length ? b : b.subarray(0, len));
      b = b.subarray(len);
    }
    if (b.length > 0) rest = Buffer.from(b);
  };
}

function startPipe(fd: number, cb: ReaderCallbacks): RequestReader | null {
  const binding = pipeBinding();
  if (!binding) return null;
  const handle = new binding.Pipe(binding.constants.SOCKET);
  try {
    const rc = handle.open(fd); // Node 20 throws on failure; older builds returned a negative code
    if (typeof rc === 'number' && rc < 0) return null;
  } catch {
    return null;
  }
  const sock = new net.Socket({ handle, readable: true, writable: false } as unknown as net.SocketConstructorOpts);
  let ended = false;
  const end = (e: ReaderEnd): void => {
    if (ended) return;
    ended = true;
    cb.onEnd(e);
    sock.destroy();
  };
  const onChunk = framer({ onRequest: cb.onRequest, onEnd: end });
  sock.on('data', onChunk);
  sock.on('error', (err: NodeJS.ErrnoException) => end({ code: err.code ?? 'EIO', message: err.message }));
  sock.on('end', () => end({ code: 'EOF', message: 'end of /dev/fuse' }));
  sock.on('close', () => end({ code: 'ECLOSED', message: '/dev/fuse closed' }));
  return {
    kind: 'pipe',
    ownsFd: true,
    close() {
      ended = true;
      sock.destroy();
    },
  };
}

// Plain JS so it runs in a worker without a TypeScript loader. EAGAIN can only happen if the fd was
// left O_NONBLOCK (e.g. a failed pipe open): back off 1 ms rather than spin.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const fs = require('node:fs');
const { fd, size } = workerData;
const buf = Buffer.allocUnsafeSlow(size);
const nap = new Int32Array(new SharedArrayBuffer(4));
let stop = false;
parentPort.on('message', (m) => { if (m === 'stop') stop = true; });
for (;;) {
  let n;
  try { n = fs.readSync(fd, buf, 0, size, null); }
  catch (e) {
    if (stop) break;
    if (e.code === 'EINTR' || e.code === 'ENOENT') continue;
    if (e.code === 'EAGAIN') { Atomics.wait(nap, 0, 0, 1); continue; }
    parentPort.postMessage({ end: { code: e.code || 'EIO', message: e.message } });
    break;
  }
  if (n === 0) { parentPort.postMessage({ end: { code: 'EOF', message: 'end of /dev/fuse' } }); break; }
  const ab = new ArrayBuffer(n);
  new Uint8Array(ab).set(buf.subarray(0, n));
  parentPort.postMessage(ab, [ab]);
}
`;

function startWorker(fd: number, cb: ReaderCallbacks): RequestReader {
  // execArgv [] keeps the parent's loaders (tsx) out of the worker: it is plain JS.
  const w = new Worker(WORKER_SOURCE, { eval: true, workerData: { fd, size: READ_BUFFER_SIZE }, execArgv: [] });
  let ended = false;
  const end = (e: ReaderEnd): void => {
    if (ended) return;
    ended = true;
    cb.onEnd(e);
  };
  const onChunk = framer({ onRequest: cb.onRequest, onEnd: end });
  w.on('message', (m: ArrayBuffer | { end: ReaderEnd }) => {
    if (m instanceof ArrayBuffer) onChunk(Buffer.from(m));
    else if (m && 'end' in m) end(m.end);
  });
  w.on('error', (err: Error) => end({ code: 'EWORKER', message: err.message }));
  w.on('exit', () => end({ code: 'EOF', message: 'reader worker exited' }));
  return {
    kind: 'worker',
    ownsFd: false,
    close() {
      ended = true;
      // The thread may sit in read(2) until the connection ends (unmount/abort): it then exits by
      // itself. terminate() takes effect as soon as it returns to JS.
      w.postMessage('stop');
      void w.terminate();
    },
  };
}

/**
 * Starts reading requests from a mounted /dev/fuse fd. `prefer` 'auto' (default) tries the pipe
 * reader and falls back to the worker reader; env SOCI_FUSE_READER=pipe|worker forces one.
 */
export function startReader(fd: number, cb: ReaderCallbacks, prefer: ReaderKind | 'auto' = 'auto'): RequestReader {
  const env = process.env.SOCI_FUSE_READER;
  const want = prefer !== 'auto' ? prefer : env === 'pipe' || env === 'worker' ? env : 'auto';
  if (want !== 'worker') {
    const r = startPipe(fd, cb);
    if (r) return r;
    if (want === 'pipe') throw new Error('pipe reader unavailable (process.binding("pipe_wrap"))');
  }
  return startWorker(fd, cb);
}
