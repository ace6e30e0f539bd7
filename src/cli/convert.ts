/** `soci convert SRC DST`: a SOCI-enabled (v2) image. `--standalone` works on OCI layouts. */
import { Command } from 'commander';
import { SociError } from '../errors.js';
import { convertImage } from '../soci/convert.js';
import { OciLayout, parseLayoutRef, writeLayoutArchive, writeLayoutDir } from '../store/oci-layout.js';
import { addBuildFlags, buildFlagValues, type BuildFlags } from './common.js';
import { info, out, printJson } from './output.js';

export function convertCommand(): Command {
  return addBuildFlags(new Command('convert'))
    .description('convert an image to a SOCI-enabled image (SOCI index manifest v2)')
    .argument('<image_ref>', 'source: OCI layout dir / oci-archive with --standalone')
    .argument('<dest_ref>', 'destination: path with --standalone')
    .option('--standalone', 'read an OCI layout (dir or tar) and write a converted layout; no containerd', false)
    .option('--format <format>', 'standalone output format: oci-archive or oci-dir', 'oci-archive')
    .option('--json', 'print the result as JSON', false)
    .action(async (src: string, dst: string, o: BuildFlags & { standalone: boolean; format: string; json: boolean }) => {
      const flags = buildFlagValues(o);
      if (!o.standalone) throw new SociError('ERR_USAGE', 'registry conversion is not available in this build yet; use --standalone with OCI layouts');
      if (o.format !== 'oci-archive' && o.format !== 'oci-dir') throw new SociError('ERR_USAGE', `invalid --format "${o.format}": use oci-archive or oci-dir`);
      const local = await parseLayoutRef(src);
      if (!local) throw new SociError('ERR_NOT_FOUND', `input ${src} does not exist`);
      const layout = await OciLayout.open(local.path);
      try {
        const root = await layout.resolve(local.tag);
        const r = await convertImage(root, layout, undefined, { ...flags, log: o.json ? info : out });
        if (o.format === 'oci-dir') await writeLayoutDir(dst, layout, r.blobs, r.desc);
        else await writeLayoutArchive(dst, layout, r.blobs, r.desc);
        if (o.json) {
          printJson({
            digest: r.desc.digest,
            size: r.desc.size,
            output: dst,
            format: o.format,
            indexes: r.indexes.map((i) => ({
              platform: i.platform,
              manifest: i.manifest.digest,
              sociIndex: i.index.desc.digest,
              ztocs: i.index.blobs.map((z) => ({ layer: z.layer.digest, digest: z.desc.digest, size: z.desc.size, mediaType: z.desc.mediaType })),
            })),
          });
        } else {
          out(`converted image index ${r.desc.digest} written to ${dst} (${o.format})`);
        }
      } finally {
        await layout.close();
      }
    });
}
