/** Snapshot directory helpers: containerd's disk usage, overlay's index=off check (the mount table lives in ../host). */
import { existsSync } from 'node:fs';
import { lstat, opendir } from 'node:fs/promises';
import { join } from 'node:path';

export interface Mount {
  type: string;
  source: string;
  target: string;
  options: string[];
}

/** containerd's fs.DiskUsage: st_blocks*512 over unique inodes, root included. */
export async function diskUsage(root: string): Promise<{ size: number; inodes: number }> {
  const seen = new Set<string>();
  let size = 0;
  const visit = async (path: string): Promise<void> => {
    let st;
    try {
      st = await lstat(path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return; // raced with a delete
      throw e;
    }
    const id = `${st.dev}:${st.ino}`;
    if (!seen.has(id)) {
      seen.add(id);
      size += st.blocks * 512;
    }
    if (st.isDirectory()) {
      const d = await opendir(path);
      for await (const ent of d) await visit(join(path, ent.name));
    }
  };
  await visit(root);
  return { size, inodes: seen.size };
}

/** Like containerd's overlay snapshotter: "index=off" whenever the kernel has the index feature. */
export function overlayNeedsIndexOff(): boolean {
  return existsSync('/sys/module/overlay/parameters/index');
}
