/** `soci ztoc list|info|get-file`. */
import { Command } from 'commander';
import { createReadStream } from 'node:fs';
import { writeFileAtomic } from '../host/index.js';
import { SociError } from '../errors.js';
import { parseDigest } from '../oci/digest.js';
import { OciLayout } from '../store/oci-layout.js';
import { findEntry, unmarshalZtoc, ztocInfo } from '../ztoc/index.js';
import { readFileVerified } from '../ztoc/read-file.js';
import { globals, openSession, type Session } from './session.js';
import { parseReference } from '../oci/reference.js';
import { addRegistryFlags, closeClients, registryClient, type RegistryFlags } from './registry-opts.js';
import { out, printJson, table } from './output.js';
import { imageManifestDigests } from './images.js';
import { MT } from '../oci/media-types.js';
import { decodeManifest } from '../oci/types.js';

export function ztocCommand(): Command {
  const cmd = new Command('ztoc').description('inspect zTOCs');
  cmd
    .command('list')
    .alias('ls')
    .description('list ztocs')
    .option('--ztoc-digest <digest>', 'filter ztocs by digest')
    .option('--image-ref <ref>', 'filter ztocs to those that are associated with a specific image')
    .option('-q, --quiet', 'only display the ztoc digests', false)
    .option('--json', 'JSON output (ours)', false)
    .action(async (o: { ztocDigest?: string; imageRef?: string; quiet: boolean; json: boolean }, c: Command) => {
      const s = await openSession(globals(c));
      try {
        let rows = s.db.list({ type: 'soci_layer', ...(o.ztocDigest ? { digest: o.ztocDigest } : {}) });
        if (o.imageRef) {
          const ztocs = await ztocsOfImage(s, o.imageRef);
          rows = rows.filter((e) => (ztocs ? ztocs.has(e.digest) : e.imageRef === o.imageRef));
          if (o.ztocDigest && !rows.length)
            throw new SociError('ERR_NOT_FOUND', "the specified ztoc doesn't exist or is not associated with the specified image");
        }
        const seen = new Set<string>();
        rows = rows.filter((e) => !seen.has(e.digest) && seen.add(e.digest));
        if (o.json) return printJson(rows.map((r) => ({ digest: r.digest, size: r.size, layerDigest: r.originalDigest, spanSize: r.spanSize })));
        if (o.quiet) {
          for (const r of rows) out(r.digest);
          return;
        }
        out(
          table(
            ['DIGEST', 'SIZE', 'LAYER DIGEST'],
            rows.map((r) => [r.digest, String(r.size), r.originalDigest]),
          ),
        );
      } finally {
        await s.close();
      }
    });
  cmd
    .command('info')
    .description('print a zTOC as JSON (files, offsets, spans)')
    .argument('<digest>')
    .action(async (digest: string, _o: unknown, c: Command) => {
      parseDigest(digest);
      const s = await openSession(globals(c));
      try {
        const entries = s.db.list({ digest });
        if (!entries.length) throw new SociError('ERR_NOT_FOUND', `ztoc ${digest} not found (try "soci rebuild-db" first)`);
        if (entries.every((e) => e.type === 'soci_index'))
          throw new SociError('ERR_USAGE', 'the provided digest belongs to a SOCI index. Use `soci index info` to get the detailed information about it');
        const bytes = await s.readArtifact(digest);
        printJson(ztocInfo(unmarshalZtoc(bytes), { digest, size: bytes.length }));
      } finally {
        await s.close();
      }
    });
  addRegistryFlags(cmd.command('get-file'))
    .description('extract a file from a layer through its zTOC')
    .argument('<digest>', 'zTOC digest')
    .argument('<file>', 'path inside the layer')
    .option('-o, --output <file>', 'write to this file instead of stdout')
    .action(async (digest: string, file: string, o: RegistryFlags & { output?: string }, c: Command) => {
      parseDigest(digest);
      const s = await openSession(globals(c));
      try {
        const entry = s.db.list({ type: 'soci_layer', digest })[0];
        if (!entry) throw new SociError('ERR_NOT_FOUND', `ztoc ${digest} not found`);
        const ztoc = unmarshalZtoc(await s.readArtifact(digest));
        if (!findEntry(ztoc, file)) throw new SociError('ERR_NOT_FOUND', `file ${file} not found in ztoc ${digest}`);
        const read = await layerReader(s, entry.originalDigest, entry.location, o, Boolean(globals(c).debug));
        try {
          const data = await readFileVerified(ztoc, file, read.read, entry.originalDigest);
          if (o.output) {
            await writeFileAtomic(o.output, data);
          } else {
            process.stdout.write(data);
            process.stdout.write('\n');
          }
        } finally {
          await read.close();
        }
      } finally {
        await s.close();
      }
    });
  return cmd;
}

/**
 * Random access to a layer blob: containerd's content store (where AWS's CLI reads it), then ours,
 * then the layout or registry it was indexed from.
 */
async function layerReader(
  s: Session,
  layerDigest: string,
  location: string,
  flags: RegistryFlags,
  debug: boolean,
): Promise<{ read: (start: number, end: number) => Promise<Buffer>; close: () => Promise<void> }> {
  const collect = async (s: NodeJS.ReadableStream) => {
    const parts: Buffer[] = [];
    for await (const c of s as AsyncIterable<Buffer>) parts.push(c);
    return Buffer.concat(parts);
  };
  const cd = await s.containerd().catch(() => undefined);
  if (cd && (await cd.content.stat(layerDigest).catch(() => undefined))) {
    return { read: (a, b) => cd.content.readRange(layerDigest, a, b), close: async () => {} };
  }
  const content = s.local.content;
  if (await content.has(layerDigest)) {
    return { read: (a, b) => collect(content.open(layerDigest, a, b)), close: async () => {} };
  }
  if (!location) throw new SociError('ERR_NOT_FOUND', `layer ${layerDigest} is not available locally`);
  if (location.startsWith('containerd:'))
    throw new SociError('ERR_NOT_FOUND', `layer ${layerDigest} is no longer in containerd's content store: pull the image again`);
  if (!location.startsWith('/')) {
    // Indexed from a registry: fetch the needed byte ranges (every span is verified before use).
    const ref = parseReference(location);
    const client = registryClient(ref.registry, flags, debug);
    return { read: (s, e) => client.fetchBlobRange(ref.repository, layerDigest, s, e), close: closeClients };
  }
  const layout = await OciLayout.open(location).catch(() => {
    throw new SociError('ERR_NOT_FOUND', `layer ${layerDigest}: its source ${location} is no longer available`);
  });
  if (!(await layout.hasBlob(layerDigest))) {
    await layout.close();
    throw new SociError('ERR_NOT_FOUND', `layer ${layerDigest} not found in ${location}`);
  }
  return {
    read: (s, e) => collect(createReadStream(layout.blobPath(layerDigest), { start: s, end: e - 1 })),
    close: () => layout.close(),
  };
}

/** The zTOCs of a containerd image's SOCI indexes, or undefined when containerd does not have it. */
async function ztocsOfImage(s: Session, ref: string): Promise<Set<string> | undefined> {
  const manifests = await imageManifestDigests(s, ref, []);
  if (!manifests) return undefined;
  const ztocs = new Set<string>();
  for (const idx of s.db.list({ type: 'soci_index' }).filter((e) => manifests.includes(e.originalDigest))) {
    const bytes = await s.readArtifact(idx.digest).catch(() => undefined);
    if (!bytes) continue;
    for (const l of decodeManifest(bytes).layers) if (l.mediaType === MT.ztoc) ztocs.add(l.digest);
  }
  return ztocs;
}
