/** `soci index list|info|rm` over the local artifacts DB and content store. */
import { Command } from 'commander';
import { SociError } from '../errors.js';
import { parseDigest } from '../oci/digest.js';
import { formatPlatform, parsePlatform } from '../oci/platform.js';
import { MT } from '../oci/media-types.js';
import { decodeManifest } from '../oci/types.js';
import { globals, openStore } from './common.js';
import { out, printJson, table } from './output.js';

const collect = (v: string, prev: string[] = []) => [...prev, v];

export function indexCommand(): Command {
  const cmd = new Command('index').description('manage SOCI indexes');
  cmd
    .command('list')
    .alias('ls')
    .description('list SOCI indexes')
    .option('--ref <ref>', 'only indexes of this image reference')
    .option('-q, --quiet', 'print only digests', false)
    .option('-p, --platform <platform>', 'only this platform (repeatable)', collect, [])
    .option('--json', 'JSON output', false)
    .action(async (o: { ref?: string; quiet: boolean; platform: string[]; json: boolean }, c: Command) => {
      const store = await openStore(globals(c));
      try {
        const want = o.platform.map((p) => formatPlatform(parsePlatform(p)));
        const rows = store.db.list({ type: 'soci_index', imageRef: o.ref }).filter((e) => !want.length || want.includes(e.platform));
        if (o.json) return printJson(rows);
        if (o.quiet) return out(rows.map((r) => r.digest).join('\n'));
        out(
          table(
            ['DIGEST', 'SIZE', 'IMAGE REF', 'PLATFORM', 'MEDIA TYPE', 'MANIFEST VERSION', 'CREATED'],
            rows.map((r) => [r.digest, String(r.size), r.imageRef, r.platform, r.mediaType, r.artifactType === MT.sociIndexV2 ? 'v2' : 'v1', r.createdAt]),
          ),
        );
      } finally {
        store.close();
      }
    });
  cmd
    .command('info')
    .description('print a SOCI index manifest')
    .argument('<digest>')
    .action(async (digest: string, _o: unknown, c: Command) => {
      parseDigest(digest);
      const store = await openStore(globals(c));
      try {
        const entries = store.db.list({ digest });
        if (entries.some((e) => e.type === 'soci_layer')) throw new SociError('ERR_USAGE', `the provided digest ${digest} belongs to a ztoc; use "soci ztoc info"`);
        if (!entries.some((e) => e.type === 'soci_index')) throw new SociError('ERR_NOT_FOUND', `soci index ${digest} not found`);
        const bytes = await store.content.get(digest);
        decodeManifest(bytes, `soci index ${digest}`);
        out(JSON.stringify(JSON.parse(bytes.toString('utf8')), null, 2));
      } finally {
        store.close();
      }
    });
  cmd
    .command('remove')
    .alias('rm')
    .description('remove SOCI indexes (and zTOCs no other index uses)')
    .argument('[digests...]')
    .option('--ref <ref>', 'remove all indexes of this image reference')
    .action(async (digests: string[], o: { ref?: string }, c: Command) => {
      if (o.ref && digests.length) throw new SociError('ERR_USAGE', 'specify digests or --ref, not both');
      if (!o.ref && !digests.length) throw new SociError('ERR_USAGE', 'specify the digests to remove or --ref');
      digests.forEach(parseDigest);
      const store = await openStore(globals(c));
      try {
        const targets = o.ref ? store.db.list({ type: 'soci_index', imageRef: o.ref }).map((e) => e.digest) : digests;
        for (const d of targets) {
          if (!store.db.list({ type: 'soci_index', digest: d }).length) throw new SociError('ERR_NOT_FOUND', `soci index ${d} not found`);
        }
        const orphanCandidates = new Set<string>();
        for (const d of targets) {
          const manifest = await store.content.get(d).then((b) => decodeManifest(b), () => null);
          manifest?.layers.forEach((l) => orphanCandidates.add(l.digest));
          store.db.remove(d, 'soci_index');
          await store.content.delete(d);
          out(d);
        }
        // zTOCs and prefetch blobs stay while an index that is left still lists them.
        for (const other of store.db.list({ type: 'soci_index' })) {
          const m = await store.content.get(other.digest).then((b) => decodeManifest(b), () => null);
          m?.layers.forEach((l) => orphanCandidates.delete(l.digest));
        }
        for (const digest of orphanCandidates) {
          store.db.remove(digest);
          await store.content.delete(digest);
        }
      } finally {
        store.close();
      }
    });
  return cmd;
}
