/** OCI / Docker / SOCI media types and annotation keys. */
export const MT = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayer: 'application/vnd.oci.image.layer.v1.tar',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  ociLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  ociLayerNondistGzip: 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  ociLayerNondist: 'application/vnd.oci.image.layer.nondistributable.v1.tar',
  ociLayerNondistZstd: 'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd',
  ociEmpty: 'application/vnd.oci.empty.v1+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  dockerLayer: 'application/vnd.docker.image.rootfs.diff.tar',
  dockerForeignLayerGzip: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
  sociIndexV1: 'application/vnd.amazon.soci.index.v1+json',
  sociIndexV2: 'application/vnd.amazon.soci.index.v2+json',
  ztoc: 'application/octet-stream',
  sociPrefetch: 'application/vnd.amazon.soci.prefetch.v1+json',
} as const;

export const ANN = {
  layerMediaType: 'com.amazon.soci.image-layer-mediaType',
  layerDigest: 'com.amazon.soci.image-layer-digest',
  spanSize: 'com.amazon.soci.span-size',
  disableXattrs: 'com.amazon.soci.disable-xattrs',
  buildTool: 'com.amazon.soci.build-tool-identifier',
  imageManifestDigest: 'com.amazon.soci.image-manifest-digest',
  indexDigest: 'com.amazon.soci.index-digest',
} as const;

/** The `{}` config blob every SOCI index points at. */
export const EMPTY_CONFIG = {
  bytes: Buffer.from('{}'),
  digest: 'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a',
  size: 2,
} as const;

export function isIndexType(mt: string | undefined): boolean {
  return mt === MT.ociIndex || mt === MT.dockerManifestList;
}
export function isManifestType(mt: string | undefined): boolean {
  return mt === MT.ociManifest || mt === MT.dockerManifest;
}

export type LayerCompression = 'gzip' | 'uncompressed' | 'zstd' | 'unknown';

/**
 * What containerd's DiffCompression would say for a layer media type; `null` when the type is not a
 * layer at all (images.IsLayerType is false), which makes index building fail like AWS's.
 */
export function layerCompression(mt: string): LayerCompression | null {
  switch (mt) {
    case MT.ociLayerGzip:
    case MT.ociLayerNondistGzip:
    case MT.dockerLayerGzip:
    case MT.dockerForeignLayerGzip:
      return 'gzip';
    case MT.ociLayer:
    case MT.ociLayerNondist:
    case MT.dockerLayer:
      return 'uncompressed';
    case MT.ociLayerZstd:
    case MT.ociLayerNondistZstd:
      return 'zstd';
  }
  if (mt.startsWith('application/vnd.oci.image.layer.') || mt.startsWith('application/vnd.docker.image.rootfs.')) {
    return 'unknown';
  }
  return null;
}
