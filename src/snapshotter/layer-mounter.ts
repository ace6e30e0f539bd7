/**
 * The seam between the snapshotter and the lazy layer filesystem (fs/ + fuse/) or a local
 * unpacker. The snapshotter owns snapshot metadata and directories; these own what appears
 * inside a snapshot's `fs` directory.
 */
import { SociError } from '../errors.js';

export interface MountContext {
  /** containerd namespace from the gRPC metadata (`containerd-namespace`). */
  namespace: string;
  /** The active snapshot key being prepared (as containerd sent it). */
  key: string;
}

export interface LayerMounter {
  /**
   * Make the layer described by `labels` (cri.image-ref, cri.layer-digest,
   * cri.manifest-digest, ...) appear read-only at `mountpoint` (an existing empty directory).
   * Throws SociError ERR_NO_ZTOC (this layer is not indexed → local unpack) or ERR_NO_INDEX
   * (the image has no usable index → defer to containerd); any other error → the snapshotter
   * counts `fuse_mount_failure_count` and unpacks locally.
   */
  mount(mountpoint: string, labels: Record<string, string>, ctx: MountContext): Promise<void>;
  /**
   * Optional: start finding the image's index and artifacts without mounting anything, for a
   * layer that will not be mounted lazily (below the size bound) but tells which image is coming.
   * Never throws; a failure shows again at the mount that needs the answer.
   */
  resolve?(labels: Record<string, string>): void;
  /** Undo mount(); must succeed (or be a no-op) when nothing is mounted there. */
  unmount(mountpoint: string): Promise<void>;
  /** Optional health probe when containerd asks for mounts of a child. */
  check?(mountpoint: string, labels: Record<string, string>): Promise<void>;
  /** Optional, at start: mountpoints a previous daemon kept serving-ready; left mounted for mount() to take over. */
  keptMounts?(): Promise<string[]>;
  /** Optional, after the restore: ends the kept mounts nothing took over. */
  releaseUnclaimed?(): Promise<void>;
  /**
   * Optional, in a handover: the mounts taken over while the previous daemon still served are
   * recovered once it has exited (requests it read and never answered).
   */
  recoverLost?(): Promise<void>;
}

export interface LocalUnpacker {
  /**
   * Download the layer and apply it into `dir` (the empty `fs` dir of the snapshot being
   * prepared); `parentDirs` are the parents' fs dirs, nearest first (for whiteout handling).
   * Throws on failure → `local_mount_failure_count` and defer.
   */
  unpack(dir: string, parentDirs: string[], labels: Record<string, string>, ctx: MountContext): Promise<void>;
  /**
   * Optional, for parallel pull and unpack: the same for a layer of an image none of whose layers
   * is lazy, which may start the image's other layers at once (they are claimed by their own calls).
   */
  unpackImage?(dir: string, parentDirs: string[], labels: Record<string, string>, ctx: MountContext): Promise<void>;
}

/** Default until the FUSE layer lands: no image has an index, so every layer defers. */
export class DeferringMounter implements LayerMounter {
  async mount(): Promise<void> {
    throw new SociError('ERR_NO_INDEX', 'lazy loading is not available in this build; deferring to containerd');
  }
  async unmount(): Promise<void> {
    // Nothing is ever mounted by this mounter.
  }
}
