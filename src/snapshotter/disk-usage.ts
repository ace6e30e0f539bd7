/**
 * containerd's fs.DiskUsage for a snapshot dir: st_blocks × 512 over the distinct inodes under it,
 * the root included, and their count. The walk is a run of lstat calls made synchronously on a
 * worker thread: through the libuv pool each lstat queued behind the file writes of layers being
 * pulled, and committing a layer of a few thousand entries took seconds during a parallel pull,
 * holding up containerd's next Prepare. The daemon's event loop waits for none of it.
 */
import { lstatSync, readdirSync } from 'node:fs';
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { SociError, type ErrorCode } from '../errors.js';
import { postError, startModuleWorker } from '../worker-pipe.js';

const SLASH = Buffer.from('/');

export interface DiskUsage {
  size: number;
  inodes: number;
}

export function diskUsage(root: string): Promise<DiskUsage> {
  const w = startModuleWorker(import.meta.url, { diskUsageRoot: root }, 1);
  const done = new Promise<DiskUsage>((resolve, reject) => {
    w.once('message', (m: { done?: DiskUsage; error?: { code: ErrorCode; message: string } }) =>
      m.error ? reject(new SociError(m.error.code, m.error.message)) : resolve(m.done!),
    );
    w.once('error', (e: Error) => reject(new SociError('ERR_INTERNAL', `disk usage of ${root}: ${e.message.split('\n')[0]}`)));
    w.once('exit', (code) => reject(new SociError('ERR_INTERNAL', `disk usage of ${root}: worker exited with code ${code}`)));
  });
  return done.finally(() => w.terminate());
}

function walk(root: string): DiskUsage {
  const seen = new Set<string>();
  let size = 0;
  // Buffer paths: a name that is not UTF-8 (tar allows any bytes) is still found and counted.
  const visit = (path: Buffer): void => {
    let st;
    try {
      st = lstatSync(path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return; // raced with a delete
      throw e;
    }
    const id = `${st.dev}:${st.ino}`;
    if (!seen.has(id)) {
      seen.add(id);
      size += st.blocks * 512;
    }
    if (st.isDirectory()) for (const name of readdirSync(path, { encoding: 'buffer' })) visit(Buffer.concat([path, SLASH, name]));
  };
  visit(Buffer.from(root));
  return { size, inodes: seen.size };
}

// ---- the worker side: workerData { diskUsageRoot } ----
if (!isMainThread && parentPort && typeof (workerData as { diskUsageRoot?: unknown } | undefined)?.diskUsageRoot === 'string') {
  const port = parentPort;
  try {
    port.postMessage({ done: walk((workerData as { diskUsageRoot: string }).diskUsageRoot) });
  } catch (e) {
    postError(port, e);
  }
}
