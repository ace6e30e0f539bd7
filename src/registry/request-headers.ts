/**
 * Extra request headers for every registry request made within a call, like Go's request context
 * carries AWS's custom headers: the caller runs its work inside `withRequestHeaders`, and the
 * transport adds `requestHeaders()` to each request it sends from there (token requests and
 * redirects included). Work that outlives the call (reads of a mounted layer) captures the headers
 * and runs each read inside them again.
 */
import { AsyncLocalStorage } from 'node:async_hooks';

const store = new AsyncLocalStorage<Readonly<Record<string, string>>>();

export function withRequestHeaders<T>(headers: Readonly<Record<string, string>>, fn: () => T): T {
  return Object.keys(headers).length ? store.run(headers, fn) : fn();
}

export function requestHeaders(): Readonly<Record<string, string>> | undefined {
  return store.getStore();
}
