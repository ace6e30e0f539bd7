/**
 * AWS's soci-snapshotter source, as a Go module from the module proxy (never copied into the repo):
 * its docs and example config are the reference some tests check against.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const AWS_MODULE = 'github.com/awslabs/soci-snapshotter';

/** The module's directory in Go's module cache (downloaded on first use). */
export function awsModuleDir(version: string): string {
  const ws = mkdtempSync(join(tmpdir(), 'soci-gomod-'));
  try {
    writeFileSync(join(ws, 'go.mod'), 'module scratch\n');
    const out = execFileSync('go', ['mod', 'download', '-json', `${AWS_MODULE}@${version}`], {
      cwd: ws,
      encoding: 'utf8',
      env: { ...process.env, GOFLAGS: '-mod=mod' },
      timeout: 300_000,
    });
    return (JSON.parse(out) as { Dir: string }).Dir;
  } finally {
    rmSync(ws, { recursive: true, force: true });
  }
}
