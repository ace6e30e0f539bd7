/**
 * Prefetch records: which files, and which byte ranges of them, an image's layers really served
 * while a container started, the files in the order they were first read. A record covers the start
 * window, from the first mount until no new file has been read for `quietMs`, or `maxMs` at most.
 * `soci convert/create --prefetch-record` turn it into AWS-format prefetch artifacts (the spans
 * holding those ranges, in read order), which the snapshotter (ours, and AWS's with
 * `[prefetch] enable = true`) fetches at mount. A program that maps a large library or data file
 * and touches a few pages of it costs the spans of those pages, not of the whole file.
 *
 * The file (ours, JSON): {"version":1, "image", "manifest", "startedAt", "windowMs",
 * "files":[{"layer","path","atMs","ranges"}…]}; `atMs` is the time of the first read since the window
 * began, `ranges` the [offset, length] pairs read (merged, by offset). A file without `ranges`
 * (an older record) stands for the whole file.
 */
import { SociError } from '../errors.js';
import type { PrefetchTarget } from '../soci/prefetch.js';

export interface RecordedFile {
  layer: string;
  /** the file's path in the layer, UTF-8, no leading slash */
  path: string;
  /** ms from the start of the window to the first read */
  atMs: number;
  /** the byte ranges read, [offset, length], merged and by offset; absent: the whole file */
  ranges?: Array<[number, number]>;
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
  /** per file, in first-read order: the merged [start, end) ranges read, by start (null: the whole file) */
  private readonly files = new Map<string, { file: RecordedFile; ranges: Array<[number, number]> | null }>();
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

  /** The callback a layer's filesystem calls on each read. */
  layer(digest: string): (path: string, offset: number, length: number) => void {
    return (path, offset, length) => this.note(digest, path, offset, length);
  }

  /** A read of a file (offset and length omitted: the whole file); a new file restarts the quiet period. */
  note(layer: string, path: string, offset?: number, length?: number): void {
    if (this.record) return;
    const key = `${layer}\0${path}`;
    let e = this.files.get(key);
    if (!e) {
      e = { file: { layer, path, atMs: Date.now() - this.t0 }, ranges: [] };
      this.files.set(key, e);
      this.armQuiet();
    }
    if (offset === undefined || length === undefined) e.ranges = null;
    else if (e.ranges && length > 0) addRange(e.ranges, offset, offset + length);
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
        files: [...this.files.values()].map(({ file, ranges }) =>
          ranges?.length ? { ...file, ranges: ranges.map(([a, b]): [number, number] => [a, b - a]) } : { ...file },
        ),
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

/** Adds [start, end) to merged ranges sorted by start (touching ranges merge too). */
function addRange(ranges: Array<[number, number]>, start: number, end: number): void {
  let i = 0;
  while (i < ranges.length && ranges[i]![1] < start) i++;
  let j = i;
  while (j < ranges.length && ranges[j]![0] <= end) {
    start = Math.min(start, ranges[j]![0]);
    end = Math.max(end, ranges[j]![1]);
    j++;
  }
  ranges.splice(i, j - i, [start, end]);
}

export function encodeRecord(r: PrefetchRecord): Buffer {
  return Buffer.from(`${JSON.stringify(r, null, 2)}\n`);
}

/** The recorded files in first-read order, each once, with the ranges read (the input of --prefetch-record). */
export function recordTargets(bytes: Buffer, what = 'prefetch record'): PrefetchTarget[] {
  let j: unknown;
  try {
    j = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new SociError('ERR_USAGE', `${what} is not JSON`);
  }
  const r = j as Partial<PrefetchRecord>;
  const isRanges = (x: unknown) =>
    x === undefined || (Array.isArray(x) && x.every((p) => Array.isArray(p) && p.length === 2 && p.every((n) => Number.isSafeInteger(n) && n >= 0)));
  if (r?.version !== 1 || !Array.isArray(r.files) || !r.files.every((f) => typeof f?.path === 'string' && typeof f.layer === 'string' && isRanges(f.ranges)))
    throw new SociError('ERR_USAGE', `${what} is not a prefetch record (version 1 with a files list)`);
  const out = new Map<string, PrefetchTarget>();
  for (const f of [...r.files].sort((a, b) => (a.atMs ?? 0) - (b.atMs ?? 0))) {
    const prev = out.get(f.path);
    if (!prev) out.set(f.path, { path: f.path, ...(f.ranges ? { ranges: f.ranges } : {}) });
    else if (prev.ranges) {
      // the same path read in two layers: one target, whole when either was whole
      if (f.ranges) prev.ranges = [...prev.ranges, ...f.ranges];
      else delete prev.ranges;
    }
  }
  return [...out.values()];
}
