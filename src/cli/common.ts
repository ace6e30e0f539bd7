/** Flags shared by commands, parsing helpers and the image-input resolution. */
import { type Command, Option } from 'commander';
import { readFileSync } from 'node:fs';
import { SociError } from '../errors.js';
import { parsePlatform } from '../oci/platform.js';
import type { Platform } from '../oci/types.js';
import { DEFAULT_MIN_LAYER_SIZE, DEFAULT_SPAN_SIZE } from '../soci/index-builder.js';
import { recordTargets } from '../image/prefetch-record.js';
import type { PrefetchTarget } from '../soci/prefetch.js';

const collect = (v: string, prev: string[] = []) => [...prev, v];

export function parseSize(name: string): (v: string) => number {
  return (v: string) => {
    if (!/^-?\d+$/.test(v.trim())) throw new SociError('ERR_USAGE', `invalid value "${v}" for --${name}: expected an integer`);
    const n = Number(v);
    if (!Number.isSafeInteger(n)) throw new SociError('ERR_USAGE', `invalid value "${v}" for --${name}: out of range`);
    return n;
  };
}

/** The index-building flags of `create` and `convert` (reference names and defaults). */
export function addBuildFlags(cmd: Command): Command {
  return cmd
    .option('--all-platforms', 'build for all platforms of the image', false)
    .option('-p, --platform <platform>', 'platform to build for (repeatable), e.g. linux/arm64', collect, [])
    .option('--span-size <bytes>', 'span size of the zTOCs', parseSize('span-size'), DEFAULT_SPAN_SIZE)
    .option('--min-layer-size <bytes>', 'layers smaller than this get no zTOC', parseSize('min-layer-size'), DEFAULT_MIN_LAYER_SIZE)
    .option('--optimizations <name>', '(experimental) optional optimizations; valid: xattr', collect, [])
    .option('-f, --force', 'rebuild zTOCs even if they exist', false)
    .option('--prefetch-file <path>', 'file to prefetch (repeatable)', collect, [])
    .option('--prefetch-files-json <file>', 'JSON file with an array of paths to prefetch')
    .option('--prefetch-record <file>', "a prefetch record (soci mount --record, or the snapshotter's [prefetch_record]): prefetch the files it lists (ours)");
}

export interface BuildFlags {
  allPlatforms: boolean;
  platform: string[];
  spanSize: number;
  minLayerSize: number;
  optimizations: string[];
  force: boolean;
  prefetchFile: string[];
  prefetchFilesJson?: string;
  prefetchRecord?: string;
}

export function buildFlagValues(o: BuildFlags): {
  platforms: Platform[];
  allPlatforms: boolean;
  spanSize: number;
  minLayerSize: number;
  optimizations: string[];
  force: boolean;
  prefetchFiles: PrefetchTarget[];
  prefetchOrder: 'offset' | 'read';
} {
  if (o.allPlatforms && o.platform.length) throw new SociError('ERR_USAGE', 'specify --platform or --all-platforms, not both');
  const paths = [...o.prefetchFile];
  if (o.prefetchFilesJson) {
    let list: unknown;
    try {
      list = JSON.parse(readFileSync(o.prefetchFilesJson, 'utf8'));
    } catch (e) {
      throw new SociError('ERR_USAGE', `cannot read --prefetch-files-json ${o.prefetchFilesJson}: ${(e as Error).message.split('\n')[0]}`);
    }
    if (!Array.isArray(list) || list.some((x) => typeof x !== 'string'))
      throw new SociError('ERR_USAGE', `--prefetch-files-json ${o.prefetchFilesJson} must hold a JSON array of strings`);
    paths.push(...(list as string[]));
  }
  // A record's files come first, in the order they were read, with only the ranges read.
  const prefetchFiles: PrefetchTarget[] = [];
  if (o.prefetchRecord) {
    let bytes: Buffer;
    try {
      bytes = readFileSync(o.prefetchRecord);
    } catch (e) {
      throw new SociError('ERR_USAGE', `cannot read --prefetch-record ${o.prefetchRecord}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    prefetchFiles.push(...recordTargets(bytes, `--prefetch-record ${o.prefetchRecord}`));
  }
  for (const p of paths) if (!prefetchFiles.some((t) => t.path === p)) prefetchFiles.push({ path: p });
  if (o.spanSize < 0) throw new SociError('ERR_USAGE', 'span size must be >= 0');
  if (o.minLayerSize < 0) throw new SociError('ERR_USAGE', 'min layer size must be >= 0');
  return {
    platforms: o.platform.map(parsePlatform),
    allPlatforms: o.allPlatforms,
    spanSize: o.spanSize,
    minLayerSize: o.minLayerSize,
    optimizations: o.optimizations.flatMap((x) => x.split(',')).filter(Boolean),
    force: o.force,
    prefetchFiles,
    prefetchOrder: o.prefetchRecord ? 'read' : 'offset',
  };
}

export { Option };
