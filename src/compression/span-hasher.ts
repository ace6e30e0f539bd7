/**
 * Span digests (soci-reference.md §1.7) computed while the indexer consumes the blob. SHA-256 of the
 * compressed bytes costs ~13 % of a native indexing pass, so for big layers it moves to a worker
 * thread: the indexer copies consumed bytes into a shared ring and marks span boundaries; the
 * worker hashes in parallel. The indexer's API is synchronous, so the main thread blocks on
 * Atomics.wait when the ring is full and at finish() (CLI path only; never the daemon's loop).
 */
import { createHash, type Hash } from 'node:crypto';
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';
import { SociError } from '../errors.js';

export interface SpanHasher {
  /** compressed bytes consumed, in order (the indexer may reuse `chunk` afterwards) */
  update(chunk: Buffer): void;
  /** closes the current span (if one is open) and opens the next; `extra` = a shared byte to hash first */
  boundary(extra: number | null): void;
  /** closes the last span; all digests "sha256:<hex>" in span order */
  finish(): string[];
  /** stop background work after a failure */
  abort(): void;
}

class InlineHasher implements SpanHasher {
  private hash: Hash | null = null;
  readonly digests: string[] = [];
  update(chunk: Buffer): void {
    this.hash?.update(chunk);
  }
  boundary(extra: number | null): void {
    if (this.hash) this.digests.push(`sha256:${this.hash.digest('hex')}`);
    this.hash = createHash('sha256');
    if (extra !== null) this.hash.update(Buffer.of(extra));
  }
  finish(): string[] {
    if (this.hash) this.digests.push(`sha256:${this.hash.digest('hex')}`);
    this.hash = null;
    return this.digests;
  }
  abort(): void {
    this.hash = null;
  }
}

const RING = 4 << 20; // power of two: counters index it with & (RING-1)
const EVENTS = 1024; // boundary queue entries: [position counter, extra byte or -1]
// ctrl slots (Int32): byte counters wrap at 2^32; differences are taken with `| 0`
const W = 0; // bytes written by the indexer
const R = 1; // bytes hashed by the worker
const EW = 2; // boundary events written
const ER = 3; // boundary events consumed
const SEQ = 4; // bumped on every indexer action; the worker sleeps on it
const DONE = 5; // 1: indexer finished; 2: worker flushed everything; -1: worker failed
const CTRL_SLOTS = 8;
const WAKE_EVERY = 2 << 20;

/** Worker body (plain JS, so it runs the same under tsx and from dist). */
const WORKER_JS = `
const { workerData } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const { ring, ctrl: ctrlSab, events: evSab, port } = workerData;
const RING = ${RING}, EVENTS = ${EVENTS};
const data = new Uint8Array(ring);
const ctrl = new Int32Array(ctrlSab);
const ev = new Int32Array(evSab);
let h = null;
let r = Atomics.load(ctrl, ${R});
function hashTo(target) {
  while (r !== target) {
    const at = r & (RING - 1);
    const n = Math.min((target - r) | 0, RING - at);
    if (h) h.update(data.subarray(at, at + n));
    r = (r + n) | 0;
    Atomics.store(ctrl, ${R}, r);
    Atomics.notify(ctrl, ${R});
  }
}
try {
  for (;;) {
    const seq = Atomics.load(ctrl, ${SEQ});
    const w = Atomics.load(ctrl, ${W});
    const er = Atomics.load(ctrl, ${ER});
    const ew = Atomics.load(ctrl, ${EW});
    if (er !== ew) {
      const slot = (er % EVENTS) * 2;
      const pos = ev[slot], extra = ev[slot + 1];
      hashTo(pos);
      if (h) port.postMessage(h.digest('hex'));
      h = createHash('sha256');
      if (extra >= 0) h.update(Uint8Array.of(extra));
      Atomics.store(ctrl, ${ER}, er + 1);
      Atomics.notify(ctrl, ${ER});
      continue;
    }
    if (r !== w) { hashTo(w); continue; }
    if (Atomics.load(ctrl, ${DONE}) === 1) {
      if (h) port.postMessage(h.digest('hex'));
      port.close();
      Atomics.store(ctrl, ${DONE}, 2);
      Atomics.notify(ctrl, ${DONE});
      break;
    }
    // no idle exit: the indexer may legitimately pause (slow source); an abandoned one is cleaned
    // up by its FinalizationRegistry, and the thread is unref'd
    Atomics.wait(ctrl, ${SEQ}, seq, 10000);
  }
} catch (e) {
  Atomics.store(ctrl, ${DONE}, -1);
  Atomics.notify(ctrl, ${DONE});
  Atomics.notify(ctrl, ${R});
  Atomics.notify(ctrl, ${ER});
}
`;

/** Terminates the worker of an indexer that was dropped without end() or a failure. */
const orphans = new FinalizationRegistry<Worker>((w) => void w.terminate());

/** Hashes on a worker thread; see the module comment. */
class WorkerHasher implements SpanHasher {
  // a Buffer view: Buffer#copy is a plain memcpy, TypedArray#set into shared memory is ~3x slower
  private readonly data = Buffer.from(new SharedArrayBuffer(RING));
  private readonly ctrl = new Int32Array(new SharedArrayBuffer(CTRL_SLOTS * 4));
  private readonly events = new Int32Array(new SharedArrayBuffer(EVENTS * 2 * 4));
  private readonly worker: Worker;
  private readonly port: MessagePort;
  private w = 0;
  private woken = 0;
  private ew = 0;

  constructor() {
    const { port1, port2 } = new MessageChannel();
    this.port = port1;
    this.worker = new Worker(WORKER_JS, {
      eval: true,
      workerData: { ring: this.data.buffer, ctrl: this.ctrl.buffer, events: this.events.buffer, port: port2 },
      transferList: [port2],
    });
    this.worker.unref();
    orphans.register(this, this.worker, this);
  }

  private bump(): void {
    Atomics.add(this.ctrl, SEQ, 1);
    Atomics.notify(this.ctrl, SEQ);
  }

  /** Blocks until `ready()` holds, failing loudly if the worker died or stalls. */
  private waitFor(slot: number, ready: () => boolean): void {
    let stalled = 0;
    while (!ready()) {
      if (Atomics.load(this.ctrl, DONE) === -1) throw new SociError('ERR_INTERNAL', 'span hashing worker failed');
      const seen = Atomics.load(this.ctrl, slot);
      if (ready()) break;
      if (Atomics.wait(this.ctrl, slot, seen, 1000) === 'timed-out' && ++stalled >= 60) {
        throw new SociError('ERR_INTERNAL', 'span hashing worker stalled');
      }
    }
  }

  update(chunk: Buffer): void {
    let off = 0;
    while (off < chunk.length) {
      const used = (this.w - Atomics.load(this.ctrl, R)) | 0;
      if (used === RING) {
        this.bump();
        this.waitFor(R, () => ((this.w - Atomics.load(this.ctrl, R)) | 0) < RING);
        continue;
      }
      const at = this.w & (RING - 1);
      const n = Math.min(chunk.length - off, RING - used, RING - at);
      chunk.copy(this.data, at, off, off + n);
      off += n;
      this.w = (this.w + n) | 0;
      Atomics.store(this.ctrl, W, this.w);
      // wake the worker per 2 MiB, not per write: fewer, larger hash calls and futex round trips
      if (((this.w - this.woken) | 0) >= WAKE_EVERY) {
        this.woken = this.w;
        this.bump();
      }
    }
  }

  boundary(extra: number | null): void {
    this.waitFor(ER, () => this.ew - Atomics.load(this.ctrl, ER) < EVENTS);
    const slot = (this.ew % EVENTS) * 2;
    this.events[slot] = this.w;
    this.events[slot + 1] = extra ?? -1;
    this.ew++;
    Atomics.store(this.ctrl, EW, this.ew);
    this.bump();
  }

  finish(): string[] {
    Atomics.store(this.ctrl, DONE, 1);
    this.bump();
    this.waitFor(DONE, () => Atomics.load(this.ctrl, DONE) === 2);
    const out: string[] = [];
    for (let m = receiveMessageOnPort(this.port); m; m = receiveMessageOnPort(this.port)) out.push(`sha256:${m.message as string}`);
    this.port.close();
    orphans.unregister(this);
    void this.worker.terminate();
    return out;
  }

  abort(): void {
    this.port.close();
    orphans.unregister(this);
    void this.worker.terminate();
  }
}

/**
 * Starts inline; at the first span boundary after `offloadAfter` compressed bytes it continues on a
 * worker (a Hash cannot move between threads, so the switch happens between spans).
 * SOCI_HASH_WORKER=0 keeps everything inline.
 */
export class SpanDigester implements SpanHasher {
  private readonly inline = new InlineHasher();
  private worker: WorkerHasher | null = null;
  private seen = 0;
  private readonly offloadAfter: number;

  constructor(offloadAfter = 32 << 20) {
    this.offloadAfter = process.env.SOCI_HASH_WORKER === '0' ? Infinity : offloadAfter;
  }

  update(chunk: Buffer): void {
    this.seen += chunk.length;
    if (this.worker) this.worker.update(chunk);
    else this.inline.update(chunk);
  }

  boundary(extra: number | null): void {
    if (this.worker) return this.worker.boundary(extra);
    if (this.seen >= this.offloadAfter) {
      this.inline.finish();
      this.worker = new WorkerHasher();
      this.worker.boundary(extra);
      return;
    }
    this.inline.boundary(extra);
  }

  get offloaded(): boolean {
    return this.worker !== null;
  }

  finish(): string[] {
    if (!this.worker) return this.inline.finish();
    return [...this.inline.digests, ...this.worker.finish()];
  }

  abort(): void {
    this.inline.abort();
    this.worker?.abort();
  }
}
