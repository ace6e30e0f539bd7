/** Version shown by `--version` of both programs; kept in step with package.json by a test. */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const VERSION = '0.1.0';
/** The zTOC build tool identifier AWS's CLI writes; we write the same so artifacts are byte-identical. */
export const BUILD_TOOL_IDENTIFIER = 'AWS SOCI CLI v0.2';

let rev: string | undefined;

/**
 * The commit this build came from: `revision.txt` beside the compiled code (written by the package's
 * prepare step), else the checkout's HEAD, else "unknown".
 */
export function revision(): string {
  if (rev !== undefined) return rev;
  const here = dirname(fileURLToPath(import.meta.url));
  try {
    rev = readFileSync(join(here, 'revision.txt'), 'utf8').trim();
  } catch {
    const r = spawnSync('git', ['rev-parse', 'HEAD'], { cwd: here, encoding: 'utf8', timeout: 5000 });
    rev = r.status === 0 ? r.stdout.trim() : '';
  }
  rev ||= 'unknown';
  return rev;
}

/** `soci version v0.1.0 <commit>`, the shape of AWS's `soci --version`. */
export function versionLine(program: string): string {
  return `${program} version v${VERSION} ${revision()}`;
}
