/** Snapshot directory helpers: the mount shape, overlay's index=off check (the mount table lives in ../host; disk usage in ./disk-usage.ts). */
import { existsSync } from 'node:fs';

export interface Mount {
  type: string;
  source: string;
  target: string;
  options: string[];
}

/** Like containerd's overlay snapshotter: "index=off" whenever the kernel has the index feature. */
export function overlayNeedsIndexOff(): boolean {
  return existsSync('/sys/module/overlay/parameters/index');
}
