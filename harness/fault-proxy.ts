/**
 * An HTTP proxy in front of a registry (or any HTTP server) with scriptable faults and counters.
 *
 * Exports:
 *   startFaultProxy(t, upstream 'host:port') → FaultProxy
 *   FaultProxy: { host '127.0.0.1:PORT', url, requests, add(rule), clear(), count(method?, path?), stop() }
 *     requests: every request seen {method, path, headers, fault?, start, end?, lastByte?, bytes}
 *     add({method?, path?: RegExp | string (substring), headers?: {name: RegExp | string}, times?
 *       (default 1), fault}) — the first matching rule with times left applies to a request (headers:
 *       every named request header must match, e.g. {range: /^bytes=65536-/} for one chunk); faults:
 *       {kind: 'status', status, retryAfter?, headers?, body?}  answer directly (500/503 bursts,
 *                                                429 + Retry-After, or a canned response)
 *       {kind: 'reset', afterBytes}              forward, send afterBytes of the body, destroy the socket
 *       {kind: 'truncate', afterBytes}           forward, send afterBytes, end the response (short body)
 *       {kind: 'flip', offset}                   forward with the body byte at offset XOR 0xff
 *       {kind: 'stall', afterBytes}              forward, send afterBytes (-1: not even headers), then hang
 *       {kind: 'redirect', location, status?}    answer 307 (default) to location(path)
 *       {kind: 'headers', set}                   forward, overriding response headers (e.g. content-type)
 *       {kind: 'hold', until}                    forward only once the promise `until` settles
 *       {kind: 'dropRange'}                      forward without the Range header (200 + whole blob,
 *                                                as Nexus or a Harbor proxy cache answer)
 *       {kind: 'noMultiRange'}                   answer 416 to a multi-range Range header, else forward
 * The Host header is passed through, so registry Location headers keep pointing at the proxy.
 */
import { createServer, request, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export type Fault =
  | { kind: 'status'; status: number; retryAfter?: string; headers?: Record<string, string>; body?: string }
  | { kind: 'reset'; afterBytes: number }
  | { kind: 'truncate'; afterBytes: number }
  | { kind: 'flip'; offset: number }
  | { kind: 'stall'; afterBytes: number }
  | { kind: 'redirect'; location: (path: string) => string; status?: number }
  | { kind: 'headers'; set: Record<string, string> }
  | { kind: 'hold'; until: Promise<unknown> }
  | { kind: 'dropRange' }
  | { kind: 'noMultiRange' };

/** The faults applied to a forwarded response (the others answer without the upstream). */
type Forwarded = Exclude<Fault, { kind: 'hold' | 'status' | 'redirect' | 'dropRange' | 'noMultiRange' }>;

export interface FaultRule {
  method?: string;
  path?: RegExp | string;
  /** request headers (lower-case names) that must all match: a substring or a RegExp */
  headers?: Record<string, RegExp | string>;
  times?: number;
  fault: Fault;
}

export interface ProxiedRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  fault?: Fault['kind'];
  /** when the request arrived and when its response ended or broke (ms since the epoch), to check concurrency */
  start: number;
  end?: number;
  /**
   * when the last body byte was written to the client (ms since the epoch). A client that waits for
   * a response's last byte before it sends its next request makes that request arrive at or after
   * this time, while `end` can come later (the upstream's end, the close): [start, lastByte) is
   * the span to count overlaps with.
   */
  lastByte?: number;
  /** body bytes written to the client */
  bytes: number;
}

export interface FaultProxy {
  host: string;
  url: string;
  requests: ProxiedRequest[];
  add(rule: FaultRule): void;
  clear(): void;
  count(method?: string, path?: RegExp | string): number;
  stop(): Promise<void>;
}

function matches(
  rule: { method?: string; path?: RegExp | string; headers?: FaultRule['headers'] },
  method: string,
  path: string,
  headers: IncomingHttpHeaders = {},
): boolean {
  if (rule.method && rule.method !== method) return false;
  for (const [name, want] of Object.entries(rule.headers ?? {})) {
    const v = headers[name];
    const got = Array.isArray(v) ? v.join(', ') : v;
    if (got === undefined || !(typeof want === 'string' ? got.includes(want) : want.test(got))) return false;
  }
  if (rule.path === undefined) return true;
  return typeof rule.path === 'string' ? path.includes(rule.path) : rule.path.test(path);
}

export async function startFaultProxy(t: { after: (fn: () => unknown) => void }, upstream: string): Promise<FaultProxy> {
  const [uhost, uport] = [upstream.slice(0, upstream.lastIndexOf(':')), Number(upstream.slice(upstream.lastIndexOf(':') + 1))];
  const rules: Array<FaultRule & { left: number }> = [];
  const requests: ProxiedRequest[] = [];
  const sockets = new Set<Socket>();

  const server: Server = createServer((req, res) => {
    const method = req.method ?? 'GET';
    const path = req.url ?? '/';
    const rule = rules.find((r) => r.left > 0 && matches(r, method, path, req.headers));
    if (rule) rule.left--;
    const fault = rule?.fault;
    const entry: ProxiedRequest = { method, path, headers: { ...req.headers }, ...(fault ? { fault: fault.kind } : {}), start: Date.now(), bytes: 0 };
    requests.push(entry);
    // Every body byte goes through write() or end() (pipe() included): count them there.
    const sent = (chunk: unknown) => {
      if (typeof chunk === 'string' || chunk instanceof Uint8Array) {
        entry.bytes += Buffer.byteLength(chunk);
        entry.lastByte = Date.now();
      }
    };
    const [write, end] = [res.write.bind(res), res.end.bind(res)];
    res.write = ((chunk: unknown, ...rest: unknown[]) => {
      sent(chunk);
      return (write as (...a: unknown[]) => boolean)(chunk, ...rest);
    }) as typeof res.write;
    res.end = ((chunk?: unknown, ...rest: unknown[]) => {
      if (typeof chunk !== 'function') sent(chunk);
      return (end as (...a: unknown[]) => typeof res)(chunk, ...rest);
    }) as typeof res.end;
    res.on('close', () => {
      entry.end = Date.now();
    });

    if (fault?.kind === 'status') {
      req.resume();
      res.writeHead(fault.status, { 'content-type': 'application/json', ...(fault.retryAfter ? { 'retry-after': fault.retryAfter } : {}), ...fault.headers });
      res.end(fault.body ?? JSON.stringify({ errors: [{ code: 'FAULT', message: `injected ${fault.status}` }] }));
      return;
    }
    if (fault?.kind === 'redirect') {
      req.resume();
      res.writeHead(fault.status ?? 307, { location: fault.location(path), 'content-length': '0' });
      res.end();
      return;
    }
    if (fault?.kind === 'stall' && fault.afterBytes < 0) {
      req.resume();
      return; // never answer; the socket is destroyed at stop()
    }
    if (fault?.kind === 'hold') {
      void fault.until.finally(() => forward(undefined));
      return;
    }
    if (fault?.kind === 'noMultiRange' && (req.headers.range ?? '').includes(',')) {
      req.resume();
      res.writeHead(416, { 'content-length': '0' });
      res.end();
      return;
    }
    if (fault?.kind === 'dropRange') delete req.headers.range;
    forward(fault?.kind === 'dropRange' || fault?.kind === 'noMultiRange' ? undefined : fault);

    function forward(fault: Forwarded | undefined) {
      const up = request({ host: uhost, port: uport, method, path, headers: req.headers }, (ures) => {
        res.writeHead(ures.statusCode ?? 502, fault?.kind === 'headers' ? { ...ures.headers, ...fault.set } : ures.headers);
        let sent = 0;
        if (!fault || fault.kind === 'headers') {
          ures.pipe(res);
          return;
        }
        if ((fault.kind === 'reset' || fault.kind === 'truncate') && fault.afterBytes === 0) {
          // headers only, then the cut (a resumed download that makes no progress)
          res.flushHeaders();
          ures.destroy();
          if (fault.kind === 'reset') setImmediate(() => res.socket?.destroy());
          else res.socket?.end();
          return;
        }
        ures.on('data', (chunk: Buffer) => {
          let c = chunk;
          if (fault.kind === 'flip') {
            if (fault.offset >= sent && fault.offset < sent + c.length) {
              c = Buffer.from(c);
              c[fault.offset - sent]! ^= 0xff;
            }
            sent += c.length;
            res.write(c);
            return;
          }
          const limit = fault.afterBytes;
          if (sent >= limit) return;
          const part = c.subarray(0, Math.min(c.length, limit - sent));
          sent += part.length;
          res.write(part);
          if (sent >= limit) {
            ures.destroy();
            if (fault.kind === 'reset') setImmediate(() => res.socket?.destroy());
            else if (fault.kind === 'truncate') res.socket?.end(); // short body, then close
            // stall: keep the socket open and silent
          }
        });
        ures.on('end', () => {
          if (!res.writableEnded && (fault.kind === 'flip' || sent < (fault as { afterBytes?: number }).afterBytes!)) res.end();
        });
      });
      up.on('error', () => res.destroy());
      req.pipe(up);
    }
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const proxy: FaultProxy = {
    host: `127.0.0.1:${port}`,
    url: `http://127.0.0.1:${port}`,
    requests,
    add: (rule) => rules.push({ ...rule, left: rule.times ?? 1 }),
    clear: () => {
      rules.length = 0;
      requests.length = 0;
    },
    count: (method, path) =>
      requests.filter((r) => matches({ ...(method ? { method } : {}), ...(path !== undefined ? { path } : {}) }, r.method, r.path)).length,
    stop: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
  t.after(() => proxy.stop());
  return proxy;
}
