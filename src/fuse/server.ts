/**
 * FuseServer: mounts a read-only Filesystem on a directory and serves the FUSE kernel protocol on
 * /dev/fuse from the main thread: the connection's life (mount, INIT, a takeover, unmount, abort),
 * and requests served concurrently and answered by `unique` (handlers in ./ops.ts, replies in
 * ./replies.ts), with timeouts and interrupts. Knows nothing of SOCI.
 */
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import { promisify } from 'node:util';
import { SociError } from '../errors.js';
import { toErrno } from './errno.js';
import { readMountinfo, umount, type MountInfo } from '../host/index.js';
import { abortConnection, findFuseMount, mountFd, setReadaheadKb } from './mounts.js';
import { INIT_OUT_SIZE, InitFlag, MAX_MINOR, OUT_HEADER_SIZE, Op, WRITE_OPS, parseInitIn, readU64, writeInitOut, type NameEncoding } from './protocol.js';
import { HANDLERS, MAX_PAGES, type OpContext } from './ops.js';
import { Replies, type FuseStats, type Pending } from './replies.js';
import { DirHandles } from './dirs.js';
import { failLostRequests, notifyResend, RESEND_MINOR } from './recover.js';
import { startReader, type ReaderEnd, type ReaderKind, type RequestReader } from './readers.js';
import { Errno, type Filesystem } from './types.js';
import type { Logger } from '../logger.js';

const openAsync = promisify(fs.open);
const closeAsync = promisify(fs.close);

export type { FuseStats } from './replies.js';

export interface FuseServerOptions {
  mountpoint: string;
  /** Mount type becomes `fuse.<subtype>` (default 'soci'). */
  subtype?: string;
  /** Source shown by mount/df (default: subtype). */
  fsname?: string;
  /** 'auto' (default): pipe, falling back to worker; env SOCI_FUSE_READER overrides 'auto'. */
  reader?: ReaderKind | 'auto';
  /** A filesystem call that takes longer is answered EIO (default 60000; 0 disables). */
  requestTimeoutMs?: number;
  /** Kernel cache lifetimes in seconds (default 3600: the content is immutable). */
  entryTimeout?: number;
  attrTimeout?: number;
  /** Lifetime of negative lookups (default entryTimeout; 0 replies plain ENOENT). */
  negativeTimeout?: number;
  maxBackground?: number; // default 64
  /** Extra `-o` mount options. */
  mountOptions?: string[];
  /** Written to /sys/class/bdi/<dev>/read_ahead_kb after INIT (e.g. 1024). */
  readaheadKb?: number;
  /** How long to wait for the kernel's INIT after mounting (default 10000). */
  initTimeoutMs?: number;
  /** Negotiate FUSE_ABORT_ERROR (default true): a fusectl abort then reads as ECONNABORTED, not ENODEV. */
  abortError?: boolean;
  /** Unexpected conditions (reply write failures, reader errors). */
  logger?: Logger;
  /**
   * Name codec between the kernel's bytes and the Filesystem's strings (lookup, readdir, xattr
   * names): 'utf8' (default) or 'latin1' for byte-exact names that may not be valid UTF-8.
   */
  names?: NameEncoding;
  /**
   * After a takeover, ask the kernel to resend what the previous server had read
   * (FUSE_NOTIFY_RESEND) when it can (default true); false answers those requests EINTR, as on a
   * kernel without it.
   */
  resend?: boolean;
  /** Called once per answered request: op name, latency in µs, the errno of an error reply (else 0), and the node asked about (metrics, tracing). */
  onOp?: (op: string, micros: number, errno: number, nodeid: number) => void;
}

export type CloseReason = 'unmounted' | 'aborted' | 'error';

export interface CloseInfo {
  reason: CloseReason;
  /** errno code that ended the connection (ENODEV, ECONNABORTED, ...). */
  code: string;
  message: string;
}

/** Op code → lower-case name (`read`, `lookup`, …) for the onOp hook. */
const OP_NAMES: Record<number, string> = Object.fromEntries(Object.entries(Op).map(([k, v]) => [v, k.toLowerCase()]));

const TWO32 = 4294967296;
const MAX_READAHEAD = 1024 * 1024;
const WANTED_FLAGS =
  InitFlag.ASYNC_READ |
  InitFlag.PARALLEL_DIROPS |
  InitFlag.MAX_PAGES |
  InitFlag.CACHE_SYMLINKS |
  InitFlag.DO_READDIRPLUS |
  InitFlag.READDIRPLUS_AUTO |
  InitFlag.ABORT_ERROR |
  InitFlag.ASYNC_DIO;

export class FuseServer extends EventEmitter {
  private readonly names: NameEncoding;
  readonly mountpoint: string;
  readonly subtype: string;
  readonly stats: FuseStats = {
    requests: 0,
    errors: 0,
    errorReplies: 0,
    timeouts: 0,
    interrupts: 0,
    forgets: 0,
    replyEnoent: 0,
    replyFailures: 0,
    inflight: 0,
    maxInflight: 0,
  };
  /** Resolves once the connection has ended (unmount, abort or error). Never rejects. */
  readonly closed: Promise<CloseInfo>;
  /** Negotiated protocol (after INIT). */
  kernel = { major: 0, minor: 0, flags: 0, maxReadahead: 0 };
  /** The mountinfo entry (st_dev major:minor = fusectl connection id), after mount(). */
  mountInfo: MountInfo | undefined;

  private readonly fd: number;
  private readonly fsys: Filesystem;
  private readonly opts: Required<Pick<FuseServerOptions, 'requestTimeoutMs' | 'entryTimeout' | 'attrTimeout' | 'negativeTimeout' | 'maxBackground'>> &
    FuseServerOptions;
  private reader: RequestReader | null = null;
  private readonly pending = new Map<number, Pending>();
  private readonly dirs: DirHandles;
  private readonly replies: Replies;
  private readonly ctx: OpContext;
  private sweeper: NodeJS.Timeout | null = null;
  private isClosed = false;
  private ending = false;
  /** We detached the mount ourselves (umount -l): its teardown is an unmount, however the kernel words it. */
  private detached = false;
  private resolveClosed!: (c: CloseInfo) => void;
  private initWaiters: { resolve: () => void; reject: (e: Error) => void } | null = null;

  /** Opens /dev/fuse, mounts `fsys` on opts.mountpoint, and resolves once INIT is done. */
  static async mount(fsys: Filesystem, opts: FuseServerOptions): Promise<FuseServer> {
    const subtype = opts.subtype ?? 'soci';
    const fd = await openAsync('/dev/fuse', fs.constants.O_RDWR);
    try {
      await mountFd(fd, opts.mountpoint, subtype, opts.fsname ?? subtype, opts.mountOptions);
    } catch (e) {
      await closeAsync(fd).catch(() => undefined);
      throw e;
    }
    const server = new FuseServer(fd, fsys, opts);
    try {
      // Reading before mount(2) attached the fd fails with EPERM, so start only now.
      await server.start();
      server.mountInfo = await findFuseMount(opts.mountpoint, subtype);
    } catch (e) {
      await server.unmount({ lazy: true }).catch(() => undefined);
      server.finish({ code: 'EMOUNT', message: String(e) }, 'error'); // no-op if already closed
      throw e;
    }
    if (opts.readaheadKb) {
      // Only an optimisation: a read-only /sys (some containers) must not fail the mount.
      await server.setReadaheadKb(opts.readaheadKb).catch((e: unknown) => opts.logger?.warn({ error: String(e) }, 'cannot set read_ahead_kb'));
    }
    return server;
  }

  /**
   * Serves a connection that is already mounted and initialised, from an fd another process kept
   * open (a restarted daemon): no mount, no INIT. `kernel` is what INIT negotiated then. The
   * Filesystem must give the same node ids as the one that served it before. Requests the old
   * process had read but not answered are then recovered (recoverLost), unless `deferRecovery`:
   * a handover calls it once the old process, which still serves, has exited.
   */
  static async resume(
    fd: number,
    fsys: Filesystem,
    opts: FuseServerOptions,
    kernel: FuseServer['kernel'],
    how: { deferRecovery?: boolean } = {},
  ): Promise<FuseServer> {
    const server = new FuseServer(fd, fsys, opts);
    server.kernel = { ...kernel };
    server.mountInfo = await findFuseMount(opts.mountpoint, server.subtype);
    if (!server.mountInfo) {
      await closeAsync(fd).catch(() => undefined);
      throw new SociError('ERR_FUSE', `no fuse.${server.subtype} mount at ${opts.mountpoint} to resume`);
    }
    server.listen();
    if (!how.deferRecovery) await server.recoverLost();
    return server;
  }

  /** After recoverLost(): whether the kernel re-queued the requests a previous server had read. */
  resent = false;
  /** After recoverLost() without resend: how many lost requests were answered EINTR. */
  lostAnswered = 0;

  /**
   * Requests a previous server of this connection read and never answered: resent by the kernel
   * (Linux >= 6.9), else answered EINTR (./recover.ts), so that no reader waits forever.
   */
  async recoverLost(): Promise<void> {
    if (this.kernel.minor >= RESEND_MINOR && this.opts.resend !== false) {
      try {
        notifyResend(this.fd);
        this.resent = true;
        return;
      } catch (e) {
        this.opts.logger?.warn({ mountpoint: this.mountpoint, error: String(e) }, 'FUSE_NOTIFY_RESEND refused: answering lost requests EINTR');
      }
    }
    const below = await this.nextUnique();
    if (below === null) return;
    this.lostAnswered = await failLostRequests(this.fd, below, (u) => this.pending.has(u));
    if (this.lostAnswered)
      this.opts.logger?.warn({ mountpoint: this.mountpoint, count: this.lostAnswered }, 'answered requests lost with the previous server EINTR');
  }

  private uniqueWaiter: ((u: number) => void) | null = null;

  /** The id of the next request this server reads; a statfs of the mount makes one if none comes. */
  private nextUnique(): Promise<number | null> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.uniqueWaiter = null;
        resolve(null);
      }, 10_000);
      timer.unref();
      this.uniqueWaiter = (u) => {
        clearTimeout(timer);
        resolve(u);
      };
      fs.statfs(this.mountpoint, () => undefined);
    });
  }

  /** The /dev/fuse fd of this connection (to hand to a process that keeps it across restarts). */
  get connectionFd(): number {
    return this.fd;
  }

  private constructor(fd: number, fsys: Filesystem, opts: FuseServerOptions) {
    super();
    this.fd = fd;
    this.fsys = fsys;
    this.names = opts.names ?? 'utf8';
    this.dirs = new DirHandles(fsys, this.names);
    const entryTimeout = opts.entryTimeout ?? 3600;
    this.opts = {
      ...opts,
      requestTimeoutMs: opts.requestTimeoutMs ?? 60_000,
      entryTimeout,
      attrTimeout: opts.attrTimeout ?? 3600,
      negativeTimeout: opts.negativeTimeout ?? entryTimeout,
      maxBackground: opts.maxBackground ?? 64,
    };
    this.mountpoint = opts.mountpoint;
    this.subtype = opts.subtype ?? 'soci';
    this.closed = new Promise((r) => (this.resolveClosed = r));
    this.replies = new Replies(fd, this.stats, (p, errno) => this.take(p, errno), opts.logger);
    this.ctx = {
      fsys,
      replies: this.replies,
      dirs: this.dirs,
      names: this.names,
      timeouts: this.opts,
      forget: (ino, n) => this.forget(ino, n),
    };
  }

  /** Marks `p` answered; false when it was already (timeout/interrupt) or the connection ended. */
  private take(p: Pending, errno: number): boolean {
    if (p.done || this.isClosed) return false;
    p.done = true;
    if (this.pending.delete(p.lo + p.hi * TWO32)) this.stats.inflight = this.pending.size;
    this.opts.onOp?.(OP_NAMES[p.opcode] ?? String(p.opcode), (performance.now() - p.t0) * 1000, errno, p.nodeid);
    return true;
  }

  /** fusectl connection id (/sys/fs/fuse/connections/<id>) = st_dev minor of the mount. */
  get connectionId(): number | undefined {
    return this.mountInfo?.minor;
  }

  /** Which reader serves this connection. */
  get readerKind(): ReaderKind | undefined {
    return this.reader?.kind;
  }

  private start(): Promise<void> {
    const init = new Promise<void>((resolve, reject) => (this.initWaiters = { resolve, reject }));
    this.listen();
    const initTimeout = this.opts.initTimeoutMs ?? 10_000;
    const timer = setTimeout(() => this.initWaiters?.reject(new SociError('ERR_FUSE', `no FUSE INIT within ${initTimeout} ms`)), initTimeout);
    return init.finally(() => clearTimeout(timer));
  }

  /** Starts reading requests, and the sweeper that answers overdue ones. */
  private listen(): void {
    this.reader = startReader(this.fd, { onRequest: (b) => this.onRequest(b), onEnd: (e) => this.onEnd(e) }, this.opts.reader ?? 'auto');
    const t = this.opts.requestTimeoutMs;
    if (t > 0) {
      this.sweeper = setInterval(() => this.sweep(), Math.min(1000, Math.max(10, Math.floor(t / 10))));
      this.sweeper.unref();
    }
  }

  /** Raises page-cache readahead for this mount (bigger READ requests, fewer round trips). */
  async setReadaheadKb(kb: number): Promise<void> {
    const m = this.mountInfo ?? (await findFuseMount(this.mountpoint, this.subtype));
    if (!m) throw new SociError('ERR_FUSE', `mount ${this.mountpoint} not found in mountinfo`);
    await setReadaheadKb(m.major, m.minor, kb);
  }

  /**
   * Unmounts. lazy: false = plain umount only (rejects when busy); true = umount -l at once;
   * 'fallback' (default) = plain, then -l if that fails. After a plain umount, waits for the
   * connection to end; after a lazy one the daemon keeps serving open files until they close.
   */
  async unmount(opts: { lazy?: boolean | 'fallback' } = {}): Promise<{ lazy: boolean }> {
    const lazy = opts.lazy ?? 'fallback';
    if (this.isClosed) return { lazy: false };
    if (lazy !== true) {
      const r = await umount(this.mountpoint, false);
      if (r.ok) {
        await Promise.race([this.closed, new Promise((res) => setTimeout(res, 5000).unref())]);
        if (!this.isClosed) this.finish({ code: 'EUNMOUNT', message: 'unmounted' }, 'unmounted');
        return { lazy: false };
      }
      if (lazy === false) throw new SociError('ERR_FUSE', `umount ${this.mountpoint}: ${r.message || 'failed'}`);
    }
    const r = await umount(this.mountpoint, true);
    if (!r.ok && !this.isClosed) throw new SociError('ERR_FUSE', `umount -l ${this.mountpoint}: ${r.message}`);
    this.detached = r.ok;
    return { lazy: true };
  }

  /** Aborts the connection via fusectl (last resort for a hung daemon); the server then lazily unmounts. */
  async abort(): Promise<CloseInfo> {
    if (this.isClosed || this.ending) return this.closed;
    const m = this.mountInfo ?? (await findFuseMount(this.mountpoint, this.subtype));
    if (!m) throw new SociError('ERR_FUSE', `mount ${this.mountpoint} not found in mountinfo`);
    await abortConnection(m.minor);
    return this.closed;
  }

  // ---- connection end ----

  private onEnd(e: ReaderEnd): void {
    if (this.isClosed || this.ending) return;
    this.ending = true;
    void this.endConnection(e);
  }

  /**
   * If our mount is still in the mount table the connection died under it (fusectl abort, with or
   * without ABORT_ERROR, or a reader failure): nobody serves it any more, so detach it lazily or
   * users keep getting ENOTCONN. A normal umount removes the mount before the kernel reports ENODEV.
   */
  private async endConnection(e: ReaderEnd): Promise<void> {
    let still = false;
    try {
      const own = this.mountInfo;
      // Mount ids are reused (lowest free) once a detached mount is freed, so an id alone can
      // name some newer mount: ours only if the connection's device and mountpoint match too.
      still = own
        ? (await readMountinfo()).some((m) => m.mountId === own.mountId && m.major === own.major && m.minor === own.minor && m.mountpoint === own.mountpoint)
        : e.code === 'ECONNABORTED' && (await findFuseMount(this.mountpoint, this.subtype)) !== undefined;
    } catch {
      // mountinfo unreadable: keep the default
    }
    const reason = this.closeReason(e.code, still);
    if (still) {
      const r = await umount(this.mountpoint, true);
      if (!r.ok) this.opts.logger?.warn({ mountpoint: this.mountpoint, message: r.message }, 'umount -l after connection loss failed');
    }
    this.finish(e, reason);
  }

  private closeReason(code: string, still: boolean): CloseReason {
    if (code !== 'ENODEV' && code !== 'ECONNABORTED') return 'error';
    if (still) return 'aborted'; // the connection died under a live mount
    // The kernel (6.x) may end a lazily detached connection with ECONNABORTED rather than ENODEV
    // when ABORT_ERROR was negotiated, so our own detach decides, not the errno.
    if (this.detached) return 'unmounted';
    return code === 'ECONNABORTED' ? 'aborted' : 'unmounted';
  }

  private finish(e: { code: string; message: string }, reason: CloseReason): void {
    if (this.isClosed) return;
    this.isClosed = true;
    if (this.sweeper) clearInterval(this.sweeper);
    for (const p of this.pending.values()) p.done = true;
    this.pending.clear();
    this.stats.inflight = 0;
    this.dirs.clear();
    const reader = this.reader;
    reader?.close();
    if (!reader?.ownsFd) void closeAsync(this.fd).catch(() => undefined);
    this.initWaiters?.reject(new SociError('ERR_FUSE', `connection ended before INIT: ${e.code}`));
    try {
      this.fsys.destroy?.();
    } catch {
      // a failing destroy hook must not prevent close
    }
    const info: CloseInfo = { reason, code: e.code, message: e.message };
    this.resolveClosed(info);
    this.emit('close', info);
  }

  // ---- requests ----

  private onRequest(req: Buffer): void {
    const opcode = req.readUInt32LE(4);
    const lo = req.readUInt32LE(8);
    const hi = req.readUInt32LE(12);
    const nodeid = readU64(req, 16);
    this.stats.requests++;
    if (this.uniqueWaiter) {
      this.uniqueWaiter(lo + hi * TWO32);
      this.uniqueWaiter = null;
    }
    switch (opcode) {
      case Op.FORGET: // never replied
        this.stats.forgets++;
        this.forget(nodeid, readU64(req, 40));
        return;
      case Op.BATCH_FORGET: {
        const count = req.readUInt32LE(40);
        for (let i = 0, off = 48; i < count && off + 16 <= req.length; i++, off += 16) {
          this.stats.forgets++;
          this.forget(readU64(req, off), readU64(req, off + 8));
        }
        return;
      }
      case Op.INTERRUPT: {
        // Never replied itself; the interrupted request gets EINTR so its caller can go away.
        const target = readU64(req, 40);
        const p = this.pending.get(target);
        if (p && !p.done) {
          this.stats.interrupts++;
          this.replies.error(p, Errno.EINTR);
        }
        return;
      }
    }
    const p: Pending = { lo, hi, opcode, start: Date.now(), done: false, t0: performance.now(), nodeid };
    if (opcode === Op.INIT) return this.init(req, p);
    if (opcode === Op.DESTROY) {
      this.replies.empty(p);
      this.finish({ code: 'DESTROY', message: 'FUSE_DESTROY' }, 'unmounted');
      return;
    }
    if (WRITE_OPS.has(opcode)) return this.replies.error(p, Errno.EROFS);
    const handler = HANDLERS[opcode];
    // ENOSYS makes the kernel remember (no_flush, no_access, no_statx...) and stop asking.
    if (!handler) return this.replies.error(p, Errno.ENOSYS);
    const key = lo + hi * TWO32;
    this.pending.set(key, p);
    if (this.pending.size > this.stats.maxInflight) this.stats.maxInflight = this.pending.size;
    this.stats.inflight = this.pending.size;
    handler(this.ctx, req, nodeid, p).catch((e: unknown) => {
      if (p.done) return; // already answered (timeout, interrupt)
      this.stats.errors++;
      this.replies.error(p, toErrno(e));
    });
  }

  private forget(ino: number, n: number): void {
    try {
      this.fsys.forget?.(ino, n);
    } catch (e) {
      this.opts.logger?.warn({ ino, error: String(e) }, 'forget failed');
    }
  }

  private sweep(): void {
    const limit = Date.now() - this.opts.requestTimeoutMs;
    for (const p of this.pending.values()) {
      if (p.start <= limit && !p.done) {
        this.stats.timeouts++;
        this.stats.errors++;
        this.replies.error(p, Errno.EIO);
      }
    }
  }

  private init(req: Buffer, p: Pending): void {
    const k = parseInitIn(req, 40, req.readUInt32LE(0));
    if (k.major !== 7 || k.minor < 12) {
      this.replies.error(p, Errno.EPROTO);
      this.initWaiters?.reject(new SociError('ERR_FUSE', `unsupported FUSE protocol ${k.major}.${k.minor}`));
      return;
    }
    const minor = Math.min(k.minor, MAX_MINOR);
    const flags = (this.opts.abortError === false ? WANTED_FLAGS & ~InitFlag.ABORT_ERROR : WANTED_FLAGS) & k.flags;
    const maxReadahead = Math.min(k.maxReadahead, MAX_READAHEAD);
    this.kernel = { major: k.major, minor: k.minor, flags, maxReadahead };
    const bg = this.opts.maxBackground;
    const size = minor < 23 ? 24 : INIT_OUT_SIZE;
    writeInitOut(this.replies.scratch, OUT_HEADER_SIZE, {
      minor,
      maxReadahead,
      flags,
      maxBackground: bg,
      congestionThreshold: Math.floor((bg * 3) / 4),
      maxWrite: 4096,
      maxPages: MAX_PAGES,
    });
    this.replies.body(p, size);
    this.initWaiters?.resolve();
    this.initWaiters = null;
    this.emit('init', this.kernel);
  }
}
