/**
 * Layers: a directory → deterministic tar (GNU tar) → gzip (pigz when installed), streamed to a
 * file while hashing both sides (digest = sha256 of the .tar.gz, diff_id = sha256 of the .tar),
 * and a content-keyed cache under `${workDir}/layers/<id>-<key>` shared by all images (so the base
 * layer, built once, is byte-identical in every image).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createWriteStream, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileBytes, removeTree } from './sh.js';

export interface LayerMeta {
  id: string;
  key: string;
  /** sha256:… of the compressed blob, and its size */
  digest: string;
  size: number;
  /** sha256:… of the tar, and its size */
  diffId: string;
  uncompressedSize: number;
  /** regular-file bytes and count in the layer */
  fileBytes: number;
  files: number;
  /** name=version of the Debian packages unpacked into it */
  packages: string[];
  /** anything the fill step wants to remember (e.g. the generated file plan) */
  notes?: Record<string, unknown>;
  /** absolute path of the .tar.gz */
  blob: string;
}

export interface FillResult {
  packages?: string[];
  notes?: Record<string, unknown>;
}

const gzipTool = spawnSync('sh', ['-c', 'command -v pigz'], { encoding: 'utf8' }).stdout.trim() ? 'pigz' : 'gzip';
export const COMPRESSOR = `${gzipTool} -n -6`;

const TAR_ARGS = [
  '--sort=name',
  '--format=posix',
  // pax headers must not carry a PID in their name nor atime/ctime: both would break determinism
  '--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime',
  '--mtime=@0',
  '--owner=0',
  '--group=0',
  '--numeric-owner',
];

function exited(p: ChildProcess, what: string): Promise<void> {
  const err: Buffer[] = [];
  p.stderr?.on('data', (b: Buffer) => err.push(b));
  return new Promise((res, rej) => {
    p.on('error', rej);
    p.on('close', (code) => (code === 0 ? res() : rej(new Error(`${what} exited ${code}: ${Buffer.concat(err).toString().slice(-1000)}`))));
  });
}

function tap(onChunk: (b: Buffer) => void): Transform {
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      onChunk(chunk);
      cb(null, chunk);
    },
  });
}

/** Packs `dir` (entries without a leading "./") into `out` (.tar.gz). */
export async function packDir(dir: string, out: string): Promise<Pick<LayerMeta, 'digest' | 'size' | 'diffId' | 'uncompressedSize'>> {
  const top = readdirSync(dir).sort();
  if (top.length === 0) throw new Error(`empty layer dir ${dir}`);
  const tar = spawn('tar', [...TAR_ARGS, '-C', dir, '-cf', '-', '--', ...top], { env: { ...process.env, LC_ALL: 'C' }, stdio: ['ignore', 'pipe', 'pipe'] });
  const gz = spawn(gzipTool, ['-n', '-6', '-c'], { stdio: ['pipe', 'pipe', 'pipe'] });
  const diff = createHash('sha256');
  const comp = createHash('sha256');
  let usize = 0;
  let csize = 0;
  await Promise.all([
    exited(tar, 'tar'),
    exited(gz, gzipTool),
    pipeline(
      tar.stdout!,
      tap((b) => {
        diff.update(b);
        usize += b.length;
      }),
      gz.stdin!,
    ),
    pipeline(
      gz.stdout!,
      tap((b) => {
        comp.update(b);
        csize += b.length;
      }),
      createWriteStream(out),
    ),
  ]);
  return { digest: `sha256:${comp.digest('hex')}`, size: csize, diffId: `sha256:${diff.digest('hex')}`, uncompressedSize: usize };
}

/**
 * Returns the cached layer `id` with content key `key`, or builds it: `fill(dir)` populates an
 * empty dir, which is then packed. Built in a temp dir and renamed when complete, so an
 * interrupted build is never reused.
 */
export function cachedLayer(workDir: string, id: string, key: string, fill: (dir: string) => Promise<FillResult>): Promise<LayerMeta> {
  const final = join(workDir, 'layers', `${id}-${key.slice(0, 16)}`);
  // concurrent builds in this process (e.g. Promise.all over images) share one build per layer
  let p = inflight.get(final);
  if (!p) {
    p = buildLayer(final, id, key, fill).finally(() => inflight.delete(final));
    inflight.set(final, p);
  }
  return p;
}

const inflight = new Map<string, Promise<LayerMeta>>();

async function buildLayer(final: string, id: string, key: string, fill: (dir: string) => Promise<FillResult>): Promise<LayerMeta> {
  if (existsSync(join(final, 'meta.json'))) return { ...JSON.parse(readFileSync(join(final, 'meta.json'), 'utf8')), blob: join(final, 'layer.tar.gz') };
  const tmp = `${final}.tmp-${process.pid}`;
  await removeTree(tmp);
  mkdirSync(join(tmp, 'root'), { recursive: true });
  try {
    const t0 = Date.now();
    const filled = await fill(join(tmp, 'root'));
    const fb = await fileBytes(join(tmp, 'root'));
    const packed = await packDir(join(tmp, 'root'), join(tmp, 'layer.tar.gz'));
    await removeTree(join(tmp, 'root'));
    const meta = {
      id,
      key,
      ...packed,
      fileBytes: fb.bytes,
      files: fb.files,
      packages: filled.packages ?? [],
      ...(filled.notes ? { notes: filled.notes } : {}),
    };
    writeFileSync(join(tmp, 'meta.json'), JSON.stringify(meta, null, 1) + '\n');
    // Another builder may have finished the same layer meanwhile: same key, same bytes, keep theirs.
    if (existsSync(join(final, 'meta.json'))) await removeTree(tmp);
    else {
      await removeTree(final);
      renameSync(tmp, final);
    }
    console.error(
      `  layer ${id}: ${(packed.uncompressedSize / 1e6).toFixed(1)} MB tar → ${(packed.size / 1e6).toFixed(1)} MB gz, ${fb.files} files (${((Date.now() - t0) / 1000).toFixed(1)} s)`,
    );
    return { ...meta, blob: join(final, 'layer.tar.gz') };
  } catch (e) {
    await removeTree(tmp);
    throw e;
  }
}
