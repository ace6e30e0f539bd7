/**
 * The five images of the time-to-ready benchmark (full vs lazy pull), built offline and
 * deterministically from Debian 12 packages and synthetic data, as OCI image layouts.
 *
 *   const img = await buildBenchImage('echo', '.bench-work');   // cached under .bench-work/images/echo
 *   img.layout            → OCI layout dir (one manifest, tag 'latest')
 *   img.workloads[0].command(port), .ready
 *
 * Recipes: bench/images/recipes.ts. CLI: node --import tsx bench/images/build.ts [name...]
 * Verification (chroot, root): node --import tsx bench/images/verify.ts [name...]
 */
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { extractDebs, fetchDebs, pkgId, resolveClosure } from './apt.js';
import { cachedLayer, COMPRESSOR, type LayerMeta } from './layer.js';
import { RECIPE, RECIPES, type Ctx } from './recipes.js';
import { sha256Hex } from '../../src/oci/digest.js';
import { removeTree, sweepStale } from './sh.js';
import { writeLayout } from '../../harness/layout.js';

export type ImageName = 'echo' | 'python' | 'node' | 'hostile' | 'fat-sparse';
export interface Workload {
  /** short id, unique within the image, e.g. 'http', 'hello', '1pct-clustered' */
  name: string;
  /** one line: what it does */
  description: string;
  /** the container's argv (absolute paths inside the image); `port` is a free TCP port on 127.0.0.1 for HTTP workloads */
  command(port: number): string[];
  /** ready = first HTTP 200 on http://127.0.0.1:<port><path>, or the process exiting with status 0 */
  ready: { kind: 'http'; path: string } | { kind: 'exit' };
}
export interface BenchImage {
  name: ImageName;
  /** OCI image layout directory (oci-layout, index.json with ONE manifest tagged 'latest' via org.opencontainers.image.ref.name, blobs/sha256) */
  layout: string;
  /** sum of compressed layer sizes, and of uncompressed (tar) sizes */
  compressedBytes: number;
  uncompressedBytes: number;
  /** per layer: { digest, size (compressed), uncompressedSize } in manifest order */
  layers: Array<{ digest: string; size: number; uncompressedSize: number }>;
  /** Debian package versions used (name=version), for the report */
  packages: string[];
  workloads: Workload[];
}

export const IMAGE_NAMES: ImageName[] = ['echo', 'python', 'node', 'hostile', 'fat-sparse'];

/** What image.json (next to the layout) stores: everything but the workload functions. */
interface Stored {
  recipe: string;
  compressor: string;
  image: Omit<BenchImage, 'workloads' | 'layout'>;
  layerMetas: Array<Omit<LayerMeta, 'blob'>>;
}

const MT_LAYER = 'application/vnd.oci.image.layer.v1.tar+gzip';

function hydrate(name: ImageName, dir: string, s: Stored): BenchImage {
  const metas = s.layerMetas.map((m) => ({ ...m, blob: '' }));
  return { ...s.image, layout: join(dir, 'layout'), workloads: RECIPES[name].workloads(metas) };
}

/** The layers of an image (each built or taken from the layer cache), in order. */
async function buildLayers(name: ImageName, workDir: string): Promise<LayerMeta[]> {
  const metas: LayerMeta[] = [];
  const roots: string[] = [];
  let below = new Set<string>();
  for (const def of RECIPES[name].layers) {
    const ctx: Ctx = { workDir, lower: [...metas] };
    if (def.debs) {
      roots.push(...(typeof def.debs === 'function' ? await def.debs() : def.debs));
      const closure = await resolveClosure(roots, workDir);
      const pkgs = closure.filter((p) => !below.has(p.name));
      below = new Set(closure.map((p) => p.name));
      const key = sha256Hex(JSON.stringify([RECIPE, def.id, pkgs.map(pkgId), def.post?.version ?? '']));
      metas.push(
        await cachedLayer(workDir, def.id, key, async (dir) => {
          await extractDebs(await fetchDebs(pkgs, join(workDir, 'debs')), dir);
          await def.post?.run(dir, ctx);
          return { packages: pkgs.map(pkgId) };
        }),
      );
    } else if (def.gen) {
      const genKey = typeof def.gen.key === 'function' ? await def.gen.key(workDir) : def.gen.key;
      const key = sha256Hex(JSON.stringify([RECIPE, def.id, genKey, metas.map((m) => m.key)]));
      const gen = def.gen;
      metas.push(await cachedLayer(workDir, def.id, key, (dir) => gen.fill(dir, ctx)));
    }
  }
  return metas;
}

const building = new Map<string, Promise<BenchImage>>();

export function buildBenchImage(name: ImageName, workDir: string): Promise<BenchImage> {
  const k = `${resolve(workDir)}:${name}`;
  let p = building.get(k);
  if (!p) {
    p = build(name, workDir).finally(() => building.delete(k));
    building.set(k, p);
  }
  return p;
}

async function build(name: ImageName, workDir: string): Promise<BenchImage> {
  const recipe = RECIPES[name];
  if (!recipe) throw new Error(`unknown image ${name}; one of ${IMAGE_NAMES.join(', ')}`);
  workDir = resolve(workDir);
  const dir = join(workDir, 'images', name);
  // `stamp` (the recipe version + this image's layer list) is written last inside the temp dir, and
  // the dir renamed in whole; editing an image's layers rebuilds it (the layer cache keeps what it can).
  const stamp = `${RECIPE}:${sha256Hex(JSON.stringify(recipe.layers.map((l) => [l.id, typeof l.debs === 'function' ? 'fn' : (l.debs ?? []), l.post?.version ?? '', typeof l.gen?.key === 'string' ? l.gen.key : ''])))}`;
  if (existsSync(join(dir, 'stamp')) && readFileSync(join(dir, 'stamp'), 'utf8').trim() === stamp) {
    return hydrate(name, dir, JSON.parse(readFileSync(join(dir, 'image.json'), 'utf8')) as Stored);
  }
  for (const d of ['layers', 'images', 'debs'].map((d) => join(workDir, d))) await sweepStale(d);
  const metas = await buildLayers(name, workDir);

  const tmp = join(workDir, 'images', `.${name}.tmp-${process.pid}`);
  await removeTree(tmp);
  const layout = join(tmp, 'layout');
  try {
    const wl = recipe.workloads(metas)[0]!;
    const layers = metas.map((m) => ({ mediaType: MT_LAYER, diffId: m.diffId, file: m.blob, digest: m.digest, size: m.size }));
    const config = {
      created: '1970-01-01T00:00:00Z',
      config: { Env: recipe.env, Cmd: wl.command(8080), WorkingDir: '/' },
      history: metas.map((m) => ({
        created: '1970-01-01T00:00:00Z',
        created_by: `bench/images ${name}: ${m.id}${m.packages.length ? ` (${m.packages.length} Debian packages)` : ''}`,
      })),
    };
    writeLayout(layout, [{ layers, config }]);

    const packages = [...new Set(metas.flatMap((m) => m.packages))].sort();
    writeFileSync(join(tmp, 'packages.txt'), packages.join('\n') + '\n');
    const stored: Stored = {
      recipe: RECIPE,
      compressor: COMPRESSOR,
      image: {
        name,
        compressedBytes: metas.reduce((s, m) => s + m.size, 0),
        uncompressedBytes: metas.reduce((s, m) => s + m.uncompressedSize, 0),
        layers: metas.map((m) => ({ digest: m.digest, size: m.size, uncompressedSize: m.uncompressedSize })),
        packages,
      },
      layerMetas: metas.map(({ blob: _blob, ...m }) => m),
    };
    writeFileSync(join(tmp, 'image.json'), JSON.stringify(stored, null, 1) + '\n');
    writeFileSync(join(tmp, 'stamp'), stamp + '\n');
    const old = `${dir}.old-${process.pid}`;
    if (existsSync(dir)) renameSync(dir, old);
    renameSync(tmp, dir);
    await removeTree(old);
    return hydrate(name, dir, stored);
  } catch (e) {
    await removeTree(tmp);
    throw e;
  }
}
