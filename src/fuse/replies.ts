/**
 * Writing replies to /dev/fuse. Each reply is one synchronous write: an async stream could merge
 * two replies into one write, which the kernel rejects. A reply goes out only for a request still
 * waiting (`take`): one answered by timeout or interrupt is not answered twice.
 */
import fs from 'node:fs';
import type { Logger } from '../logger.js';
import { OUT_HEADER_SIZE, writeOutHeader } from './protocol.js';
import { Errno } from './types.js';

/** A request read and not answered yet. */
export interface Pending {
  lo: number;
  hi: number;
  opcode: number;
  start: number;
  done: boolean;
  /** performance.now() at arrival, for the onOp latency hook */
  t0: number;
  nodeid: number;
}

export interface FuseStats {
  requests: number;
  /** Filesystem calls that failed (threw) or timed out: the "FUSE op failure" metric. */
  errors: number;
  /** All error replies, including ordinary ones (ENODATA for absent xattrs, ENOSYS, EROFS...). */
  errorReplies: number;
  timeouts: number;
  interrupts: number;
  forgets: number;
  /** Reply writes the kernel refused with ENOENT (request already abandoned): harmless. */
  replyEnoent: number;
  replyFailures: number;
  inflight: number;
  maxInflight: number;
}

export class Replies {
  /** where small replies are encoded: header at 0, body from OUT_HEADER_SIZE */
  readonly scratch = Buffer.alloc(4096);

  constructor(
    private readonly fd: number,
    private readonly stats: FuseStats,
    /** marks `p` answered; false when it already was (timeout, interrupt) or the connection ended */
    private readonly take: (p: Pending, errno: number) => boolean,
    private readonly logger: Logger | undefined,
  ) {}

  private write(bufs: Buffer[] | Buffer, len: number): void {
    try {
      if (Array.isArray(bufs)) fs.writevSync(this.fd, bufs);
      else fs.writeSync(this.fd, bufs, 0, len);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') this.stats.replyEnoent++;
      else {
        this.stats.replyFailures++;
        if (code !== 'ENODEV' && code !== 'ECONNABORTED') this.logger?.warn({ code, len }, 'FUSE reply write failed');
      }
    }
  }

  error(p: Pending, errno: number): void {
    if (!this.take(p, errno)) return;
    this.stats.errorReplies++;
    writeOutHeader(this.scratch, OUT_HEADER_SIZE, errno, p.lo, p.hi);
    this.write(this.scratch, OUT_HEADER_SIZE);
  }

  empty(p: Pending): void {
    if (!this.take(p, 0)) return;
    writeOutHeader(this.scratch, OUT_HEADER_SIZE, 0, p.lo, p.hi);
    this.write(this.scratch, OUT_HEADER_SIZE);
  }

  /** Replies with the `bodyLen` bytes already encoded at scratch[OUT_HEADER_SIZE..]. */
  body(p: Pending, bodyLen: number): void {
    if (!this.take(p, 0)) return;
    writeOutHeader(this.scratch, OUT_HEADER_SIZE + bodyLen, 0, p.lo, p.hi);
    this.write(this.scratch, OUT_HEADER_SIZE + bodyLen);
  }

  data(p: Pending, data: Buffer): void {
    if (!this.take(p, 0)) return;
    const h = this.scratch.subarray(0, OUT_HEADER_SIZE);
    writeOutHeader(h, OUT_HEADER_SIZE + data.length, 0, p.lo, p.hi);
    this.write(data.length ? [h, data] : h, OUT_HEADER_SIZE);
  }

  u32(p: Pending, v: number): void {
    this.scratch.writeUInt32LE(v, OUT_HEADER_SIZE);
    this.scratch.writeUInt32LE(0, OUT_HEADER_SIZE + 4);
    this.body(p, 8);
  }

  /** Size protocol shared by GETXATTR and LISTXATTR: size 0 asks for the length; too small → ERANGE. */
  sized(p: Pending, size: number, data: Buffer): void {
    if (size === 0) this.u32(p, data.length);
    else if (data.length > size) this.error(p, Errno.ERANGE);
    else this.data(p, data);
  }
}
