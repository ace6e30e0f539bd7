/** Output helpers: tabwriter-style tables (like AWS's Go tabwriter, padding 4) and JSON. */

export function table(headers: string[], rows: string[][]): string {
  const all = [headers, ...rows];
  const widths = headers.map((_, c) => Math.max(...all.map((r) => (r[c] ?? '').length)));
  return (
    all
      .map((r) =>
        r
          .map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(Math.max(widths[c]! + 4, 4))))
          .join('')
          .trimEnd(),
      )
      .join('\n') + '\n'
  );
}

export function printJson(v: unknown): void {
  process.stdout.write(`${JSON.stringify(v, null, 2)}\n`);
}

export function out(s: string): void {
  process.stdout.write(s.endsWith('\n') ? s : `${s}\n`);
}

/** Progress and informational lines go to stderr so stdout stays machine-readable. */
export function info(s: string): void {
  process.stderr.write(`${s}\n`);
}
