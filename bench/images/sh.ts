/**
 * Small process/filesystem helpers shared by the image builder (bench/images/*).
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, readFileSync } from 'node:fs';
import { lstat, readdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';

export interface RunOpts {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  input?: string;
  quiet?: boolean;
}

/** Runs argv, resolves stdout; rejects with the command and its stderr tail on a non-zero exit. */
export function run(argv: string[], opts: RunOpts = {}): Promise<string> {
  return new Promise((res, rej) => {
    const p = spawn(argv[0]!, argv.slice(1), {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    p.stdout!.on('data', (b: Buffer) => out.push(b));
    p.stderr!.on('data', (b: Buffer) => err.push(b));
    p.on('error', rej);
    p.on('close', (code, sig) => {
      const stderr = Buffer.concat(err).toString();
      if (code === 0) {
        if (!opts.quiet && stderr.trim())
          process.stderr.write(
            stderr
              .split('\n')
              .filter((l) => !/unsandboxed as root/.test(l))
              .join('\n'),
          );
        res(Buffer.concat(out).toString());
      } else rej(new Error(`${argv.slice(0, 6).join(' ')}${argv.length > 6 ? ' …' : ''} → ${code ?? sig}\n${stderr.slice(-2000)}`));
    });
    if (opts.input !== undefined) {
      p.stdin!.on('error', () => undefined); // the child may exit without reading it
      p.stdin!.end(opts.input);
    }
  });
}

export function sha256File(path: string): Promise<string> {
  return new Promise((res, rej) => {
    const h = createHash('sha256');
    createReadStream(path)
      .on('data', (b) => h.update(b))
      .on('error', rej)
      .on('end', () => res(h.digest('hex')));
  });
}

/** Mount points at or below `dir` (deepest first), from /proc/self/mountinfo. */
export function mountsUnder(dir: string): string[] {
  const abs = resolve(dir);
  const mi = existsSync('/proc/self/mountinfo') ? readFileSync('/proc/self/mountinfo', 'utf8') : '';
  return mi
    .split('\n')
    .map((l) => l.split(' ')[4]?.replace(/\\040/g, ' '))
    .filter((m): m is string => !!m && (m === abs || m.startsWith(abs + '/')))
    .sort((a, b) => b.length - a.length);
}

/**
 * Removes a tree. Verification chroots mount /proc inside trees we later delete: unmount anything
 * left below first, and let `rm --one-file-system` refuse to cross into any mount we missed.
 */
export async function removeTree(dir: string): Promise<void> {
  if (!existsSync(dir)) return;
  for (const m of mountsUnder(dir)) await run(['umount', '-l', m]).catch(() => undefined);
  await run(['rm', '-rf', '--one-file-system', dir]);
}

/** Sum of regular-file sizes below dir (hard links counted once), and the file count. */
export async function fileBytes(dir: string): Promise<{ bytes: number; files: number }> {
  let bytes = 0;
  let files = 0;
  const seen = new Set<string>();
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile()) {
        const st = await lstat(p);
        const id = `${st.dev}:${st.ino}`;
        if (st.nlink > 1 && seen.has(id)) continue;
        seen.add(id);
        bytes += st.size;
        files++;
      }
    }
  };
  await walk(dir);
  return { bytes, files };
}

/** Removes leftovers (`*.tmp-<pid>`, `*.old-<pid>`, `.stage-<pid>`, …) of builder processes that no longer run. */
export async function sweepStale(dir: string): Promise<void> {
  if (!existsSync(dir)) return;
  for (const e of await readdir(dir)) {
    const m = /\.(?:tmp|old|stage\d*|verify|partial\d*)-(\d+)$/.exec(e);
    if (!m || Number(m[1]) === process.pid) continue;
    try {
      process.kill(Number(m[1]), 0);
    } catch {
      await removeTree(join(dir, e));
    }
  }
}

export const mb = (n: number) => (n / 1e6).toFixed(1);
