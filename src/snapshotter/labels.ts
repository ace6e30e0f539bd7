/**
 * Snapshot labels the snapshotter reads and writes, with containerd's and AWS's names. containerd's
 * CRI sets the cri.* ones on Prepare (snapshotters.AppendInfoHandlerWrapper); only labels under
 * containerd.io/snapshot/ reach a proxy snapshotter.
 */
export const LABELS = {
  /** the committed snapshot containerd wants (Prepare with this label may answer "already exists") */
  targetSnapshot: 'containerd.io/snapshot.ref',
  imageRef: 'containerd.io/snapshot/cri.image-ref',
  layerDigest: 'containerd.io/snapshot/cri.layer-digest',
  manifestDigest: 'containerd.io/snapshot/cri.manifest-digest',
  /** an explicit SOCI index (AWS's `--soci-index-digest`) */
  indexDigest: 'containerd.io/snapshot/remote/soci.index.digest',
  /** the compressed layer size */
  size: 'containerd.io/snapshot/remote/soci.size',
  /** marks a snapshot committed from a remote (lazy) mount; its value is REMOTE_SNAPSHOT */
  remote: 'containerd.io/snapshot/remote',
  hasSociIndexDigest: 'containerd.io/snapshot/remote/has.soci.index.digest',
  /** the containerd namespace a remote snapshot was prepared in (to mount it again after a restart) */
  namespace: 'containerd.io/snapshot/remote/namespace',
  /** `<prefix><header name>`: a request header for the layer's registry requests */
  customHeaderPrefix: 'containerd.io/snapshot/remote/soci.header.',
  /** ours: "true" records which files this image's start reads ([prefetch_record] for one pull) */
  prefetchRecord: 'containerd.io/snapshot/remote/soci.prefetch.record',
} as const;

export const REMOTE_SNAPSHOT = 'remote snapshot';
