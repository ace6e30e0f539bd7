/**
 * A seeded mutation fuzzer over the zTOC decoder and the TOC → read mapping, on both read paths:
 * `soci ztoc get-file`'s (readFileVerified) and the FUSE filesystem's (LayerFs over a SpanManager).
 * A real gzip layer and its real zTOC are mutated 2,000 times (bytes of the flatbuffer, and fields of
 * the decoded model: offsets, sizes, names, types, modes, owners, link targets, span digests,
 * checkpoint offsets); then every regular file is read by name. Each read must give the file's true
 * bytes or a SociError: zero crashes (any other exception), zero hangs, zero wrong contents.
 *
 * Checkpoint windows (the 32 KiB of history each span is inflated from) are not mutated: a window
 * can only be checked by inflating every span before it, so a zTOC's windows are trusted as far as
 * its digest in the index is. Cases whose byte mutations hit a window still must not crash or hang;
 * the reads among them that differ are counted apart (windowDiffs), not as wrong contents.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SociError } from '../../src/errors.js';
import { SpanCache, createLayerFs } from '../../src/fs/index.js';
import { buildZtoc, marshalZtoc, unmarshalZtoc, type Ztoc } from '../../src/ztoc/index.js';
import { decodeCheckpoints } from '../../src/compression/index.js';
import { readFileVerified } from '../../src/ztoc/read-file.js';
import type { BlobSource } from '../../src/oci/blob-source.js';
import { fileBytes, genData, makeLayer } from '../../harness/fixtures.js';
import { tempDir } from '../../harness/env.js';

const CASES = Number(process.env.SOCI_FUZZ_CASES ?? 2000);
const SEED = Number(process.env.SOCI_FUZZ_SEED ?? 20261202);
const CASE_TIMEOUT_MS = 10_000;

/** mulberry32: small, seeded, good enough to pick mutations. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Model = (z: Ztoc, r: () => number) => void;
const pick = <T>(xs: readonly T[], r: () => number): T => xs[Math.floor(r() * xs.length)]!;

/** The lies a zTOC can tell about where a file's bytes are, and structural nonsense. */
const MODEL_MUTATIONS: Array<[string, Model]> = [
  ['offset ± a block', (z, r) => void (pick(z.toc, r).uncompressedOffset += pick([-1024, -512, 512, 1024], r))],
  ['offset ± a byte', (z, r) => void (pick(z.toc, r).uncompressedOffset += pick([-1, 1, 7], r))],
  ['offset → its own header', (z, r) => void (pick(z.toc, r).uncompressedOffset -= 512)],
  ['offset → another entry', (z, r) => void (pick(z.toc, r).uncompressedOffset = pick(z.toc, r).uncompressedOffset)],
  [
    'size shrunk',
    (z, r) => {
      const e = pick(z.toc, r);
      e.uncompressedSize = Math.max(0, e.uncompressedSize - 1 - Math.floor(r() * 600));
    },
  ],
  ['size grown', (z, r) => void (pick(z.toc, r).uncompressedSize += 1 + Math.floor(r() * 70000))],
  [
    'names swapped',
    (z, r) => {
      const a = pick(z.toc, r);
      const b = pick(z.toc, r);
      [a.name, b.name] = [b.name, a.name];
    },
  ],
  ['type changed', (z, r) => void (pick(z.toc, r).type = pick(['reg', 'dir', 'symlink', 'hardlink', 'char', 'fifo'] as const, r))],
  ['mode changed', (z, r) => void (pick(z.toc, r).mode ^= 0o4777)],
  ['owner changed', (z, r) => void (pick(z.toc, r).uid += 1)],
  [
    'hardlink → a later entry',
    (z, r) => {
      const h = z.toc.findIndex((e) => e.type === 'hardlink');
      if (h >= 0)
        z.toc[h]!.linkname = Buffer.from(
          pick(
            z.toc.slice(h + 1).filter((e) => e.type === 'reg'),
            r,
          )?.name ?? z.toc[h]!.linkname,
        );
    },
  ],
  [
    'hardlink → itself',
    (z) => {
      const h = z.toc.find((e) => e.type === 'hardlink');
      if (h) h.linkname = Buffer.from(h.name);
    },
  ],
  [
    'reg → hardlink to another file',
    (z, r) => {
      const e = pick(
        z.toc.filter((x) => x.type === 'reg'),
        r,
      );
      e.type = 'hardlink';
      e.linkname = Buffer.from(pick(z.toc, r).name);
    },
  ],
  [
    'span digest flipped',
    (z, r) => {
      const d = z.compression.spanDigests;
      const i = Math.floor(r() * d.length);
      d[i] = d[(i + 1) % d.length]!;
    },
  ],
  ['span count changed', (z, r) => void (z.compression.maxSpanId += pick([-1, 1, 5], r))],
  ['archive size changed', (z, r) => void (z.uncompressedArchiveSize = Math.floor(z.uncompressedArchiveSize * r()))],
  [
    'checkpoint offset moved',
    (z, r) => {
      const cp = z.compression.checkpoints;
      if (cp.length < 12 + 17 * 2) return;
      const n = cp.readInt32LE(0);
      const rec = 1 + Math.floor(r() * Math.max(1, n - 1));
      const at = 12 + rec * (8 + 8 + 1 + 32768) + (r() < 0.5 ? 0 : 8);
      if (at + 8 <= cp.length) cp.writeBigInt64LE(cp.readBigInt64LE(at) + BigInt(pick([-1, 1, 512, -4096], r)), at);
    },
  ],
  ['entry dropped', (z, r) => void z.toc.splice(Math.floor(r() * z.toc.length), 1)],
  ['entry duplicated', (z, r) => void z.toc.push({ ...pick(z.toc, r) })],
];

function cloneZtoc(z: Ztoc): Ztoc {
  return unmarshalZtoc(marshalZtoc(z));
}

function windowsOf(z: Ztoc): Buffer[] {
  try {
    return decodeCheckpoints(z.compression.checkpoints).checkpoints.map((c) => Buffer.from(c.window));
  } catch {
    return [];
  }
}

async function withTimeout<T>(p: Promise<T>): Promise<T | 'hang'> {
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<'hang'>((r) => (timer = setTimeout(() => r('hang'), CASE_TIMEOUT_MS)));
  try {
    return await Promise.race([p, hang]);
  } finally {
    clearTimeout(timer);
  }
}

test(`zTOC mutation fuzzer: ${CASES} seeded cases, both read paths`, { timeout: 1_800_000 }, async (t) => {
  const dir = await tempDir(t);
  const files: Record<string, Buffer> = {
    'etc/os-release': Buffer.from('NAME=fuzz\nID=fuzz\n'),
    'usr/bin/tool': genData(150_000, 1),
    'usr/lib/big.so': genData(300_000, 2),
    'usr/share/doc/a.txt': genData(3000, 3),
    'usr/share/doc/b.txt': genData(5000, 4),
    [`opt/${'long-name-'.repeat(12)}file`]: genData(9000, 5),
    'var/empty-ish': genData(1, 6),
  };
  const layer = await makeLayer(dir, {
    name: 'fuzz',
    entries: [
      { type: 'dir', name: 'etc' },
      ...Object.entries(files).map(([name, data]) => ({ type: 'file' as const, name, data, mode: 0o755 })),
      { type: 'hardlink', name: 'usr/bin/tool-link', linkname: 'usr/bin/tool' },
      { type: 'symlink', name: 'usr/bin/sym', linkname: 'tool' },
    ],
  });
  files['usr/bin/tool-link'] = files['usr/bin/tool']!;
  const gz = readFileSync(layer.gzPath);
  const original = await buildZtoc(fileBytes(layer.gzPath), { compression: 'gzip', spanSize: 65536 });
  const bytes = marshalZtoc(original);
  const originalWindows = windowsOf(original);
  const blob: BlobSource = { size: gz.length, read: async (s, e) => gz.subarray(s, e) };
  const read = async (s: number, e: number) => gz.subarray(s, e);
  const cache = new SpanCache({ dir: join(dir, 'cache'), maxBytes: 64 << 20 });
  const layerDesc = { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: `sha256:${'cd'.repeat(32)}`, size: gz.length };

  const r = rng(SEED);
  const tally = { cases: 0, decoded: 0, reads: 0, served: 0, refused: 0, crashes: 0, hangs: 0, wrong: 0, windowCases: 0, windowDiffs: 0 };
  const failures: string[] = [];
  const note = (kind: 'crash' | 'hang' | 'wrong', what: string) => {
    tally[kind === 'crash' ? 'crashes' : kind === 'hang' ? 'hangs' : 'wrong']++;
    if (failures.length < 20) failures.push(`${kind}: ${what}`);
  };

  for (let i = 0; i < CASES; i++) {
    tally.cases++;
    let z: Ztoc;
    let label: string;
    let windowsTouched = false;
    try {
      if (r() < 0.4) {
        const m = Buffer.from(bytes);
        const n = 1 + Math.floor(r() * 4);
        for (let k = 0; k < n; k++) {
          const kind = r();
          const at = Math.floor(r() * m.length);
          if (kind < 0.6) m[at] = m[at]! ^ (1 << Math.floor(r() * 8));
          else if (kind < 0.9) m[at] = Math.floor(r() * 256);
          else m.writeUInt32LE(Math.floor(r() * 0xffffffff), Math.min(at, m.length - 4));
        }
        const cut = r() < 0.05 ? m.subarray(0, Math.floor(r() * m.length)) : m;
        label = `bytes #${i}`;
        z = unmarshalZtoc(cut);
        const w = windowsOf(z);
        windowsTouched = w.length === originalWindows.length && w.some((x, j) => !x.equals(originalWindows[j]!));
      } else {
        z = cloneZtoc(original);
        const [name, mutate] = pick(MODEL_MUTATIONS, r);
        label = `${name} #${i}`;
        mutate(z, r);
        z = unmarshalZtoc(marshalZtoc(z));
      }
    } catch (e) {
      if (!(e instanceof SociError)) note('crash', `decode ${String(e)}`);
      continue;
    }
    tally.decoded++;
    if (windowsTouched) tally.windowCases++;
    const wrong = (what: string) => (windowsTouched ? tally.windowDiffs++ : note('wrong', what));
    // ztoc get-file's path
    for (const [name, want] of Object.entries(files)) {
      tally.reads++;
      const got = await withTimeout(
        (async () => {
          return readFileVerified(z, name, read, layerDesc.digest);
        })().catch((e: unknown) => e),
      );
      if (got === 'hang') note('hang', `${label} get-file ${name}`);
      else if (Buffer.isBuffer(got)) {
        if (got.equals(want)) tally.served++;
        else wrong(`${label} get-file ${name}: ${got.length} bytes`);
      } else if (got instanceof SociError) tally.refused++;
      else note('crash', `${label} get-file ${name}: ${String(got)}`);
    }
    // the FUSE filesystem's path (every 4th case: it also walks the tree by name)
    if (i % 4 !== 0) continue;
    let fs;
    try {
      fs = createLayerFs({ ztoc: z, layer: layerDesc, blob, cache, options: { readTimeoutMs: 5000, retries: 0, readaheadMaxSpans: -1 } });
    } catch (e) {
      if (!(e instanceof SociError)) note('crash', `${label} createLayerFs: ${String(e)}`);
      continue;
    }
    try {
      for (const [name, want] of Object.entries(files)) {
        tally.reads++;
        const got = await withTimeout(
          (async () => {
            let ino = 1;
            for (const part of name.split('/')) {
              const ent = await fs.lookup(ino, part);
              if (!ent) throw new SociError('ERR_NOT_FOUND', 'no entry');
              ino = ent.ino;
            }
            const attr = await fs.getattr(ino);
            await fs.open(ino); // as the kernel does before a read
            return fs.read(ino, 0, Math.max(attr.size ?? 0, 1) + 4096);
          })().catch((e: unknown) => e),
        );
        if (got === 'hang') note('hang', `${label} fuse ${name}`);
        else if (Buffer.isBuffer(got)) {
          if (got.equals(want)) tally.served++;
          else wrong(`${label} fuse ${name}: ${got.length} bytes`);
        } else if (got instanceof SociError || (got as { errno?: number })?.errno !== undefined) tally.refused++;
        else note('crash', `${label} fuse ${name}: ${String(got)}`);
      }
    } finally {
      fs.spans.close();
    }
  }
  t.diagnostic(`fuzz ${JSON.stringify(tally)}`);
  assert.deepEqual({ crashes: tally.crashes, hangs: tally.hangs, wrong: tally.wrong }, { crashes: 0, hangs: 0, wrong: 0 }, failures.join('\n'));
  assert.ok(tally.served > CASES, 'most reads of untouched files still serve their bytes');
  assert.ok(tally.refused > CASES / 10, 'the lies are refused');
});
