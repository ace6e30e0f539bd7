/**
 * `soci push REF`: pushes the most recently created v1 SOCI index per platform of REF (with its zTOCs
 * and the `{}` config) and makes it discoverable as a referrer of the image manifest: through the
 * registry's referrers API when it has one, else the `sha256-<hex>` tag-schema fallback.
 */
import { Command } from 'commander';
import { SociError } from '../errors.js';
import { EMPTY_CONFIG, MT } from '../oci/media-types.js';
import { formatPlatform, hostPlatform, parsePlatform } from '../oci/platform.js';
import { parseReference } from '../oci/reference.js';
import { decodeManifest } from '../oci/types.js';
import { runBounded } from '../soci/index-builder.js';
import { globals, openStore } from './common.js';
import { info, out } from './output.js';
import { addRegistryFlags, closeClients, registryClient, type RegistryFlags } from './registry-opts.js';

const collect = (v: string, prev: string[] = []) => [...prev, v];

type PushFlags = RegistryFlags & { existingIndex: string; maxConcurrentUploads: number; quiet: boolean; platform: string[]; allPlatforms: boolean };

export function pushCommand(): Command {
  return addRegistryFlags(new Command('push'))
    .description('push SOCI artifacts (v1 index + zTOCs) of an image to its registry')
    .argument('<ref>', 'image reference the index was created for')
    .option('--existing-index <mode>', 'when the image already has a SOCI index: warn, skip or allow', 'warn')
    .option('--max-concurrent-uploads <n>', 'parallel blob uploads', (v) => Number(v), 3)
    .option('-q, --quiet', 'print only the pushed index digests', false)
    .option('-p, --platform <platform>', 'platform to push (repeatable)', collect, [])
    .option('--all-platforms', 'push the indexes of all platforms', false)
    .action(async (refStr: string, o: PushFlags, cmd: Command) => {
      if (!['warn', 'skip', 'allow'].includes(o.existingIndex)) throw new SociError('ERR_USAGE', `invalid --existing-index "${o.existingIndex}": use warn, skip or allow`);
      const ref = parseReference(refStr);
      const g = globals(cmd);
      const store = await openStore(g);
      try {
        const all = store.db.list({ type: 'soci_index' }).filter((e) => e.imageRef === refStr || e.imageRef === ref.string());
        const v1 = all.filter((e) => e.artifactType === MT.sociIndexV1);
        if (all.length && !v1.length) throw new SociError('ERR_USAGE', `the indexes of ${refStr} are v2: push the converted image instead (soci convert pushes it)`);
        const wanted = o.allPlatforms ? null : (o.platform.length ? o.platform.map(parsePlatform) : [hostPlatform()]).map(formatPlatform);
        const latest = new Map<string, (typeof v1)[number]>();
        for (const e of v1) if ((!wanted || wanted.includes(e.platform)) && !latest.has(e.platform)) latest.set(e.platform, e);
        if (!latest.size) throw new SociError('ERR_NOT_FOUND', `no SOCI index found for ${refStr}${wanted ? ` (${wanted.join(', ')})` : ''}: not found`);
        const client = registryClient(ref.registry, o, Boolean(g.debug));
        for (const entry of latest.values()) {
          const bytes = await store.content.get(entry.digest);
          const m = decodeManifest(bytes);
          if (!m.subject) throw new SociError('ERR_INVALID_MANIFEST', `index ${entry.digest} has no subject`);
          const existing = (await client.referrers(ref.repository, m.subject.digest, MT.sociIndexV1)).filter((d) => d.digest !== entry.digest);
          if (existing.length) {
            if (o.existingIndex === 'skip') {
              info(`soci index for ${refStr} (${entry.platform}) already exists in the registry (${existing[0]!.digest}); skipping`);
              continue;
            }
            if (o.existingIndex === 'warn') info(`warning: ${refStr} (${entry.platform}) already has a SOCI index in the registry (${existing[0]!.digest}); pushing another`);
          }
          const blobs = [{ digest: EMPTY_CONFIG.digest, size: EMPTY_CONFIG.size }, ...m.layers.map((l) => ({ digest: l.digest, size: l.size }))];
          await runBounded(blobs.length, o.maxConcurrentUploads, async (i) => {
            const b = blobs[i]!;
            const data = b.digest === EMPTY_CONFIG.digest ? EMPTY_CONFIG.bytes : await store.content.get(b.digest);
            await client.pushBlob(ref.repository, b.digest, b.size, data);
          });
          await client.putManifest(ref.repository, entry.digest, bytes, MT.ociManifest);
          const listed = await client.referrers(ref.repository, m.subject.digest, MT.sociIndexV1);
          if (!listed.some((d) => d.digest === entry.digest)) {
            await client.addReferrerFallback(ref.repository, m.subject.digest, {
              mediaType: MT.ociManifest,
              digest: entry.digest,
              size: bytes.length,
              artifactType: MT.sociIndexV1,
              annotations: m.annotations ?? {},
            });
          }
          if (o.quiet) out(entry.digest);
          else out(`pushed soci index ${entry.digest} (${entry.platform}) with ${m.layers.length} ztoc(s) to ${ref.registry}/${ref.repository}`);
        }
      } finally {
        store.close();
        await closeClients();
      }
    });
}
