/**
 * Debian packages without installing them: resolve a dependency closure with apt's own solver,
 * download the exact versions into a cache, and `dpkg-deb -x` them into a layer directory.
 *
 * The closure comes from `apt-get -s install --no-install-recommends` against an EMPTY dpkg status
 * file: apt then lists every package (Depends and Pre-Depends, alternatives and virtual packages
 * resolved to real ones, candidate versions) a fresh system would need. That is simpler and more
 * faithful than walking `apt-cache depends --recurse` by hand.
 */
import { existsSync, mkdirSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { removeTree, run } from './sh.js';

export interface Pkg {
  name: string;
  version: string;
  arch: string;
}

export const pkgId = (p: Pkg) => `${p.name}=${p.version}`;

/** apt-get download's file name: the epoch colon is URL-encoded. */
export const debFile = (p: Pkg) => `${p.name}_${p.version.replace(/:/g, '%3a')}_${p.arch}.deb`;

/** Every package apt would install on an empty system for `roots` (name or name=version), sorted by name. */
export async function resolveClosure(roots: string[], workDir: string): Promise<Pkg[]> {
  const status = join(workDir, 'apt-empty-status');
  if (!existsSync(status)) {
    mkdirSync(workDir, { recursive: true });
    writeFileSync(status, '');
  }
  const out = await run(
    [
      'apt-get',
      '-s',
      '-q',
      '-o',
      `Dir::State::status=${status}`,
      '-o',
      'APT::Install-Recommends=false',
      '-o',
      'APT::Install-Suggests=false',
      '-o',
      'Debug::NoLocking=true',
      'install',
      ...roots,
    ],
    { env: { ...process.env, LC_ALL: 'C' }, quiet: true },
  );
  // Inst libgcc-s1 (12.2.0-14+deb12u1 Debian:12.15/oldstable [amd64]) []
  const pkgs: Pkg[] = [];
  for (const line of out.split('\n')) {
    const m = /^Inst (\S+) \((\S+) .*\[(\w+)\]\)/.exec(line);
    if (m) pkgs.push({ name: m[1]!, version: m[2]!, arch: m[3]! });
  }
  if (pkgs.length === 0) throw new Error(`apt resolved nothing for ${roots.join(' ')}:\n${out.slice(-2000)}`);
  return pkgs.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

let downloads = 0;

/** Makes sure every package's .deb is in `cacheDir`; returns their paths in `pkgs` order. */
export async function fetchDebs(pkgs: Pkg[], cacheDir: string): Promise<string[]> {
  mkdirSync(cacheDir, { recursive: true });
  const missing = pkgs.filter((p) => !existsSync(join(cacheDir, debFile(p))));
  if (missing.length > 0) {
    // Download into a private dir and move complete files in, so an interrupted download never
    // leaves a truncated .deb under its final name.
    const tmp = join(cacheDir, `.partial${downloads++}-${process.pid}`);
    await removeTree(tmp);
    mkdirSync(tmp, { recursive: true });
    try {
      for (let i = 0; i < missing.length; i += 100) {
        await run(['apt-get', 'download', '-q', ...missing.slice(i, i + 100).map(pkgId)], { cwd: tmp, quiet: true });
      }
      for (const f of readdirSync(tmp)) if (f.endsWith('.deb')) renameSync(join(tmp, f), join(cacheDir, f));
    } finally {
      await removeTree(tmp);
    }
  }
  return pkgs.map((p) => {
    const f = join(cacheDir, debFile(p));
    if (!existsSync(f)) throw new Error(`apt-get download did not produce ${debFile(p)}`);
    return f;
  });
}

/** Unpacks the data part of each .deb into dir (no maintainer scripts, no dpkg database). */
export async function extractDebs(debs: string[], dir: string): Promise<void> {
  mkdirSync(dir, { recursive: true });
  for (const d of debs) await run(['dpkg-deb', '-x', d, dir]);
}
