/** `soci ztoc list|info|get-file`. */
import { Command } from 'commander';
import { createReadStream, createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { SociError } from '../errors.js';
import { parseDigest } from '../oci/digest.js';
import { OciLayout } from '../store/oci-layout.js';
import { extractFile, findEntry, unmarshalZtoc, ztocInfo } from '../ztoc/index.js';
import { globals, openStore } from './common.js';
import { parseReference } from '../oci/reference.js';
import { addRegistryFlags, closeClients, registryClient, type RegistryFlags } from './registry-opts.js';
import { out, printJson, table } from './output.js';

export function ztocCommand(): Command {
  const cmd = new Command('ztoc').description('inspect zTOCs');
  cmd
    .command('list')
    .alias('ls')
    .description('list zTOCs')
    .option('--ztoc-digest <digest>', 'only this zTOC')
    .option('--image-ref <ref>', 'only zTOCs of this image reference')
    .option('-q, --quiet', 'print only digests', false)
    .option('--json', 'JSON output', false)
    .action(async (o: { ztocDigest?: string; imageRef?: string; quiet: boolean; json: boolean }, c: Command) => {
      const store = await openStore(globals(c));
      try {
        const seen = new Set<string>();
        const rows = store.db.list({ type: 'soci_layer', digest: o.ztocDigest, imageRef: o.imageRef }).filter((e) => !seen.has(e.digest) && seen.add(e.digest));
        if (o.json) return printJson(rows.map((r) => ({ digest: r.digest, size: r.size, layerDigest: r.originalDigest, spanSize: r.spanSize })));
        if (o.quiet) return out(rows.map((r) => r.digest).join('\n'));
        out(table(['DIGEST', 'SIZE', 'LAYER DIGEST'], rows.map((r) => [r.digest, String(r.size), r.originalDigest])));
      } finally {
        store.close();
      }
    });
  cmd
    .command('info')
    .description('print a zTOC as JSON (files, offsets, spans)')
    .argument('<digest>')
    .action(async (digest: string, _o: unknown, c: Command) => {
      parseDigest(digest);
      const store = await openStore(globals(c));
      try {
        const bytes = await store.content.get(digest).catch(() => {
          throw new SociError('ERR_NOT_FOUND', `ztoc ${digest} not found`);
        });
        printJson(ztocInfo(unmarshalZtoc(bytes), { digest, size: bytes.length }));
      } finally {
        store.close();
      }
    });
  addRegistryFlags(cmd
    .command('get-file'))
    .description('extract a file from a layer through its zTOC')
    .argument('<digest>', 'zTOC digest')
    .argument('<file>', 'path inside the layer')
    .option('-o, --output <file>', 'write to this file instead of stdout')
    .action(async (digest: string, file: string, o: RegistryFlags & { output?: string }, c: Command) => {
      parseDigest(digest);
      const store = await openStore(globals(c));
      try {
        const entry = store.db.list({ type: 'soci_layer', digest })[0];
        if (!entry) throw new SociError('ERR_NOT_FOUND', `ztoc ${digest} not found`);
        const ztoc = unmarshalZtoc(await store.content.get(digest));
        const meta = findEntry(ztoc, file);
        if (!meta) throw new SociError('ERR_NOT_FOUND', `file ${file} not found in ztoc ${digest}`);
        const read = await layerReader(store.content, entry.originalDigest, entry.location, o, Boolean(globals(c).debug));
        try {
          const data = await extractFile(ztoc, meta, read.read);
          if (o.output) {
            const tmp = `${o.output}.tmp-${process.pid}`;
            await new Promise<void>((res, rej) => createWriteStream(tmp).on('error', rej).end(data, res));
            await rename(tmp, o.output).catch(async (e) => {
              await rm(tmp, { force: true });
              throw e;
            });
          } else {
            process.stdout.write(data);
            process.stdout.write('\n');
          }
        } finally {
          await read.close();
        }
      } finally {
        store.close();
      }
    });
  return cmd;
}

/** Random access to a layer blob: our content store first, else the layout it was indexed from. */
async function layerReader(
  content: { has(d: string): Promise<boolean>; open(d: string, s?: number, e?: number): NodeJS.ReadableStream },
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
  if (await content.has(layerDigest)) {
    return { read: (s, e) => collect(content.open(layerDigest, s, e)), close: async () => {} };
  }
  if (!location) throw new SociError('ERR_NOT_FOUND', `layer ${layerDigest} is not available locally`);
  if (!location.startsWith('/')) {
    // Indexed from a registry: fetch the needed byte ranges (span digests are checked by extraction callers).
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
