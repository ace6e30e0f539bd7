/**
 * `[pull_modes.parallel_pull_unpack.decompress_streams]`, as AWS's docs/parallel-mode.md defines
 * it: per algorithm ("gzip", "zstd") an absolute path to a regular executable file and its
 * arguments, run directly (no shell, no expansion). A configured tool that is not there stops the
 * daemon at start, in one line. Without one, gzip goes through `unpigz -d -c` when it is on PATH
 * (as containerd's own unpack does) and node:zlib otherwise; zstd through the zstd tool.
 */
import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, isAbsolute, join } from 'node:path';
import { SociError } from '../errors.js';
import type { DecompressTool } from '../fs/unpack.js';

export type ToolAlgorithm = 'gzip' | 'zstd';
export type DecompressTools = Partial<Record<ToolAlgorithm, DecompressTool>>;

/** The tools to use, from the config section (validated) and PATH. */
export function decompressTools(streams: Record<string, { path?: unknown; args?: unknown }>, env = process.env): DecompressTools {
  const out: DecompressTools = {};
  const pigz = env.CONTAINERD_DISABLE_PIGZ === '1' ? undefined : onPath('unpigz', env.PATH ?? '');
  if (pigz) out.gzip = { path: pigz, args: ['-d', '-c'] };
  for (const [alg, c] of Object.entries(streams)) {
    const key = `pull_modes.parallel_pull_unpack.decompress_streams.${alg}`;
    if (alg !== 'gzip' && alg !== 'zstd') throw new SociError('ERR_USAGE', `config: ${key}: unsupported algorithm (gzip or zstd)`);
    if (typeof c.path !== 'string' || !isAbsolute(c.path)) throw new SociError('ERR_USAGE', `config: ${key}.path must be an absolute path`);
    if (!isExecutableFile(c.path)) throw new SociError('ERR_USAGE', `config: ${key}.path ${c.path} is not an executable regular file`);
    const args = c.args ?? [];
    if (!Array.isArray(args) || args.some((a) => typeof a !== 'string')) throw new SociError('ERR_USAGE', `config: ${key}.args must be a list of strings`);
    out[alg] = { path: c.path, args: args as string[] };
  }
  return out;
}

function isExecutableFile(p: string): boolean {
  try {
    if (!statSync(p).isFile()) return false;
    accessSync(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function onPath(name: string, path: string): string | undefined {
  for (const dir of path.split(delimiter)) {
    if (!dir) continue;
    const p = join(dir, name);
    if (isExecutableFile(p)) return p;
  }
  return undefined;
}
