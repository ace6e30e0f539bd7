/**
 * Per-layer progress: a redrawn block (bytes, MB/s, ETA) on a TTY; nothing otherwise (a script sees
 * only the lines AWS's CLI prints) or with --quiet. Output goes to stderr so stdout stays for results.
 */
interface Row {
  digest: string;
  bytes: number;
  total: number;
  started: number;
  done: boolean;
}

export class Progress {
  private readonly rows = new Map<string, Row>();
  private drawn = 0;
  private lastDraw = 0;
  private readonly quiet: boolean;

  constructor(quiet: boolean) {
    this.quiet = quiet || process.stderr.isTTY !== true;
  }

  update = (digest: string, bytes: number, total: number): void => {
    if (this.quiet) return;
    let r = this.rows.get(digest);
    if (!r) {
      r = { digest, bytes: 0, total, started: Date.now(), done: false };
      this.rows.set(digest, r);
    }
    r.bytes = bytes;
    if (bytes >= total) r.done = true;
    if (Date.now() - this.lastDraw > 100 || r.done) this.draw();
  };

  private draw(): void {
    this.lastDraw = Date.now();
    const lines = [...this.rows.values()].map((r) => {
      const pct = r.total ? Math.floor((100 * r.bytes) / r.total) : 100;
      const eta = r.done ? 'done' : etaOf(r);
      return `${r.digest.slice(7, 19)}  ${String(pct).padStart(3)}%  ${mb(r.bytes)}/${mb(r.total)}  ${rate(r)}  ${eta}`;
    });
    if (this.drawn) process.stderr.write(`\x1b[${this.drawn}A`);
    process.stderr.write(lines.map((l) => `\x1b[2K${l}\n`).join(''));
    this.drawn = lines.length;
  }
}

const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`;
function rate(r: Row): string {
  const s = (Date.now() - r.started) / 1000;
  return s > 0 ? `${(r.bytes / 1e6 / s).toFixed(1)} MB/s` : '-';
}
function etaOf(r: Row): string {
  const s = (Date.now() - r.started) / 1000;
  const speed = r.bytes / Math.max(s, 1e-3);
  return speed > 0 ? `ETA ${Math.ceil((r.total - r.bytes) / speed)}s` : 'ETA -';
}
