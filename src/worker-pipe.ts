/**
 * Streams a byte source into a worker thread with flow control, for CPU- or syscall-bound layer work
 * (zTOC building, local unpack) that must not run on the daemon's event loop. Chunks travel in a
 * fixed pool of buffers that ping-pong between the threads (packed by the main thread, handed back by
 * the worker once consumed): memory stays at POOL × BUF_SIZE per stream and no garbage is made per
 * chunk (transferring fresh buffers let external memory pile up to 500+ MB).
 *
 * Protocol: main → worker `{ buf, len }` … `{ end: true }` (or `{ abort: true }` when the main side
 * gives up); worker → main `{ recycle }` per chunk, then `{ done }` or `{ error: { code, message } }`.
 * The other end is a Worker (one stream per worker) or a MessagePort (./worker-pool.ts: many streams
 * per worker).
 */
import { Worker, type MessagePort } from 'node:worker_threads';
import { SociError, type ErrorCode } from './errors.js';

const BUF_SIZE = 1 << 20;
const POOL = 4;
const FAILED = Symbol('failed');

/**
 * Runs module `url` on a worker. From source (tests, `node --import tsx`) the worker does not inherit
 * the TypeScript loader, so it starts from a small bootstrap that registers tsx first.
 */
export function startModuleWorker(url: string, workerData: unknown, maxYoungGenerationSizeMb?: number): Worker {
  const opts = { workerData, ...(maxYoungGenerationSizeMb ? { resourceLimits: { maxYoungGenerationSizeMb } } : {}) };
  if (!url.endsWith('.ts')) return new Worker(new URL(url), opts);
  const api = import.meta.resolve('tsx/esm/api');
  const boot = `import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(url)}); });`;
  return new Worker(boot, { ...opts, eval: true });
}

/** The other end of a stream: a worker thread, or a port to a job on a pooled one. */
export type Endpoint = Worker | MessagePort;

type Reply<T> = { recycle?: ArrayBuffer; done?: T; error?: { code: ErrorCode; message: string } };

/** Feeds `source` to worker `w` and resolves with its `done` payload; the worker is terminated after. */
export function pipeToWorker<T>(w: Worker, source: AsyncIterable<Buffer>): Promise<T> {
  // Waited for: once this returns, the worker writes nothing more (the caller may clean its output).
  return streamTo<T>(w, source, workerDeath(w), async () => {
    await w.terminate().catch(() => undefined);
  });
}

/** Rejects with a one-line SociError when `w` fails or exits; never resolves. Always handled. */
export function workerDeath(w: Worker): Promise<never> {
  const died = new Promise<never>((_, reject) => {
    w.on('error', (e: Error) =>
      reject(e instanceof SociError ? e : new SociError('ERR_INTERNAL', `worker failed: ${String(e.message).split('\n')[0]}`, { cause: e })),
    );
    w.on('exit', (code) => reject(new SociError('ERR_INTERNAL', `worker exited with code ${code}`)));
  });
  died.catch(() => undefined);
  return died;
}

/**
 * Streams `source` to `ep` and resolves with the other side's `done` payload (or rejects with its
 * error, or with `died`). `stop(answered, settled)` runs before this settles, whether the other side
 * answered or this side left early (the source failed; `settled` resolves once the other side has
 * answered after all); once it resolves, the other side must write nothing more.
 */
export async function streamTo<T>(
  ep: Endpoint,
  source: AsyncIterable<Buffer>,
  died: Promise<never>,
  stop: (answered: boolean, settled: Promise<unknown>) => Promise<void>,
): Promise<T> {
  const free: ArrayBuffer[] = Array.from({ length: POOL }, () => new ArrayBuffer(BUF_SIZE));
  let wake: (() => void) | null = null;
  let failure: unknown;
  let answered = false;
  const result = new Promise<T>((resolve, reject) => {
    const onMessage = (m: Reply<T>) => {
      if (m.recycle) {
        free.push(m.recycle);
        wake?.();
      } else if (m.error) reject(new SociError(m.error.code, m.error.message));
      else if ('done' in m) resolve(m.done as T);
    };
    ep.on('message', onMessage);
    died.catch(reject);
  });
  // The other side's failure (or death) also ends a wait on the source: a stalled download does not
  // keep a dead unpack alive. One settle function per wait, not a Promise.race against a promise
  // that lives as long as the pipe: every race would stay attached to it, and with it every chunk.
  let stopWait: (() => void) | null = null;
  result.then(
    () => {
      answered = true;
    },
    (e: unknown) => {
      answered = true;
      failure = e;
      wake?.();
      stopWait?.();
    },
  );
  let cur: ArrayBuffer | null = null;
  let view: Uint8Array | null = null;
  let fill = 0;
  const flush = () => {
    if (!cur || fill === 0) return;
    ep.postMessage({ buf: cur, len: fill }, [cur]);
    cur = null;
    view = null;
    fill = 0;
  };
  const it = source[Symbol.asyncIterator]();
  let sourceDone = false;
  try {
    while (failure === undefined) {
      const next = it.next();
      const r = await new Promise<IteratorResult<Buffer> | typeof FAILED>((res, rej) => {
        stopWait = () => res(FAILED);
        next.then(res, rej);
      });
      stopWait = null;
      if (r === FAILED) {
        next.catch(() => undefined); // its outcome no longer matters
        break;
      }
      if (r.done) {
        sourceDone = true;
        break;
      }
      const chunk = r.value;
      let off = 0;
      while (off < chunk.length && failure === undefined) {
        if (!cur) {
          while (free.length === 0 && failure === undefined) await new Promise<void>((res) => (wake = res));
          if (failure !== undefined) break;
          cur = free.pop()!;
          view = new Uint8Array(cur);
        }
        const n = Math.min(chunk.length - off, BUF_SIZE - fill);
        view!.set(chunk.subarray(off, off + n), fill);
        fill += n;
        off += n;
        if (fill === BUF_SIZE) flush();
      }
    }
    if (failure === undefined) {
      flush();
      ep.postMessage({ end: true });
    }
    return await result;
  } finally {
    // Stop the source (download, decoder) when we leave early; never wait on it.
    if (!sourceDone) void Promise.resolve(it.return?.()).catch(() => undefined);
    await stop(
      answered,
      result.catch(() => undefined),
    );
  }
}

/**
 * Worker side: the chunks as an async iterable. A chunk is handed back when the consumer asks for
 * the next one, so the consumer must be done with it by then (copy what it keeps).
 */
export function workerInput(port: MessagePort): AsyncIterable<Buffer> {
  const chunks: Array<{ buf: ArrayBuffer; len: number }> = [];
  let notify: (() => void) | null = null;
  let ended = false;
  let aborted = false;
  port.on('message', (m: { buf?: ArrayBuffer; len?: number; end?: boolean; abort?: boolean }) => {
    if (m.buf) chunks.push({ buf: m.buf, len: m.len! });
    if (m.end) ended = true;
    if (m.abort) aborted = true;
    notify?.();
  });
  return (async function* input(): AsyncIterable<Buffer> {
    for (;;) {
      // The sender gave up on this stream (its source failed): stop at the next read.
      if (aborted) throw new SociError('ERR_INTERRUPTED', 'stream stopped by its sender');
      const c = chunks.shift();
      if (c) {
        yield Buffer.from(c.buf, 0, c.len);
        port.postMessage({ recycle: c.buf }, [c.buf]);
        continue;
      }
      if (ended) return;
      await new Promise<void>((r) => (notify = r));
      notify = null;
    }
  })();
}

/** Worker side: reports a failure to the main thread as a SociError code + message. */
export function postError(port: MessagePort, e: unknown): void {
  const code: ErrorCode = e instanceof SociError ? e.code : 'ERR_INTERNAL';
  port.postMessage({ error: { code, message: e instanceof Error ? e.message : String(e) } });
}
