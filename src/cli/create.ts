/** `soci create IMAGE` — a v1 SOCI index per platform, stored under --root (reference §4). */
import { Command } from 'commander';
import { resolve } from 'node:path';
import { SociError } from '../errors.js';
import { MT, isIndexType } from '../oci/media-types.js';
import { formatPlatform, hostPlatform, platformMatches } from '../oci/platform.js';
import { decodeIndex, decodeManifest, type Descriptor, type Platform } from '../oci/types.js';
import { buildSociIndex } from '../soci/index-builder.js';
import { saveIndex, storeZtocCache } from '../soci/local.js';
import { OciLayout, parseLayoutRef, type BlobReader } from '../store/oci-layout.js';
import { addBuildFlags, buildFlagValues, globals, openStore, type BuildFlags } from './common.js';
import { info, out } from './output.js';

export function createCommand(): Command {
  return addBuildFlags(new Command('create'))
    .description('create a SOCI index (v1) for an image: oci:DIR[:TAG], oci-archive:FILE[:TAG] or a layout path')
    .argument('<image_ref>', 'image to index')
    .option('--ref <name>', 'image reference to record for the index (default: the argument)')
    .action(async (imageRef: string, o: BuildFlags & { ref?: string }, cmd: Command) => {
      const flags = buildFlagValues(o);
      const local = await parseLayoutRef(imageRef);
      if (!local) throw new SociError('ERR_USAGE', `${imageRef}: registry sources need the registry client (use oci:DIR or oci-archive:FILE)`);
      const layout = await OciLayout.open(local.path);
      const store = await openStore(globals(cmd));
      try {
        const root = await layout.resolve(local.tag);
        const targets = await selectManifests(root, layout, flags);
        for (const { desc, platform } of targets) {
          const manifest = decodeManifest(await layout.readBlob(desc.digest));
          const built = await buildSociIndex({ manifest, desc }, layout, storeZtocCache(store), { ...flags, version: 'v1', log: out });
          await saveIndex(store, built, {
            imageRef: o.ref ?? imageRef,
            imageDigest: desc.digest,
            platform: formatPlatform(platform),
            location: resolve(local.path),
            manifestMediaType: desc.mediaType,
          });
          info(`soci index ${built.desc.digest} created for ${formatPlatform(platform)}`);
        }
      } finally {
        store.close();
        await layout.close();
      }
    });
}

/** Platform-specific manifests to index: default host platform, --platform, or --all-platforms. */
export async function selectManifests(
  root: Descriptor,
  blobs: BlobReader,
  flags: { platforms: Platform[]; allPlatforms: boolean },
): Promise<Array<{ desc: Descriptor; platform: Platform }>> {
  if (!isIndexType(root.mediaType)) {
    const m = decodeManifest(await blobs.readBlob(root.digest));
    const cfg = JSON.parse((await blobs.readBlob(m.config.digest)).toString('utf8')) as Partial<Platform>;
    return [{ desc: root, platform: { os: cfg.os ?? 'linux', architecture: cfg.architecture ?? '', ...(cfg.variant ? { variant: cfg.variant } : {}) } }];
  }
  const idx = decodeIndex(await blobs.readBlob(root.digest));
  const images = idx.manifests.filter((d) => (d.mediaType === MT.ociManifest || d.mediaType === MT.dockerManifest) && !d.artifactType);
  if (flags.allPlatforms) return images.filter((d) => d.platform).map((d) => ({ desc: d, platform: d.platform! }));
  const wanted = flags.platforms.length ? flags.platforms : [hostPlatform()];
  return wanted.map((p) => {
    const d = images.find((x) => platformMatches(p, x.platform));
    if (!d) throw new SociError('ERR_NOT_FOUND', `image has no manifest for platform ${formatPlatform(p)}: not found`);
    return { desc: d, platform: d.platform! };
  });
}
