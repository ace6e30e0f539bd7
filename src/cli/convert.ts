/**
 * `soci convert SRC DST`: a SOCI-enabled (v2) image. With `--standalone`, SRC/DST are OCI layouts
 * (dir or oci-archive); otherwise they are registry references and the conversion runs straight from
 * registry to registry (no containerd, no root): each layer streamed once, digest-checked while indexed.
 */
import { Command } from 'commander';
import { SociError } from '../errors.js';
import { parseReference } from '../oci/reference.js';
import { convertImage, type ConvertResult } from '../soci/convert.js';
import { pushImageGraph } from '../soci/push-graph.js';
import { RegistryImageSource } from '../soci/registry-source.js';
import { OciLayout, parseLayoutRef, writeLayoutArchive, writeLayoutDir } from '../store/oci-layout.js';
import { addBuildFlags, buildFlagValues, globals, type BuildFlags } from './common.js';
import { info, out, printJson } from './output.js';
import { Progress } from './progress.js';
import { addRegistryFlags, closeClients, registryClient, type RegistryFlags } from './registry-opts.js';

type ConvertFlags = BuildFlags & RegistryFlags & { standalone: boolean; format: string; json: boolean; quiet: boolean; maxConcurrentUploads: number };

export function convertCommand(): Command {
  return addRegistryFlags(addBuildFlags(new Command('convert')))
    .description('convert an image to a SOCI-enabled image (SOCI index manifest v2)')
    .argument('<image_ref>', 'source image: registry reference, or OCI layout dir / oci-archive with --standalone')
    .argument('<dest_ref>', 'destination: tagged registry reference, or output path with --standalone')
    .option('--standalone', 'read an OCI layout (dir or tar) and write a converted layout; no registry, no containerd', false)
    .option('--format <format>', 'standalone output format: oci-archive or oci-dir', 'oci-archive')
    .option('--max-concurrent-uploads <n>', 'parallel blob uploads', (v) => Number(v), 3)
    .option('-q, --quiet', 'no progress output', false)
    .option('--json', 'print the result as JSON', false)
    .action(async (src: string, dst: string, o: ConvertFlags, cmd: Command) => {
      const flags = buildFlagValues(o);
      const progress = new Progress(o.quiet || o.json);
      const log = o.quiet ? () => {} : o.json ? info : out;
      let r: ConvertResult;
      if (o.standalone) {
        if (o.format !== 'oci-archive' && o.format !== 'oci-dir') throw new SociError('ERR_USAGE', `invalid --format "${o.format}": use oci-archive or oci-dir`);
        const local = await parseLayoutRef(src);
        if (!local) throw new SociError('ERR_NOT_FOUND', `input ${src} does not exist`);
        const layout = await OciLayout.open(local.path);
        try {
          const root = await layout.resolve(local.tag);
          r = await convertImage(root, layout, undefined, { ...flags, log, onProgress: progress.update });
          if (o.format === 'oci-dir') await writeLayoutDir(dst, layout, r.blobs, r.desc);
          else await writeLayoutArchive(dst, layout, r.blobs, r.desc);
        } finally {
          await layout.close();
        }
      } else {
        const from = parseReference(src);
        const to = parseReference(dst);
        if (to.digest || !to.tag) throw new SociError('ERR_USAGE', `destination ${dst} must be a tagged reference (not a digest)`);
        const debug = Boolean(globals(cmd).debug);
        try {
          const source = new RegistryImageSource(registryClient(from.registry, o, debug), from.repository);
          const root = await source.resolve(from);
          r = await convertImage(root, source, undefined, { ...flags, log, onProgress: progress.update });
          await pushImageGraph(r.blobs, r.desc, source, {
            client: registryClient(to.registry, o, debug),
            repo: to.repository,
            tag: to.tag,
            concurrency: o.maxConcurrentUploads,
            log: o.quiet || o.json ? () => {} : info,
          });
        } finally {
          await closeClients();
        }
      }
      if (o.json) {
        printJson({
          digest: r.desc.digest,
          size: r.desc.size,
          destination: dst,
          indexes: r.indexes.map((i) => ({
            platform: i.platform,
            manifest: i.manifest.digest,
            sociIndex: i.index.desc.digest,
            ztocs: i.index.blobs.map((z) => ({ layer: z.layer.digest, digest: z.desc.digest, size: z.desc.size, mediaType: z.desc.mediaType })),
          })),
        });
      } else if (!o.quiet) {
        out(`converted image ${dst}: ${r.desc.digest}`);
      }
    });
}
