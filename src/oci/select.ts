/**
 * Which image manifests a command works on, by platform (containerd's platform matching, the parts
 * AWS's soci uses): this host's by default, the --platform ones, or all of them with
 * --all-platforms. Every command that picks manifests of an image (create, convert, push, mount)
 * goes through here, so they agree on defaults and on the error for a platform the image lacks.
 */
import { SociError } from '../errors.js';
import { formatPlatform, hostPlatform, platformMatches } from './platform.js';
import { isIndexType, isManifestType } from './media-types.js';
import { decodeIndex, decodeManifest, type Descriptor, type Manifest, type Platform } from './types.js';

/** The platforms asked for: the --platform values, else this host's. */
export function wantedPlatforms(platforms: readonly Platform[] | undefined): Platform[] {
  return platforms?.length ? [...platforms] : [hostPlatform()];
}

/**
 * For each wanted platform, the first candidate that matches it. A candidate without a platform
 * matches only when it is the only one. A platform no candidate has is a one-line ERR_NOT_FOUND.
 */
export function manifestsFor(candidates: readonly Descriptor[], wanted: readonly Platform[], what = 'image'): Array<{ desc: Descriptor; platform: Platform }> {
  return wanted.map((p) => {
    const desc = candidates.find((d) => (d.platform ? platformMatches(p, d.platform) : candidates.length === 1));
    if (!desc) throw new SociError('ERR_NOT_FOUND', `${what} has no manifest for platform ${formatPlatform(p)}: not found`);
    return { desc, platform: p };
  });
}

/** A single-platform image's platform, from its config blob (os, architecture, variant, os.version as written). */
export async function configPlatform(manifest: Manifest, readBlob: (digest: string) => Promise<Buffer>): Promise<Platform> {
  const cfg = JSON.parse((await readBlob(manifest.config.digest)).toString('utf8')) as {
    os?: string;
    architecture?: string;
    variant?: string;
    'os.version'?: string;
  };
  const p: Platform = { architecture: cfg.architecture ?? '', os: cfg.os ?? '' };
  if (cfg['os.version']) p['os.version'] = cfg['os.version'];
  if (cfg.variant) p.variant = cfg.variant;
  return p;
}

/**
 * The platform-specific manifests of an image to index (`soci create`, `soci ztoc`): the image
 * itself when it is one manifest, else the --platform ones (this host's by default) or, with
 * --all-platforms, every manifest of the index that names its platform. Artifacts are left out.
 */
export async function selectManifests(
  root: Descriptor,
  blobs: { readBlob(digest: string): Promise<Buffer> },
  flags: { platforms: Platform[]; allPlatforms: boolean },
): Promise<Array<{ desc: Descriptor; platform: Platform }>> {
  const read = (d: string) => blobs.readBlob(d);
  if (!isIndexType(root.mediaType)) return [{ desc: root, platform: await configPlatform(decodeManifest(await read(root.digest)), read) }];
  const images = decodeIndex(await read(root.digest)).manifests.filter((d) => isManifestType(d.mediaType) && !d.artifactType);
  if (flags.allPlatforms) return images.filter((d) => d.platform).map((d) => ({ desc: d, platform: d.platform! }));
  return manifestsFor(images, wantedPlatforms(flags.platforms));
}
