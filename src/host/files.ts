/**
 * Whole-file writes that readers never see half done: the bytes go to a temp name beside the
 * target (same filesystem), then rename(2) replaces the target at once. On failure the temp file
 * is removed and the target is left as it was.
 */
import { rename, rm, writeFile } from 'node:fs/promises';

export async function writeFileAtomic(path: string, data: Buffer | string, mode = 0o644): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    await writeFile(tmp, data, { mode });
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}
