/**
 * Prefetch records: which files an image's layers really served while a container started, in the
 * order they were first read. A record covers the start window, from the first mount until no new
 * file has been read for `quietMs`, or `maxMs` at most. `soci convert/create --prefetch-record`
 * turn it into AWS-format prefetch artifacts (the files' spans), which the snapshotter (ours, and
 * AWS's with `[prefetch] enable = true`) fetches at mount.
 *
 * The file (ours, JSON): {"version":1, "image", "manifest", "startedAt", "windowMs",
 * "files":[{"layer","path","atMs"}…]}; `atMs` is the time of the first read since the window began.
 */
import { SociError } from '../errors.js';

export interface RecordedFile {
  layer: string;
  /** the file's path in the layer, UTF-8, no leading slash */
  path: string;
  /** ms from the start of the window to the first read */
  atMs: number;
}

export interface PrefetchRecord {
  version: 1;
  image: string;
  manifest: string;
  startedAt: string;
  windowMs: number;
  files: RecordedFile[];
}

export interface RecorderOptions {
  image: string;
  manifest: string;
  /** the window closes this long after the last new file (default 5 s) */
  quietMs?: number;
  /** and at the latest this long after it opened (default 60 s) */
  maxMs?: number;
  /** called once, when the window closes (quiet, max, or finish()) */
  onDone?: (r: PrefetchRecord) => void;
}

export class PrefetchRecorder {
  private readonly files: RecordedFile[] = [];
  private readonly seen = new Set<string>();
  private readonly t0 = Date.now();
  private readonly startedAt = new Date().toISOString();
  private quiet: NodeJS.Timeout | undefined;
  private readonly max: NodeJS.Timeout;
  private record: PrefetchRecord | undefined;

  constructor(private readonly o: RecorderOptions) {
    this.max = setTimeout(() => this.finish(), o.maxMs ?? 60_000);
    this.max.unref();
    this.armQuiet();
  }

  get done(): boolean {
    return this.record !== undefined;
  }

  /** The callback a layer's filesystem calls on each file's first read. */
  layer(digest: string): (path: string) => void {
    return (path) => this.note(digest, path);
  }

  note(layer: string, path: string): void {
    if (this.record) return;
    const key = `${layer}\0${path}`;
    if (this.seen.has(key)) return;
    this.seen.add(key);
    this.files.push({ layer, path, atMs: Date.now() - this.t0 });
    this.armQuiet();
  }

  /** Closes the window now (if still open) and returns the record. */
  finish(): PrefetchRecord {
    if (!this.record) {
      clearTimeout(this.max);
      if (this.quiet) clearTimeout(this.quiet);
      this.record = {
        version: 1,
        image: this.o.image,
        manifest: this.o.manifest,
        startedAt: this.startedAt,
        windowMs: Date.now() - this.t0,
        files: [...this.files],
      };
      this.o.onDone?.(this.record);
    }
    return this.record;
  }

  private armQuiet(): void {
    if (this.quiet) clearTimeout(this.quiet);
    this.quiet = setTimeout(() => this.finish(), this.o.quietMs ?? 5000);
    this.quiet.unref();
  }
}

export function encodeRecord(r: PrefetchRecord): Buffer {
  return Buffer.from(`${JSON.stringify(r, null, 2)}\n`);
}

/** The recorded paths in first-read order, each once (the input of --prefetch-record). */
export function recordPaths(bytes: Buffer, what = 'prefetch record'): string[] {
  let j: unknown;
  try {
    j = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new SociError('ERR_USAGE', `${what} is not JSON`);
  }
  const r = j as Partial<PrefetchRecord>;
  if (r?.version !== 1 || !Array.isArray(r.files) || !r.files.every((f) => typeof f?.path === 'string' && typeof f.layer === 'string'))
    throw new SociError('ERR_USAGE', `${what} is not a prefetch record (version 1 with a files list)`);
  const out: string[] = [];
  const seen = new Set<string>();
  for (const f of [...r.files].sort((a, b) => (a.atMs ?? 0) - (b.atMs ?? 0))) {
    if (seen.has(f.path)) continue;
    seen.add(f.path);
    out.push(f.path);
  }
  return out;
}
