/**
 * The mount table, read from /proc/self/mountinfo (proc(5)): never by stat(2) on a mountpoint,
 * which can deadlock when the mount is a FUSE filesystem served by this very process.
 */
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';

export interface MountInfo {
  mountId: number;
  major: number;
  minor: number;
  mountpoint: string;
  fstype: string;
  source: string;
  /** per-mount options (ro, nosuid, nodev, ...) */
  options: string;
}

/** mountinfo escapes space, tab, newline and backslash as octal \ooo. */
function unescapeMountPath(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

export function parseMountinfo(text: string): MountInfo[] {
  const out: MountInfo[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    const f = line.split(' ');
    const sep = f.indexOf('-', 6);
    if (sep < 0 || f.length < sep + 3) continue;
    const [major, minor] = f[2]!.split(':').map(Number);
    out.push({
      mountId: Number(f[0]),
      major: major!,
      minor: minor!,
      mountpoint: unescapeMountPath(f[4]!),
      fstype: f[sep + 1]!,
      source: unescapeMountPath(f[sep + 2]!),
      options: f[5]!,
    });
  }
  return out;
}

export async function readMountinfo(): Promise<MountInfo[]> {
  return parseMountinfo(await readFile('/proc/self/mountinfo', 'utf8'));
}

/** Mount points at or below `dir`, deepest first; a path mounted twice (stacked) appears twice. */
export async function mountPointsUnder(dir: string): Promise<string[]> {
  const abs = resolve(dir);
  const prefix = abs.endsWith('/') ? abs : `${abs}/`;
  return (await readMountinfo())
    .map((m) => m.mountpoint)
    .filter((mp) => mp === abs || mp.startsWith(prefix))
    .sort((a, b) => b.length - a.length);
}

export async function isMountPoint(path: string): Promise<boolean> {
  return (await mountPointsUnder(path)).includes(resolve(path));
}
