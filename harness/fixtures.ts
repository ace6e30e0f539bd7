/**
 * Layer fixtures shared by all test suites. Tars are written by independent tools (python3
 * `tarfile`, GNU tar) and compressed by gzip/pigz in several flavours, so the code under test never
 * judges its own input. Everything lands in the caller's private directory except makeBigLayer,
 * which caches by name (see fixtureCacheDir) so reruns are fast.
 *
 * Exports:
 *  - makeLayer(dir, spec)          → LayerFixture {name, tarPath, gzPath, variants}: one tar + gzip variants
 *  - makeStandardLayers(dir)       → LayerFixture[]: the standard set (STANDARD_LAYER_SPECS) for broad tests
 *  - gzipVariant(tarPath, v, out)  → compress with one flavour (GZIP_VARIANTS)
 *  - makeBigLayer(cacheDir, mb)    → {tarPath, gzPath, files}: ≥ mb MB uncompressed, cached by name
 *  - listTar(tarPath)              → TarListing[]: python tarfile's view (names, types, data offsets, sha256)
 *  - rawHeader(fields)/rawTar(...) → hand-made tar blocks for malformed/unsupported-entry tests
 *  - fileBytes(path)               → AsyncIterable<Buffer> of a file in 64 KiB chunks
 *  - fixtureCacheDir()             → $SOCI_FIXTURE_CACHE or <tmp>/soci-fixture-cache
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createReadStream, createWriteStream, existsSync } from 'node:fs';
import { link, mkdir, mkdtemp, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

const FIXTURES_PY = String.raw`# Test-fixture helper for harness/fixtures.ts (python3 stdlib only).
#   python3 fixtures.py write  < spec.json   writes a tar with the tarfile module
#   python3 fixtures.py list   <tar path>     prints a JSON listing (the independent reference reader)
# Bytes travel as base64; names are written byte-exact via surrogateescape.
import base64, hashlib, json, random, sys, tarfile

ENC = dict(encoding='utf-8', errors='surrogateescape')
TYPES = {'file': tarfile.REGTYPE, 'dir': tarfile.DIRTYPE, 'symlink': tarfile.SYMTYPE,
         'hardlink': tarfile.LNKTYPE, 'char': tarfile.CHRTYPE, 'block': tarfile.BLKTYPE,
         'fifo': tarfile.FIFOTYPE}
FORMATS = {'pax': tarfile.PAX_FORMAT, 'gnu': tarfile.GNU_FORMAT, 'ustar': tarfile.USTAR_FORMAT}
WORDS = (b'alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi '
         b'rho sigma tau upsilon phi chi psi omega lorem ipsum dolor sit amet layer span zran '
         b'container image registry snapshot fuse mount overlay digest sha256 gzip deflate').split()


def s(b64):
    return base64.b64decode(b64).decode('utf-8', 'surrogateescape')


def gen_data(size, seed):
    """Compressible but not trivial: word salad with random bytes sprinkled in."""
    r = random.Random(seed)
    base = b' '.join(r.choice(WORDS) for _ in range(12000))[:65536]
    out = bytearray()
    while len(out) < size:
        k = r.randrange(0, len(base) - 4096)
        out += base[k:k + r.randrange(512, 4096)]
        out += r.randbytes(r.randrange(0, 48))
    return bytes(out[:size])


class GenFile:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def read(self, n=-1):
        if n < 0:
            n = len(self.data) - self.pos
        b = self.data[self.pos:self.pos + n]
        self.pos += len(b)
        return b


def write(spec):
    with tarfile.open(spec['out'], 'w', format=FORMATS[spec.get('format', 'pax')], **ENC) as tf:
        for e in spec['entries']:
            ti = tarfile.TarInfo(s(e['name']))
            ti.type = TYPES[e['type']]
            ti.mode = e.get('mode', 0o755 if e['type'] == 'dir' else 0o644)
            ti.uid, ti.gid = e.get('uid', 0), e.get('gid', 0)
            ti.uname, ti.gname = e.get('uname', 'root'), e.get('gname', 'root')
            ti.mtime = e.get('mtime', 1700000000)
            if 'linkname' in e:
                ti.linkname = s(e['linkname'])
            ti.devmajor, ti.devminor = e.get('major', 0), e.get('minor', 0)
            if 'pax' in e:
                ti.pax_headers = {k: s(v) for k, v in e['pax'].items()}
            data = None
            if e['type'] == 'file':
                if 'data' in e:
                    data = base64.b64decode(e['data'])
                else:
                    data = gen_data(e.get('size', 0), e.get('seed', 1))
                ti.size = len(data)
            tf.addfile(ti, GenFile(data) if data is not None else None)


def listing(path):
    out = []
    with tarfile.open(path, 'r:', **ENC) as tf:
        for m in tf:
            item = {'name': base64.b64encode(m.name.encode('utf-8', 'surrogateescape')).decode(),
                    'type': m.type.decode('latin1'), 'size': m.size, 'offset': m.offset_data,
                    'linkname': base64.b64encode(m.linkname.encode('utf-8', 'surrogateescape')).decode()}
            if m.isreg():
                h = hashlib.sha256()
                f = tf.extractfile(m)
                while True:
                    b = f.read(1 << 20)
                    if not b:
                        break
                    h.update(b)
                item['sha256'] = h.hexdigest()
            out.append(item)
    json.dump(out, sys.stdout)


if __name__ == '__main__':
    if sys.argv[1] == 'write':
        write(json.load(sys.stdin))
    else:
        listing(sys.argv[2])
`;
import { sha256Hex } from '../src/oci/digest.js';
import { xorshift32 } from './random.js';

export type EntrySpec =
  | {
      type: 'file';
      name: string | Buffer;
      data?: Buffer | string;
      size?: number;
      seed?: number;
      mode?: number;
      uid?: number;
      gid?: number;
      uname?: string;
      gname?: string;
      mtime?: number;
      pax?: Record<string, Buffer | string>;
    }
  | { type: 'dir'; name: string | Buffer; mode?: number; mtime?: number; pax?: Record<string, Buffer | string> }
  | { type: 'symlink' | 'hardlink'; name: string | Buffer; linkname: string | Buffer; mtime?: number; pax?: Record<string, Buffer | string> }
  | { type: 'char' | 'block'; name: string | Buffer; major: number; minor: number; mode?: number }
  | { type: 'fifo'; name: string | Buffer; mode?: number };

export interface LayerSpec {
  name: string;
  /** python3 tarfile (default) or GNU tar over a staged directory (no devices/xattrs there) */
  writer?: 'python' | 'gnutar';
  /** tar dialect: python `pax`/`gnu`/`ustar`; GNU tar `gnu`/`pax` (posix)/`ustar` */
  format?: 'pax' | 'gnu' | 'ustar';
  entries: EntrySpec[];
}

/** gzip -n -6 | -1 | -9 | with FNAME+MTIME header | pigz | three concatenated gzip members */
export const GZIP_VARIANTS = ['gzip-6', 'gzip-1', 'gzip-9', 'gzip-fname', 'pigz', 'multi'] as const;
export type GzipVariant = (typeof GZIP_VARIANTS)[number];

export interface LayerFixture {
  name: string;
  tarPath: string;
  /** the gzip -n -6 variant */
  gzPath: string;
  variants: Record<GzipVariant, string>;
}

export interface TarListing {
  name: Buffer;
  /** raw type flag character as python sees it ('0', '5', ...) */
  type: string;
  size: number;
  /** data offset in the tar */
  offset: number;
  linkname: Buffer;
  /** hex sha256 of the content, regular files only */
  sha256?: string;
}

const b64 = (v: string | Buffer) => (typeof v === 'string' ? Buffer.from(v, 'utf8') : v).toString('base64');

async function pyScript(): Promise<string> {
  const p = join(fixtureCacheDir(), `fixtures-${sha256Hex(FIXTURES_PY).slice(0, 12)}.py`);
  if (!existsSync(p)) {
    await mkdir(dirname(p), { recursive: true });
    const tmp = `${p}.${process.pid}.tmp`;
    await writeFile(tmp, FIXTURES_PY);
    await rename(tmp, p);
  }
  return p;
}

async function writeWithPython(out: string, spec: LayerSpec): Promise<void> {
  const entries = spec.entries.map((e) => {
    const o: Record<string, unknown> = { ...e, name: b64(e.name) };
    if ('linkname' in e) o.linkname = b64(e.linkname);
    if ('data' in e && e.data !== undefined) o.data = b64(e.data);
    if ('pax' in e && e.pax) o.pax = Object.fromEntries(Object.entries(e.pax).map(([k, v]) => [k, b64(v)]));
    return o;
  });
  const input = JSON.stringify({ out, format: spec.format ?? 'pax', entries });
  const r = spawnSync('python3', [await pyScript(), 'write'], { input, maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`python tarfile failed: ${r.stderr.toString()}`);
}

async function writeWithGnuTar(dir: string, out: string, spec: LayerSpec): Promise<void> {
  const stage = await mkdtemp(join(dir, 'stage-'));
  const names: string[] = [];
  for (const e of spec.entries) {
    const name = e.name.toString();
    const p = join(stage, name);
    await mkdir(dirname(p), { recursive: true });
    if (e.type === 'file') {
      const data = e.data !== undefined ? Buffer.from(e.data) : genData(e.size ?? 0, e.seed ?? 1);
      await writeFile(p, data, { mode: e.mode ?? 0o644 });
    } else if (e.type === 'dir') await mkdir(p, { recursive: true, mode: e.mode ?? 0o755 });
    else if (e.type === 'symlink') await symlink(e.linkname.toString(), p);
    else if (e.type === 'hardlink') await link(join(stage, e.linkname.toString()), p);
    else if (e.type === 'fifo') execFileSync('mkfifo', [p]);
    else throw new Error(`gnutar fixtures cannot hold ${e.type} entries (needs root); use the python writer`);
    names.push(name);
  }
  const format = spec.format === 'pax' ? 'posix' : (spec.format ?? 'gnu');
  // Entries in spec order (no recursion) so hardlink targets come first; fixed owner and mtime.
  execFileSync('tar', [
    '--format',
    format,
    '-C',
    stage,
    '--no-recursion',
    '--numeric-owner',
    '--owner=0',
    '--group=0',
    '--mtime=@1700000000',
    '-cf',
    out,
    ...names,
  ]);
  await rm(stage, { recursive: true, force: true });
}

/** Deterministic compressible data (same family as the python generator, not the same bytes). */
export function genData(size: number, seed: number): Buffer {
  const rnd = xorshift32((seed * 2654435761) >>> 0);
  const words = 'alpha beta gamma delta layer span zran container image registry snapshot fuse mount overlay digest gzip deflate'.split(' ');
  const base = Buffer.from(Array.from({ length: 12000 }, () => words[rnd() % words.length]).join(' ')).subarray(0, 65536);
  const out = Buffer.allocUnsafe(size);
  let o = 0;
  while (o < size) {
    const k = rnd() % (base.length - 4096);
    o += base.copy(out, o, k, k + 512 + (rnd() % 3584));
    const noise = rnd() % 48;
    for (let i = 0; i < noise && o < size; i++) out[o++] = rnd() & 0xff;
  }
  return out;
}

export function gzipVariant(tarPath: string, variant: GzipVariant, out: string): string {
  const sh = (cmd: string, args: string[]) => execFileSync('sh', ['-c', `${cmd} > "$OUT"`, 'sh', ...args], { env: { ...process.env, OUT: out } });
  switch (variant) {
    case 'gzip-6':
      sh('gzip -n -6 -c "$1"', [tarPath]);
      break;
    case 'gzip-1':
      sh('gzip -n -1 -c "$1"', [tarPath]);
      break;
    case 'gzip-9':
      sh('gzip -n -9 -c "$1"', [tarPath]);
      break;
    case 'gzip-fname':
      sh('gzip -6 -c "$1"', [tarPath]);
      break; // header carries FNAME and MTIME
    case 'pigz':
      sh('pigz -n -6 -p 2 -c "$1"', [tarPath]);
      break;
    case 'multi': {
      // three members split at odd, non-block-aligned byte positions
      const size = Number(execFileSync('stat', ['-c', '%s', tarPath]).toString().trim());
      const a = Math.floor(size / 3) + 7;
      const b = Math.floor((2 * size) / 3) + 301;
      sh('{ head -c "$2" "$1" | gzip -n -6; tail -c +"$(($2+1))" "$1" | head -c "$(($3-$2))" | gzip -n -1; tail -c +"$(($3+1))" "$1" | gzip -n -9; }', [
        tarPath,
        String(a),
        String(b),
      ]);
      break;
    }
  }
  return out;
}

export async function makeLayer(dir: string, spec: LayerSpec): Promise<LayerFixture> {
  const tarPath = join(dir, `${spec.name}.tar`);
  if (spec.writer === 'gnutar') await writeWithGnuTar(dir, tarPath, spec);
  else await writeWithPython(tarPath, spec);
  const variants = {} as Record<GzipVariant, string>;
  for (const v of GZIP_VARIANTS) variants[v] = gzipVariant(tarPath, v, join(dir, `${spec.name}.${v}.tar.gz`));
  return { name: spec.name, tarPath, gzPath: variants['gzip-6'], variants };
}

const NON_UTF8 = Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x2d, 0xff, 0x2e, 0x74, 0x78, 0x74]); // "caf\xe9-\xff.txt"
const CAPABILITY = Buffer.from('0100000200200000000000000000000000000000', 'hex'); // cap_net_bind_service+ep
const long = (n: number, c = 'd') => Array.from({ length: Math.ceil(n / 10) }, (_, i) => `${c}${String(i).padStart(8, '0')}`).join('/');

/** The standard fixture set: together they cover every feature the tar walker has to handle. */
export const STANDARD_LAYER_SPECS: LayerSpec[] = [
  {
    name: 'pax-features',
    format: 'pax',
    entries: [
      { type: 'dir', name: './' },
      { type: 'dir', name: './usr/' },
      { type: 'dir', name: './usr/bin/' },
      {
        type: 'file',
        name: './usr/bin/ping',
        size: 70_000,
        seed: 2,
        mode: 0o4755,
        pax: { 'SCHILY.xattr.security.capability': CAPABILITY, 'SCHILY.xattr.user.note': 'hello', 'LIBARCHIVE.xattr.user.other': 'aGk=', comment: '' },
      },
      { type: 'file', name: './empty', data: '' },
      { type: 'file', name: './one', data: 'x' },
      { type: 'file', name: './b511', size: 511, seed: 3 },
      { type: 'file', name: './b512', size: 512, seed: 4 },
      { type: 'file', name: './b513', size: 513, seed: 5 },
      { type: 'file', name: Buffer.concat([Buffer.from('./'), NON_UTF8]), size: 1000, seed: 6 },
      { type: 'file', name: `./${long(300)}/long-file.bin`, size: 3000, seed: 7 },
      { type: 'symlink', name: './long-link', linkname: `/${long(200, 't')}/target` },
      { type: 'symlink', name: './usr/bin/sh', linkname: 'bash' },
      { type: 'file', name: './big1', size: 3_000_000, seed: 8, uid: 3_000_000, gid: 4_000_000, uname: 'someone', gname: 'group' },
      { type: 'hardlink', name: './usr/bin/ping6', linkname: './usr/bin/ping' },
      { type: 'char', name: './dev-null', major: 1, minor: 3, mode: 0o666 },
      { type: 'block', name: './dev-sda', major: 8, minor: 0, mode: 0o660 },
      { type: 'fifo', name: './fifo' },
      { type: 'file', name: './frac-mtime', data: 'time', mtime: 1700000000.25 },
      { type: 'file', name: './neg-mtime', data: 'old', mtime: -1.5 },
      { type: 'file', name: './.wh.removed', data: '' },
      { type: 'dir', name: './opaque/' },
      { type: 'file', name: './opaque/.wh..wh..opq', data: '' },
      { type: 'file', name: './big2', size: 1_500_000, seed: 9 },
    ],
  },
  {
    name: 'gnu-features',
    format: 'gnu',
    entries: [
      { type: 'dir', name: 'etc/' },
      { type: 'file', name: 'etc/hosts', data: '127.0.0.1 localhost\n' },
      { type: 'file', name: `${long(250, 'g')}/gnu-long-name.txt`, size: 20_000, seed: 11 },
      { type: 'symlink', name: 'gnu-long-link', linkname: `${long(150, 'k')}/x` },
      { type: 'file', name: 'base256-uid', size: 2_000, seed: 12, uid: 0o77777777, gid: 0o100000000 },
      { type: 'hardlink', name: 'hosts-link', linkname: 'etc/hosts' },
      { type: 'file', name: 'etc/.wh.passwd', data: '' },
      { type: 'file', name: 'data.bin', size: 2_500_000, seed: 13 },
      { type: 'char', name: 'tty', major: 5, minor: 0 },
    ],
  },
  {
    name: 'ustar-prefix',
    format: 'ustar',
    entries: [
      { type: 'dir', name: `${'p'.repeat(90)}/${'q'.repeat(60)}/` },
      { type: 'file', name: `${'p'.repeat(90)}/${'q'.repeat(60)}/${'n'.repeat(90)}`, size: 600_000, seed: 21 },
      { type: 'file', name: 'plain.txt', data: 'plain\n' },
    ],
  },
  {
    name: 'gnutar-tree',
    writer: 'gnutar',
    format: 'pax',
    entries: [
      { type: 'dir', name: 'app' },
      { type: 'file', name: 'app/main.js', size: 400_000, seed: 31 },
      { type: 'file', name: `app/${'x'.repeat(120)}.txt`, size: 5_000, seed: 32 },
      { type: 'hardlink', name: 'app/main-link.js', linkname: 'app/main.js' },
      { type: 'symlink', name: 'app/current', linkname: 'main.js' },
      { type: 'fifo', name: 'app/pipe' },
      { type: 'file', name: 'app/.wh..wh..opq', data: '' },
      { type: 'file', name: 'app/empty', data: '' },
    ],
  },
  {
    name: 'gnutar-gnu',
    writer: 'gnutar',
    format: 'gnu',
    entries: [
      { type: 'dir', name: 'srv' },
      { type: 'file', name: `srv/${'l'.repeat(150)}`, size: 123_456, seed: 41 },
      { type: 'symlink', name: 'srv/lnk', linkname: `${'m'.repeat(130)}` },
      { type: 'file', name: 'srv/tail', size: 1_200_000, seed: 42 },
    ],
  },
];

export async function makeStandardLayers(dir: string): Promise<LayerFixture[]> {
  const out: LayerFixture[] = [];
  for (const spec of STANDARD_LAYER_SPECS) out.push(await makeLayer(dir, spec));
  return out;
}

/** python tarfile's listing of a tar: an independent reference for names, offsets and content. */
export async function listTar(tarPath: string): Promise<TarListing[]> {
  const r = spawnSync('python3', [await pyScript(), 'list', tarPath], { maxBuffer: 1 << 28 });
  if (r.status !== 0) throw new Error(`python tarfile list failed: ${r.stderr.toString()}`);
  const raw = JSON.parse(r.stdout.toString()) as Array<Omit<TarListing, 'name' | 'linkname'> & { name: string; linkname: string }>;
  return raw.map((e) => ({ ...e, name: Buffer.from(e.name, 'base64'), linkname: Buffer.from(e.linkname, 'base64') }));
}

export function fixtureCacheDir(): string {
  return process.env.SOCI_FIXTURE_CACHE ?? join(tmpdir(), 'soci-fixture-cache');
}

export async function* fileBytes(path: string, chunkSize = 65536): AsyncIterable<Buffer> {
  for await (const c of createReadStream(path, { highWaterMark: chunkSize })) yield c as Buffer;
}

/** Fields of a hand-made tar header block (all optional; a valid ustar regular file by default). */
export interface RawHeaderFields {
  name?: string | Buffer;
  mode?: string;
  uid?: string | Buffer;
  gid?: string;
  /** octal text, or an exact 12-byte field (e.g. base-256) */
  size?: string | Buffer;
  mtime?: string | Buffer;
  typeflag?: string;
  linkname?: string;
  magic?: 'ustar' | 'gnu' | 'v7';
  uname?: string;
  gname?: string;
  prefix?: string;
  /** override the checksum text (to make it wrong) */
  chksum?: string;
}

export function rawHeader(f: RawHeaderFields): Buffer {
  const b = Buffer.alloc(512);
  const put = (off: number, len: number, v: string | Buffer) => {
    const bytes = typeof v === 'string' ? Buffer.from(v, 'latin1') : v;
    bytes.copy(b, off, 0, Math.min(len, bytes.length));
  };
  put(0, 100, f.name ?? 'file.txt');
  put(100, 8, f.mode ?? '0000644\0');
  put(108, 8, f.uid ?? '0000000\0');
  put(116, 8, f.gid ?? '0000000\0');
  put(124, 12, f.size ?? '00000000000\0');
  put(136, 12, f.mtime ?? '14533013000\0');
  b[156] = (f.typeflag ?? '0').charCodeAt(0) & 0xff;
  if (f.typeflag === '\0') b[156] = 0;
  put(157, 100, f.linkname ?? '');
  const magic = f.magic ?? 'ustar';
  if (magic === 'ustar') put(257, 8, 'ustar\x0000');
  if (magic === 'gnu') put(257, 8, 'ustar  \0');
  if (magic !== 'v7') {
    put(265, 32, f.uname ?? 'root');
    put(297, 32, f.gname ?? 'root');
  }
  if (f.prefix) put(345, 155, f.prefix);
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (const c of b) sum += c;
  put(148, 8, f.chksum ?? sum.toString(8).padStart(6, '0') + '\0 ');
  return b;
}

/** A tar from hand-made entries: header + data (padded) each, then two zero blocks. */
export function rawTar(entries: Array<{ header: RawHeaderFields; data?: Buffer | string }>, endBlocks = 2): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const data = e.data === undefined ? Buffer.alloc(0) : Buffer.from(e.data);
    parts.push(rawHeader({ size: data.length.toString(8).padStart(11, '0') + '\0', ...e.header }));
    parts.push(data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  parts.push(Buffer.alloc(512 * endBlocks));
  return Buffer.concat(parts);
}

/** A PAX extended-header payload from records (lengths computed like every writer does). */
export function paxPayload(records: Array<[string, string | Buffer]>): Buffer {
  return Buffer.concat(
    records.map(([k, v]) => {
      const body = Buffer.concat([Buffer.from(` ${k}=`), Buffer.from(v), Buffer.from('\n')]);
      let n = body.length + 1;
      while (String(n).length + body.length !== n) n++;
      return Buffer.concat([Buffer.from(String(n)), body]);
    }),
  );
}

export interface BigLayer {
  tarPath: string;
  gzPath: string;
  /** regular files written: name and size, in tar order */
  files: Array<{ name: string; size: number }>;
}

/**
 * A layer of at least `mb` MB (10^6 B) uncompressed: files of 64 KiB–4 MiB (~150 for 300 MB) of
 * compressible, non-trivial data (gzip ratio about 1/3), gzip'd with pigz -6. The tar ends right
 * after its two zero blocks (no record padding). Cached in `cacheDir` under a name derived from
 * `mb`, written to a temp name and renamed, so concurrent suites never see a partial file.
 */
export async function makeBigLayer(cacheDir: string, mb: number): Promise<BigLayer> {
  const tarPath = join(cacheDir, `big-${mb}mb-v2.tar`);
  const gzPath = `${tarPath}.gz`;
  const files: Array<{ name: string; size: number }> = [];
  let total = 0;
  for (let i = 0; total < mb * 1e6; i++) {
    const size = 65536 + ((i * 2654435761) % (4 << 20));
    files.push({ name: `data/d${i % 7}/file-${String(i).padStart(4, '0')}.bin`, size });
    total += size + 1024;
  }
  if (existsSync(gzPath) && existsSync(tarPath)) return { tarPath, gzPath, files };
  await mkdir(cacheDir, { recursive: true });
  const tmpTar = `${tarPath}.${process.pid}.tmp`;
  const tmpGz = `${gzPath}.${process.pid}.tmp`;
  const out = createWriteStream(tmpTar);
  const write = (b: Buffer) => new Promise<void>((res, rej) => out.write(b, (e) => (e ? rej(e) : res())));
  // Each 4 KiB block: 3 KiB of word salad + 1 KiB of noise, both from 8 MiB pools at block-specific
  // offsets (too far apart for deflate's 32 KiB window), so the layer compresses to roughly a third.
  const pool = genData(8 << 20, 77);
  const noise = Buffer.allocUnsafe(8 << 20);
  const next = xorshift32(0x9e3779b9);
  for (let i = 0; i < noise.length; i += 4) noise.writeUInt32LE(next(), i);
  for (const d of [0, 1, 2, 3, 4, 5, 6]) {
    await write(rawHeader({ name: `data/d${d}/`, typeflag: '5', mode: '0000755\0' }));
  }
  for (const [i, f] of files.entries()) {
    await write(rawHeader({ name: f.name, size: f.size.toString(8).padStart(11, '0') + '\0' }));
    const data = Buffer.allocUnsafe(f.size);
    for (let o = 0; o < f.size; o += 4096) {
      const n = Math.min(4096, f.size - o);
      const src = ((i * 7919 + o * 13) % (pool.length - 4096)) >>> 0;
      pool.copy(data, o, src, src + Math.min(n, 3072));
      if (n > 3072) {
        const nsrc = ((i * 104729 + o * 7) % (noise.length - 1024)) >>> 0;
        noise.copy(data, o + 3072, nsrc, nsrc + (n - 3072));
      }
    }
    await write(data);
    await write(Buffer.alloc((512 - (f.size % 512)) % 512));
  }
  await write(Buffer.alloc(1024));
  await new Promise<void>((res, rej) => out.end((e?: Error | null) => (e ? rej(e) : res())));
  execFileSync('sh', ['-c', 'pigz -n -6 -p 2 -c "$1" > "$2"', 'sh', tmpTar, tmpGz]);
  await rename(tmpTar, tarPath);
  await rename(tmpGz, gzPath);
  return { tarPath, gzPath, files };
}
