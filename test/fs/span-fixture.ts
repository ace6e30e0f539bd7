/**
 * A real gzip layer with many 64 KiB spans, its tar as the oracle, and a file-backed BlobSource
 * that counts Range reads and can corrupt, fail, delay or stall them (test/fs span tests).
 */
import { readFile } from 'node:fs/promises';
import { fileBytes, makeLayer } from '../../harness/fixtures.js';
import { pseudoRandom } from '../../harness/images.js';
import { buildZtoc, spanTable, type Ztoc } from '../../src/ztoc/index.js';
import type { BlobSource } from '../../src/oci/blob-source.js';
import { type SpanCache, SpanManager, fileBlobSource } from '../../src/fs/index.js';
import { scratch } from './util.js';

export interface FakeSource extends BlobSource {
  calls: Array<[number, number]>;
  /** corrupt the next n reads (flip a byte in the middle) */
  corrupt: number;
  /** fail the next n reads */
  fail: number;
  /** never answer (ignores the abort signal on purpose) */
  stall: boolean;
  delayMs: number;
}

export async function fakeSource(path: string): Promise<FakeSource> {
  const inner = await fileBlobSource(path);
  const s: FakeSource = {
    size: inner.size,
    calls: [],
    corrupt: 0,
    fail: 0,
    stall: false,
    delayMs: 0,
    async read(start, end) {
      s.calls.push([start, end]);
      if (s.stall) return new Promise<Buffer>(() => undefined);
      if (s.delayMs) await new Promise((r) => setTimeout(r, s.delayMs));
      if (s.fail > 0) {
        s.fail--;
        throw new Error('injected network failure');
      }
      const b = await inner.read(start, end);
      if (s.corrupt > 0) {
        s.corrupt--;
        b[b.length >> 1]! ^= 0x55;
      }
      return b;
    },
  };
  return s;
}

export interface Fixture {
  dir: string;
  tar: Buffer;
  gz: string;
  ztoc: Ztoc;
  defer: (fn: () => unknown) => void;
}

export async function fixture(t: { after: (fn: () => unknown) => void }): Promise<Fixture> {
  const { dir, defer } = await scratch(t);
  const layer = await makeLayer(dir, {
    name: 'spans',
    entries: [
      // Poorly compressible data: deflate blocks stay small, so 64 KiB spans are many.
      { type: 'file', name: 'a.bin', data: pseudoRandom(1_500_000, 1, 0.1) },
      { type: 'file', name: 'small.txt', data: 'hello\n' },
      { type: 'file', name: 'b.bin', data: pseudoRandom(700_000, 2, 0.1) },
    ],
  });
  const ztoc = await buildZtoc(fileBytes(layer.gzPath), { compression: 'gzip', spanSize: 65536 });
  return { dir, tar: await readFile(layer.tarPath), gz: layer.gzPath, ztoc, defer };
}

export function manager(f: Fixture, blob: BlobSource, cache: SpanCache, extra: Partial<ConstructorParameters<typeof SpanManager>[0]> = {}): SpanManager {
  return new SpanManager({
    layerKey: 'sha256:test',
    table: spanTable(f.ztoc),
    digests: f.ztoc.compression.spanDigests,
    blob,
    cache,
    fetchTimeoutMs: 2000,
    readTimeoutMs: 5000,
    ...extra,
  });
}
