/**
 * A userspace TCP shaping proxy (this kernel has no sch_netem), put in front of a private registry
 * (plain HTTP/1.1) so that full and lazy pulls see the same bandwidth and latency.
 *
 * Model: a link with a one-way delay d = rttMs/2 in each direction and a bandwidth `rate` shared by ALL
 * connections of the proxy, per direction (one global FIFO serialiser per direction, like a real access
 * link). A chunk of n bytes arriving at time a starts serialising at s = max(a, linkFreeAt), the link is
 * busy until s + n·8/rate (= the new linkFreeAt) and the chunk is delivered d later. This is the same as
 * "departs at max(a + d, linkFreeAt) with linkFreeAt advancing by n·8/rate": a constant delay commutes
 * with a FIFO queue. Order is preserved per connection. Chunks are split to ≤ 64 KiB so that concurrent
 * connections interleave in the FIFO. A new connection pays one RTT (the TCP handshake) before its first
 * byte goes onto the link, in both directions. Profile p0 (unlimited, 0 ms) is a plain pipe.
 *
 * Memory stays bounded (a 1 GB blob at 25 Mbit/s): the source socket is paused while its connection has
 * more than `limit` bytes not yet serialised (so the global backlog is ≤ connections × limit and the
 * upstream server blocks in TCP like it would on a real link), while the destination's write buffer is
 * full, or while more than `hardCap` bytes are queued in all. limit = max(128 KiB, 8 ms of link time):
 * enough lead that the 1 ms timer granularity never idles the link; bytes in propagation (rate × d, the
 * bandwidth-delay product) do not count against it, so a single connection can fill the pipe.
 *
 * Counters: bytesDown/bytesUp are counted when written to the destination (for bytesDown: what the client
 * really received, headers included). Requests are counted by parsing the client→upstream stream as
 * HTTP/1.1 (keep-alive: many per connection; bodies skipped by Content-Length or chunked encoding). After
 * something unparseable (not a request line, a head over 64 KiB, CONNECT or Upgrade) that connection is
 * no longer parsed, so it can undercount but never invents requests.
 *
 * Timers: one setTimeout per direction of a connection, armed for the next delivery (≈1 ms granularity,
 * accepted); the schedule is computed from exact times so timer lateness does not accumulate.
 */
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';

export interface ShapeProfile {
  id: 'p0' | 'p1' | 'p2' | 'p3' | 'p4';
  label: string;
  rateBitsPerSec: number /* 0 = unlimited */;
  rttMs: number;
}

export const PROFILES: Record<ShapeProfile['id'], ShapeProfile> = {
  p0: { id: 'p0', label: 'unshaped', rateBitsPerSec: 0, rttMs: 0 },
  p1: { id: 'p1', label: '1 Gbit/s, 2 ms RTT', rateBitsPerSec: 1e9, rttMs: 2 },
  p2: { id: 'p2', label: '100 Mbit/s, 20 ms RTT', rateBitsPerSec: 100e6, rttMs: 20 },
  p3: { id: 'p3', label: '1 Gbit/s, 50 ms RTT', rateBitsPerSec: 1e9, rttMs: 50 },
  p4: { id: 'p4', label: '25 Mbit/s, 100 ms RTT', rateBitsPerSec: 25e6, rttMs: 100 },
};

export interface ProxyStats {
  connections: number;
  bytesDown: number /* upstream→client */;
  bytesUp: number;
  requests: number /* HTTP requests seen client→upstream */;
  rangeRequests: number /* requests with a Range header */;
  getBlobRequests: number;
}

export interface ShapeProxy {
  host: string /* '127.0.0.1:<port>' */;
  port: number;
  stats(): ProxyStats;
  resetStats(): void;
  close(): Promise<void>;
}

const CHUNK = 64 * 1024;
const SLACK_MS = 0.5; // deliver what is due within this much, saves a timer round trip

/** One direction of the link, shared by every connection: a FIFO serialiser plus a constant delay. */
class Link {
  freeAt = 0;
  constructor(
    readonly bytesPerMs: number /* 0 = unlimited */,
    readonly delayMs: number,
  ) {}
  /** Schedules n bytes arriving at `at`; returns when they are serialised and when they are delivered. */
  schedule(at: number, n: number): [number, number] {
    if (!this.bytesPerMs) return [at, at + this.delayMs];
    this.freeAt = Math.max(at, this.freeAt) + n / this.bytesPerMs;
    return [this.freeAt, this.freeAt + this.delayMs];
  }
}

interface Item {
  buf: Buffer;
  serEnd: number;
  deliverAt: number;
}

/** src → dst through a Link, with flow control; ends dst once src ended and everything was delivered. */
class Pipe {
  private queue: Item[] = [];
  private pending = 0;
  private paused = false;
  private needDrain = false;
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Infinity;
  srcEnded = false;
  done = false; // src ended and dst ended (or disposed)

  constructor(
    private readonly src: Socket,
    private readonly dst: Socket,
    private readonly link: Link,
    private readonly notBefore: number,
    private readonly limit: number,
    private readonly hardCap: number,
    private readonly onDeliver: (n: number) => void,
    onData?: (b: Buffer) => void,
  ) {
    src.on('data', (b: Buffer) => {
      onData?.(b);
      this.push(b);
    });
    src.on('end', () => {
      this.srcEnded = true;
      this.pump();
    });
    dst.on('drain', () => {
      this.needDrain = false;
      this.pump();
    });
  }

  private push(b: Buffer): void {
    if (this.done) return;
    const at = Math.max(performance.now(), this.notBefore);
    for (let o = 0; o < b.length; o += CHUNK) {
      const buf = b.subarray(o, o + CHUNK);
      const [serEnd, deliverAt] = this.link.schedule(at, buf.length);
      this.queue.push({ buf, serEnd, deliverAt });
      this.pending += buf.length;
    }
    this.pump();
  }

  /** When the bytes not yet serialised fall to ≤ bytes (walks from the tail; the queue is short). */
  private serialisedDownTo(bytes: number): number {
    let acc = 0;
    for (let i = this.queue.length - 1; i >= 0; i--) {
      acc += this.queue[i]!.buf.length;
      if (acc > bytes) return this.queue[i]!.serEnd;
    }
    return -Infinity;
  }

  pump(): void {
    if (this.done) return;
    const now = performance.now();
    while (this.queue.length && !this.needDrain && this.queue[0]!.deliverAt <= now + SLACK_MS) {
      const it = this.queue.shift()!;
      this.pending -= it.buf.length;
      if (this.dst.destroyed) continue;
      this.onDeliver(it.buf.length);
      if (!this.dst.write(it.buf)) this.needDrain = true;
    }
    if (!this.queue.length && this.srcEnded) {
      this.done = true;
      this.clearTimer();
      if (!this.dst.destroyed) this.dst.end();
      return;
    }
    // Flow control with hysteresis: pause above the limits, resume below half of them.
    const backlogOver = (frac: number) => this.serialisedDownTo(this.limit * frac) > now;
    if (!this.paused && (this.needDrain || this.pending > this.hardCap || backlogOver(1))) {
      this.paused = true;
      this.src.pause();
    } else if (this.paused && !this.needDrain && this.pending <= this.hardCap / 2 && !backlogOver(0.5)) {
      this.paused = false;
      this.src.resume();
    }
    let next = this.queue.length && !this.needDrain ? this.queue[0]!.deliverAt : Infinity;
    if (this.paused) next = Math.min(next, Math.max(now, this.serialisedDownTo(this.limit / 2)));
    if (next < Infinity) this.arm(next, now);
  }

  private arm(at: number, now: number): void {
    if (this.timer && this.timerAt <= at) return; // an earlier wake-up re-arms anyway
    this.clearTimer();
    this.timerAt = at;
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        this.timerAt = Infinity;
        this.pump();
      },
      Math.max(1, Math.ceil(at - now)),
    );
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = Infinity;
  }

  dispose(): void {
    this.done = true;
    this.clearTimer();
    this.queue = [];
    this.pending = 0;
    if (this.paused && !this.src.destroyed) this.src.resume(); // drain to 'end' rather than stall
  }
}

type OnRequest = (method: string, target: string, headers: Map<string, string>) => void;

/** Counts HTTP/1.1 requests on a client→server byte stream, skipping request bodies. */
class RequestParser {
  private state: 'head' | 'body' | 'chunk-size' | 'chunk-data' | 'trailer' | 'opaque' = 'head';
  private partial = '';
  private lines: string[] = [];
  private headBytes = 0;
  private left = 0;
  private afterBody: 'head' | 'chunk-size' = 'head';
  constructor(private readonly onRequest: OnRequest) {}

  feed(b: Buffer): void {
    let i = 0;
    while (i < b.length && this.state !== 'opaque') {
      if (this.state === 'body' || this.state === 'chunk-data') {
        const n = Math.min(this.left, b.length - i);
        i += n;
        this.left -= n;
        if (this.left === 0) {
          if (this.state === 'chunk-data') {
            this.state = 'body';
            this.left = 2;
            this.afterBody = 'chunk-size';
          } // the CRLF after the data
          else this.state = this.afterBody;
        }
        continue;
      }
      const nl = b.indexOf(10, i);
      const end = nl < 0 ? b.length : nl;
      this.partial += b.toString('latin1', i, end);
      this.headBytes += end - i + 1;
      i = end + 1;
      if (this.headBytes > 64 * 1024) this.state = 'opaque';
      else if (nl >= 0) {
        const line = this.partial.endsWith('\r') ? this.partial.slice(0, -1) : this.partial;
        this.partial = '';
        this.line(line);
      }
    }
  }

  private line(line: string): void {
    if (this.state === 'chunk-size') {
      const size = parseInt(line.split(';')[0]!.trim(), 16);
      if (Number.isNaN(size)) this.state = 'opaque';
      else if (size === 0) this.state = 'trailer';
      else {
        this.state = 'chunk-data';
        this.left = size;
      }
      return;
    }
    if (this.state === 'trailer') {
      if (line === '') this.toHead();
      return;
    }
    if (line !== '') {
      this.lines.push(line);
      return;
    }
    if (this.lines.length === 0) {
      this.headBytes = 0;
      return;
    } // stray CRLF between requests
    const m = /^([A-Z]+) (\S+) HTTP\/\d/.exec(this.lines[0]!);
    if (!m) {
      this.state = 'opaque';
      return;
    }
    const headers = new Map<string, string>();
    for (const h of this.lines.slice(1)) {
      const c = h.indexOf(':');
      if (c > 0) headers.set(h.slice(0, c).trim().toLowerCase(), h.slice(c + 1).trim());
    }
    this.onRequest(m[1]!, m[2]!, headers);
    this.toHead();
    const length = Number(headers.get('content-length') ?? 0);
    if (m[1] === 'CONNECT' || headers.has('upgrade')) this.state = 'opaque';
    else if (/chunked/i.test(headers.get('transfer-encoding') ?? '')) this.state = 'chunk-size';
    else if (length > 0) {
      this.state = 'body';
      this.left = length;
      this.afterBody = 'head';
    }
  }

  private toHead(): void {
    this.state = 'head';
    this.lines = [];
    this.headBytes = 0;
  }
}

const zeroStats = (): ProxyStats => ({ connections: 0, bytesDown: 0, bytesUp: 0, requests: 0, rangeRequests: 0, getBlobRequests: 0 });

export async function startShapeProxy(opts: { upstream: string /* 'host:port' */; profile: ShapeProfile; listenHost?: string }): Promise<ShapeProxy> {
  const colon = opts.upstream.lastIndexOf(':');
  const upHost = opts.upstream.slice(0, colon).replace(/^\[|\]$/g, '');
  const upPort = Number(opts.upstream.slice(colon + 1));
  const { rateBitsPerSec: rate, rttMs: rtt } = opts.profile;
  const bytesPerMs = rate / 8 / 1000;
  const down = new Link(bytesPerMs, rtt / 2);
  const up = new Link(bytesPerMs, rtt / 2);
  const limit = Math.max(128 * 1024, Math.ceil(bytesPerMs * 8));
  const hardCap = Math.max(4 << 20, 2 * (limit + Math.ceil((bytesPerMs * rtt) / 2)));
  let stats = zeroStats();
  const conns = new Set<{ sockets: Socket[]; pipes: Pipe[] }>();

  const onRequest: OnRequest = (method, target, headers) => {
    stats.requests++;
    if (headers.has('range')) stats.rangeRequests++;
    if (method === 'GET' && /\/v2\/.+\/blobs\/[^/?]+(\?|$)/.test(target)) stats.getBlobRequests++;
  };

  const server = createServer({ allowHalfOpen: true }, (client) => {
    stats.connections++;
    const upstream = connect({ host: upHost, port: upPort, allowHalfOpen: true });
    client.setNoDelay(true); // Nagle + delayed ACKs would add their own ~40 ms latencies
    upstream.setNoDelay(true);
    const notBefore = performance.now() + rtt; // TCP handshake
    const parser = new RequestParser(onRequest);
    const toUp = new Pipe(
      client,
      upstream,
      up,
      notBefore,
      limit,
      hardCap,
      (n) => {
        stats.bytesUp += n;
      },
      (b) => parser.feed(b),
    );
    const toClient = new Pipe(upstream, client, down, notBefore, limit, hardCap, (n) => {
      stats.bytesDown += n;
    });
    const conn = { sockets: [client, upstream], pipes: [toUp, toClient] };
    conns.add(conn);
    const kill = () => {
      for (const p of conn.pipes) p.dispose();
      for (const s of conn.sockets) s.destroy();
      conns.delete(conn);
    };
    // Errors destroy both sides. A clean close of one side stops the pipe into it; if that side closed
    // without ending (destroyed), the other side gets nothing more either: destroy it.
    for (const [s, into, from, other] of [
      [client, toClient, toUp, upstream],
      [upstream, toUp, toClient, client],
    ] as const) {
      s.on('error', kill);
      s.on('close', () => {
        into.dispose();
        if (!from.srcEnded) {
          from.dispose();
          other.destroy();
        }
        if (client.destroyed && upstream.destroyed) kill();
      });
    }
  });
  server.on('error', () => {}); // listen errors reject below; later ones have nobody to report to
  await new Promise<void>((res, rej) => {
    server.once('error', rej);
    server.listen(0, opts.listenHost ?? '127.0.0.1', () => {
      server.off('error', rej);
      res();
    });
  });
  const addr = server.address() as AddressInfo;
  const hostPart = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  return {
    host: `${hostPart}:${addr.port}`,
    port: addr.port,
    stats: () => ({ ...stats }),
    resetStats: () => {
      stats = zeroStats();
    },
    close: () =>
      new Promise<void>((res) => {
        for (const c of conns) {
          for (const p of c.pipes) p.dispose();
          for (const s of c.sockets) s.destroy();
        }
        conns.clear();
        server.close(() => res());
      }),
  };
}
