/** `soci create IMAGE` — a v1 SOCI index per platform, stored under --root. */
import { Command } from 'commander';
import { resolve } from 'node:path';
import { parseReference } from '../oci/reference.js';
import type { LayerSource } from '../soci/index-builder.js';
import { RegistryImageSource } from '../soci/registry-source.js';
import { Progress } from './progress.js';
import { addRegistryFlags, closeClients, registryClient, type RegistryFlags } from './registry-opts.js';
import { formatPlatform } from '../oci/platform.js';
import { selectManifests } from '../oci/select.js';
import { decodeManifest, type Descriptor } from '../oci/types.js';
import { buildSociIndex } from '../soci/index-builder.js';
import { indexBlobs, recordIndex, saveBlobs, ztocCache } from '../soci/artifacts.js';
import { ContainerdImageSource } from '../soci/containerd-source.js';
import type { ImageRecord } from '../containerd/index.js';
import { localBlobs } from '../store/index.js';
import { findContainerdImage } from './images.js';
import { globals, openSession } from './session.js';
import { OciLayout, parseLayoutRef, type BlobReader } from '../store/oci-layout.js';
import { addBuildFlags, buildFlagValues, type BuildFlags } from './common.js';
import { info, out } from './output.js';
import { lineLogger, silentLogger } from '../logger.js';

export function createCommand(): Command {
  return addRegistryFlags(addBuildFlags(new Command('create')))
    .description(
      "create a SOCI index (v1) for an image in containerd's image store; oci:DIR[:TAG] and oci-archive:FILE[:TAG] layouts, or a registry reference with --remote",
    )
    .option('-q, --quiet', 'no progress output', false)
    .option('--remote', 'read the image from its registry (no containerd)', false)
    .argument('<image_ref>', 'image to index')
    .option('--ref <name>', 'image reference to record for the index (default: the argument)')
    .action(async (imageRef: string, o: BuildFlags & RegistryFlags & { ref?: string; quiet?: boolean; remote?: boolean }, cmd: Command) => {
      const flags = buildFlagValues(o);
      const g = globals(cmd);
      const s = await openSession(g);
      const local = o.remote ? null : await parseLayoutRef(imageRef);
      let source: BlobReader & LayerSource;
      let root: Descriptor;
      let location: string;
      let close: () => Promise<void> = async () => {};
      let image: ImageRecord | undefined;
      try {
        if (local) {
          const layout = await OciLayout.open(local.path);
          source = layout;
          close = () => layout.close();
          root = await layout.resolve(local.tag);
          location = resolve(local.path);
        } else if (o.remote) {
          const ref = parseReference(imageRef);
          const rs = new RegistryImageSource(registryClient(ref.registry, o, Boolean(g.debug)), ref.repository);
          source = rs;
          close = closeClients;
          root = await rs.resolve(ref);
          location = ref.string();
        } else {
          const cd = await s.containerd();
          image = await findContainerdImage(cd, imageRef, 'index it from its registry with --remote');
          source = new ContainerdImageSource(cd.content, image.name);
          root = image.target;
          location = `containerd:${cd.namespace}`;
        }
        const progress = new Progress(Boolean(o.quiet));
        const blobs = local || o.remote ? localBlobs(s.local.content) : await s.blobs();
        if (!local && !o.remote) await s.holdLease();
        for (const { desc, platform } of await selectManifests(root, source, flags)) {
          const manifest = decodeManifest(await source.readBlob(desc.digest));
          const built = await buildSociIndex({ manifest, desc }, source, ztocCache(s.db, blobs), {
            ...flags,
            version: 'v1',
            log: o.quiet ? silentLogger : lineLogger(out),
            onProgress: progress.update,
          });
          await saveBlobs(blobs, indexBlobs(built));
          recordIndex(s.db, built, {
            imageRef: o.ref ?? image?.name ?? imageRef,
            manifestDigest: desc.digest,
            imageDigest: desc.digest,
            platform: formatPlatform(platform),
            location,
          });
          // As AWS's CLI: the image record references its index, so containerd's GC keeps it.
          if (image) {
            image.labels = { ...image.labels, 'containerd.io/gc.ref.content.soci-index': built.desc.digest };
            await (await s.containerd()).images.update(image, ['labels']);
          }
          info(`soci index ${built.desc.digest} created for ${formatPlatform(platform)}`);
        }
      } finally {
        await close();
        await s.close();
      }
    });
}
