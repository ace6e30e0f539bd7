/** Finding a command's image in containerd's image store, with the error a user can act on. */
import type { Containerd, ImageRecord } from '../containerd/index.js';
import { SociError } from '../errors.js';
import { MT, isIndexType, isManifestType } from '../oci/media-types.js';
import { platformMatches } from '../oci/platform.js';
import { decodeIndex, type Platform } from '../oci/types.js';
import type { Session } from './session.js';

/**
 * The record of `name`, or a one-line error: not in this namespace (naming the namespaces that do
 * have it), with the ways out: pull it first, or `alternative` (the command's other mode).
 */
export async function findContainerdImage(cd: Containerd, name: string, alternative?: string): Promise<ImageRecord> {
  const img = await cd.findImage(name);
  if (img) return img;
  const elsewhere = await cd.namespacesWith(name).catch(() => [] as string[]);
  const where = elsewhere.length
    ? `: it is in namespace ${elsewhere.join(', ')} (use -n ${elsewhere[0]})`
    : `: pull it first (nerdctl pull ${name}, or ctr -n ${cd.namespace} images pull ${name})${alternative ? `, or ${alternative}` : ''}`;
  throw new SociError('ERR_NOT_FOUND', `image ${name} not found in containerd (namespace ${cd.namespace})${where}`);
}

/**
 * The platform manifests of a containerd image (those of `platforms`, else all it lists), or
 * undefined when containerd is unreachable or has no such image: the caller then falls back to the
 * reference recorded in the DB (registry and standalone conversions).
 */
export async function imageManifestDigests(s: Session, ref: string, platforms: Platform[]): Promise<string[] | undefined> {
  const cd = await s.containerd().catch(() => undefined);
  const img = cd ? await cd.findImage(ref).catch(() => undefined) : undefined;
  if (!cd || !img) return undefined;
  if (!isIndexType(img.target.mediaType)) return [img.target.digest];
  const idx = decodeIndex(await cd.content.get(img.target.digest));
  return idx.manifests
    .filter((d) => isManifestType(d.mediaType) && d.artifactType !== MT.sociIndexV2 && d.artifactType !== MT.sociIndexV1)
    .filter((d) => !platforms.length || platforms.some((p) => platformMatches(p, d.platform)))
    .map((d) => d.digest);
}
