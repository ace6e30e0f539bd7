/**
 * Builds the benchmark images (default: all) under .bench-work (cached; see index.ts).
 *   node --import tsx bench/images/build.ts [echo python node hostile fat-sparse]
 */
import { resolve } from 'node:path';
import { buildBenchImage, IMAGE_NAMES, type ImageName } from './index.js';
import { mb } from './sh.js';

const names = (process.argv.slice(2).length ? process.argv.slice(2) : IMAGE_NAMES) as ImageName[];
for (const n of names) if (!IMAGE_NAMES.includes(n)) throw new Error(`unknown image ${n}; one of ${IMAGE_NAMES.join(', ')}`);
const work = resolve('.bench-work');
for (const name of names) {
  const t0 = Date.now();
  const img = await buildBenchImage(name, work);
  const s = ((Date.now() - t0) / 1000).toFixed(1);
  console.log(
    `${name}: ${mb(img.compressedBytes)} MB compressed / ${mb(img.uncompressedBytes)} MB uncompressed, ${img.layers.length} layers, ${img.packages.length} packages, ${s} s  ${img.layout}`,
  );
  for (const w of img.workloads) console.log(`  ${w.name}: ${w.description}`);
}
