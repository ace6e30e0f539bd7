/**
 * What `soci doctor` prints: one line per check, `ok`, `warn`, `fail` or `info` (a fact that is
 * neither good nor bad, such as which discovery found the index), what was seen, and for anything
 * not ok the fix. `--json` prints the same checks as an array.
 */

export type CheckStatus = 'ok' | 'warn' | 'fail' | 'info';

export interface Check {
  /** stable name scripts can match: containerd, containerd-config.proxy-plugin, registry.range, ... */
  id: string;
  status: CheckStatus;
  seen: string;
  fix?: string;
}

export class Report {
  readonly checks: Check[] = [];

  add(id: string, status: CheckStatus, seen: string, fix?: string): Check {
    const c: Check = { id, status, seen, ...(fix ? { fix } : {}) };
    this.checks.push(c);
    return c;
  }
  ok(id: string, seen: string): void {
    this.add(id, 'ok', seen);
  }
  info(id: string, seen: string): void {
    this.add(id, 'info', seen);
  }
  warn(id: string, seen: string, fix: string): void {
    this.add(id, 'warn', seen, fix);
  }
  fail(id: string, seen: string, fix: string): void {
    this.add(id, 'fail', seen, fix);
  }

  get failed(): boolean {
    return this.checks.some((c) => c.status === 'fail');
  }
}

/** `fail  containerd-config.proxy-plugin  no [proxy_plugins.soci] in …; fix: add …` */
export function formatCheck(c: Check): string {
  const line = `${c.status.padEnd(4)}  ${c.id}: ${c.seen}`;
  return c.fix ? `${line}; fix: ${c.fix}` : line;
}
