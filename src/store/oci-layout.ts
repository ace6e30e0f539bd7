/**
 * OCI image layouts as inputs and outputs of `--standalone` conversion: a layout directory, or an
 * oci-archive (a tar of one). Archives are unpacked into a private temp dir (never a path outside it).
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { copyFile, link, mkdir, mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve, sep } from 'node:path';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { SociError } from '../errors.js';
import { digestHex, isDigest, digestOf } from '../oci/digest.js';
import { MT } from '../oci/media-types.js';
import { decodeIndex, encodeIndex, type Descriptor, type ImageIndex } from '../oci/types.js';

export const REF_NAME = 'org.opencontainers.image.ref.name';

/** Read access to an image's blobs, wherever they live (layout, registry, store). */
export interface BlobReader {
  readBlob(digest: string): Promise<Buffer>;
  openBlob(digest: string): AsyncIterable<Buffer>;
  hasBlob(digest: string): Promise<boolean>;
}

export class OciLayout implements BlobReader {
  private constructor(
    readonly dir: string,
    private readonly cleanup?: () => Promise<void>,
  ) {}

  /** Opens a layout dir, or unpacks an oci-archive tar into a temp dir. */
  static async open(path: string): Promise<OciLayout> {
    let st;
    try {
      st = await stat(path);
    } catch {
      throw new SociError('ERR_NOT_FOUND', `input ${path} does not exist`);
    }
    if (st.isDirectory()) {
      const l = new OciLayout(resolve(path));
      await l.validate();
      return l;
    }
    const dir = await mkdtemp(join(tmpdir(), 'soci-layout-'));
    try {
      await unpackArchive(path, dir);
      const l = new OciLayout(dir, () => rm(dir, { recursive: true, force: true }));
      await l.validate();
      return l;
    } catch (e) {
      await rm(dir, { recursive: true, force: true });
      throw e;
    }
  }

  async close(): Promise<void> {
    await this.cleanup?.();
  }

  private async validate(): Promise<void> {
    try {
      await stat(join(this.dir, 'index.json'));
    } catch {
      throw new SociError('ERR_INVALID_MANIFEST', `${this.dir} is not an OCI image layout (no index.json)`);
    }
  }

  async index(): Promise<ImageIndex> {
    return decodeIndex(await readFile(join(this.dir, 'index.json')), 'index.json');
  }

  /** The image to use: by ref name (tag) when given, else the only entry of index.json. */
  async resolve(tag?: string): Promise<Descriptor> {
    const idx = await this.index();
    if (tag) {
      const d = idx.manifests.find((m) => m.annotations?.[REF_NAME] === tag);
      if (!d) throw new SociError('ERR_NOT_FOUND', `no image tagged "${tag}" in ${this.dir}`);
      return d;
    }
    if (idx.manifests.length !== 1) {
      throw new SociError('ERR_USAGE', `${this.dir} holds ${idx.manifests.length} images; name one as PATH:TAG`);
    }
    return idx.manifests[0]!;
  }

  blobPath(digest: string): string {
    return join(this.dir, 'blobs', 'sha256', digestHex(digest));
  }

  async hasBlob(digest: string): Promise<boolean> {
    return stat(this.blobPath(digest)).then(
      () => true,
      () => false,
    );
  }

  async readBlob(digest: string): Promise<Buffer> {
    let b: Buffer;
    try {
      b = await readFile(this.blobPath(digest));
    } catch {
      throw new SociError('ERR_NOT_FOUND', `blob ${digest} not found in ${this.dir}`);
    }
    if (digestOf(b) !== digest) throw new SociError('ERR_DIGEST_MISMATCH', `blob ${digest} in ${this.dir} is corrupt`);
    return b;
  }

  openBlob(digest: string): AsyncIterable<Buffer> {
    return createReadStream(this.blobPath(digest), { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>;
  }

  async listBlobs(): Promise<string[]> {
    const names = await readdir(join(this.dir, 'blobs', 'sha256')).catch(() => [] as string[]);
    return names.filter((n) => /^[a-f0-9]{64}$/.test(n)).map((n) => `sha256:${n}`);
  }
}

/**
 * Parses `oci:PATH[:TAG]`, `oci-archive:PATH[:TAG]` or a bare existing path[:TAG].
 * Returns null when the string does not name a local layout.
 */
export async function parseLayoutRef(s: string): Promise<{ path: string; tag?: string } | null> {
  let rest = s;
  let explicit = false;
  for (const p of ['oci:', 'oci-archive:', 'oci-dir:']) {
    if (rest.startsWith(p)) {
      rest = rest.slice(p.length);
      explicit = true;
    }
  }
  const exists = async (p: string) =>
    stat(p).then(
      () => true,
      () => false,
    );
  if (await exists(rest)) return { path: rest };
  const i = rest.lastIndexOf(':');
  if (i > 0 && (await exists(rest.slice(0, i)))) return { path: rest.slice(0, i), tag: rest.slice(i + 1) };
  if (explicit) throw new SociError('ERR_NOT_FOUND', `input ${rest} does not exist`);
  return null;
}

async function unpackArchive(file: string, dir: string): Promise<void> {
  const extract = tar.extract();
  const root = resolve(dir) + sep;
  extract.on('entry', (header, stream, next) => {
    const target = resolve(dir, header.name);
    const inside = target.startsWith(root);
    if (!inside || (header.type !== 'file' && header.type !== 'directory')) {
      // Only plain files/dirs inside the layout are meaningful; anything else is skipped, never followed.
      stream.resume();
      stream.on('end', next);
      return;
    }
    if (header.type === 'directory') {
      mkdir(target, { recursive: true }).then(() => {
        stream.resume();
        stream.on('end', next);
      }, next);
      return;
    }
    mkdir(dirname(target), { recursive: true })
      .then(() => pipeline(stream, createWriteStream(target)))
      .then(() => next(), next);
  });
  try {
    await pipeline(createReadStream(file), extract);
  } catch (e) {
    throw new SociError('ERR_INVALID_MANIFEST', `${file} is neither an OCI layout directory nor a readable oci-archive: ${(e as Error).message}`);
  }
}

/** Writes a layout dir: all blobs of `src` plus `extra`, and an index.json pointing at `root`. */
export async function writeLayoutDir(out: string, src: OciLayout, extra: Map<string, Buffer>, root: Descriptor): Promise<void> {
  await checkOutputDir(out);
  const tmp = `${out}.tmp-${process.pid}`;
  await rm(tmp, { recursive: true, force: true });
  await mkdir(join(tmp, 'blobs', 'sha256'), { recursive: true });
  for (const d of await src.listBlobs()) {
    const to = join(tmp, 'blobs', 'sha256', digestHex(d));
    await link(src.blobPath(d), to).catch(() => copyFile(src.blobPath(d), to));
  }
  for (const [d, bytes] of extra) await writeFile(join(tmp, 'blobs', 'sha256', digestHex(d)), bytes);
  await writeFile(join(tmp, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  await writeFile(join(tmp, 'index.json'), layoutIndex(root));
  await rm(out, { recursive: true, force: true });
  await rename(tmp, out);
}

/** Writes an oci-archive tar with the same content as writeLayoutDir. */
export async function writeLayoutArchive(out: string, src: OciLayout, extra: Map<string, Buffer>, root: Descriptor): Promise<void> {
  await checkOutputDir(out);
  const tmp = `${out}.tmp-${process.pid}`;
  const pack = tar.pack();
  const done = pipeline(pack, createWriteStream(tmp));
  // A failing output (disk full, EACCES) must end the adds below, not leave them waiting or the
  // pipeline's rejection unobserved.
  const broken = new Promise<never>((_, rej) => done.catch(rej));
  broken.catch(() => {});
  const step = (fn: (res: () => void, rej: (e: unknown) => void) => void) => Promise.race([new Promise<void>(fn), broken]);
  const add = (name: string, body: Buffer) =>
    step((res, rej) => pack.entry({ name, size: body.length, mode: 0o644, mtime: new Date(0) }, body, (e) => (e ? rej(e) : res())));
  try {
    await add('oci-layout', Buffer.from('{"imageLayoutVersion":"1.0.0"}'));
    await add('index.json', layoutIndex(root));
    const seen = new Set<string>();
    for (const [d, bytes] of extra) {
      seen.add(d);
      await add(`blobs/sha256/${digestHex(d)}`, bytes);
    }
    for (const d of await src.listBlobs()) {
      if (seen.has(d)) continue;
      const size = (await stat(src.blobPath(d))).size;
      await step((res, rej) => {
        const entry = pack.entry({ name: `blobs/sha256/${digestHex(d)}`, size, mode: 0o644, mtime: new Date(0) }, (e) => (e ? rej(e) : res()));
        pipeline(createReadStream(src.blobPath(d)), entry).catch(rej);
      });
    }
    pack.finalize();
    await done;
    await rename(tmp, out);
  } catch (e) {
    pack.destroy();
    await rm(tmp, { force: true });
    throw e;
  }
}

/** The output's directory must exist: we never create directories the user did not ask for. */
export async function checkOutputDir(out: string): Promise<void> {
  const dir = dirname(resolve(out));
  const st = await stat(dir).catch(() => null);
  if (!st?.isDirectory()) throw new SociError('ERR_NOT_FOUND', `cannot write ${out}: directory ${dir} does not exist`);
}

function layoutIndex(root: Descriptor): Buffer {
  if (!isDigest(root.digest)) throw new SociError('ERR_INTERNAL', 'bad root descriptor');
  return encodeIndex({ schemaVersion: 2, mediaType: MT.ociIndex, manifests: [{ mediaType: root.mediaType, digest: root.digest, size: root.size }] });
}
