/** `soci create IMAGE` — a v1 SOCI index per platform, stored under --root (reference §4). */
import { Command } from 'commander';
import { resolve } from 'node:path';
import { SociError } from '../errors.js';
import { parseReference } from '../oci/reference.js';
import type { LayerSource } from '../soci/index-builder.js';
import { RegistryImageSource } from '../soci/registry-source.js';
import { Progress } from './progress.js';
import { addRegistryFlags, closeClients, registryClient, type RegistryFlags } from './registry-opts.js';
import { MT, isIndexType } from '../oci/media-types.js';
import { formatPlatform, hostPlatform, platformMatches } from '../oci/platform.js';
import { decodeIndex, decodeManifest, type Descriptor, type Platform } from '../oci/types.js';
import { buildSociIndex } from '../soci/index-builder.js';
import { saveIndex, storeZtocCache } from '../soci/local.js';
import { OciLayout, parseLayoutRef, type BlobReader } from '../store/oci-layout.js';
import { addBuildFlags, buildFlagValues, globals, openStore, type BuildFlags } from './common.js';
import { info, out } from './output.js';

export function createCommand(): Command {
  return addRegistryFlags(addBuildFlags(new Command('create')))
    .description('create a SOCI index (v1) for an image: a registry reference, oci:DIR[:TAG], oci-archive:FILE[:TAG] or a layout path')
    .option('-q, --quiet', 'no progress output', false)
    .argument('<image_ref>', 'image to index')
    .option('--ref <name>', 'image reference to record for the index (default: the argument)')
    .action(async (imageRef: string, o: BuildFlags & RegistryFlags & { ref?: string; quiet?: boolean }, cmd: Command) => {
      const flags = buildFlagValues(o);
      const g = globals(cmd);
      const local = await parseLayoutRef(imageRef);
      let source: BlobReader & LayerSource;
      let root: Descriptor;
      let location: string;
      let close: () => Promise<void>;
      if (local) {
        const layout = await OciLayout.open(local.path);
        source = layout;
        close = () => layout.close();
        root = await layout.resolve(local.tag).catch(async (e) => {
          await layout.close();
          throw e;
        });
        location = resolve(local.path);
      } else {
        const ref = parseReference(imageRef);
        const rs = new RegistryImageSource(registryClient(ref.registry, o, Boolean(g.debug)), ref.repository);
        source = rs;
        close = closeClients;
        root = await rs.resolve(ref).catch(async (e) => {
          await closeClients();
          throw e;
        });
        location = ref.string();
      }
      const progress = new Progress(Boolean(o.quiet));
      const store = await openStore(g);
      try {
        const targets = await selectManifests(root, source, flags);
        for (const { desc, platform } of targets) {
          const manifest = decodeManifest(await source.readBlob(desc.digest));
          const built = await buildSociIndex({ manifest, desc }, source, storeZtocCache(store), { ...flags, version: 'v1', log: o.quiet ? () => {} : out, onProgress: progress.update });
          await saveIndex(store, built, {
            imageRef: o.ref ?? imageRef,
            imageDigest: desc.digest,
            platform: formatPlatform(platform),
            location,
            manifestMediaType: desc.mediaType,
          });
          info(`soci index ${built.desc.digest} created for ${formatPlatform(platform)}`);
        }
      } finally {
        store.close();
        await close();
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
