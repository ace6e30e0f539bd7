/** Output helpers: tabwriter-style tables (like AWS's Go tabwriter, padding 4) and JSON. */

/**
 * Go's tabwriter with padding 4 and a space pad: each column as wide as its widest cell + 4, at least
 * `minWidth`. `terminated`: every cell ends with a tab, the last one too (it is padded, as when the
 * Go code prints a trailing `\t`); else the last cell is left as is.
 */
export function table(headers: string[], rows: string[][], o: { minWidth?: number; terminated?: boolean } = {}): string {
  const minWidth = o.minWidth ?? 4;
  const all = [headers, ...rows];
  const widths = headers.map((_, c) => Math.max(...all.map((r) => (r[c] ?? '').length)));
  const line = (r: string[]) => {
    const cells = r.map((cell, c) => (c === r.length - 1 && !o.terminated ? cell : cell.padEnd(Math.max(widths[c]! + 4, minWidth))));
    return o.terminated ? cells.join('') : cells.join('').trimEnd();
  };
  return `${all.map(line).join('\n')}\n`;
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
