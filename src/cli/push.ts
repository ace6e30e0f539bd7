/**
 * `soci push REF`: pushes the most recently created v1 SOCI index per platform of REF (with its zTOCs
 * and the `{}` config) and makes it discoverable as a referrer of the image manifest: through the
 * registry's referrers API when it has one, else the `sha256-<hex>` tag-schema fallback.
 */
import { Command } from 'commander';
import { SociError } from '../errors.js';
import { EMPTY_CONFIG, MT } from '../oci/media-types.js';
import { formatPlatform, parsePlatform } from '../oci/platform.js';
import { wantedPlatforms } from '../oci/select.js';
import { parseReference } from '../oci/reference.js';
import { decodeManifest } from '../oci/types.js';
import { runBounded } from '../concurrency.js';
import { globals, openSession } from './session.js';
import { imageManifestDigests } from './images.js';
import { out } from './output.js';
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
    .option('--snapshotter <name>', "snapshotter name (accepted as by AWS's CLI; the push does not use it)", process.env.CONTAINERD_SNAPSHOTTER)
    .action(async (refStr: string, o: PushFlags, cmd: Command) => {
      if (!['warn', 'skip', 'allow'].includes(o.existingIndex))
        throw new SociError('ERR_USAGE', `unexpected value for flag existing-index: ${o.existingIndex}, expected types [warn skip allow]`);
      const ref = parseReference(refStr);
      const g = globals(cmd);
      const say = o.quiet ? () => {} : out;
      const s = await openSession(g);
      try {
        const wanted = o.allPlatforms ? [] : wantedPlatforms(o.platform.map(parsePlatform));
        const manifests = await imageManifestDigests(s, refStr, wanted);
        const all = s.db
          .list({ type: 'soci_index' })
          .filter((e) => (manifests ? manifests.includes(e.originalDigest) : e.imageRef === refStr || e.imageRef === ref.string()));
        const v1 = all.filter((e) => e.artifactType === MT.sociIndexV1);
        if (v1.length < all.length)
          out('[WARN] Skippping SOCI index manifest v2. You should push the whole image with higher level tools like finch or nerdctl.');
        const platforms = manifests ? null : wanted.map(formatPlatform);
        const latest = new Map<string, (typeof v1)[number]>();
        for (const e of v1) if ((!platforms?.length || platforms.includes(e.platform)) && !latest.has(e.originalDigest)) latest.set(e.originalDigest, e);
        if (!latest.size)
          throw new SociError(
            'ERR_NOT_FOUND',
            `could not find any soci index manifest v1 to push for ${refStr}${wanted.length ? ` (platform ${wanted.map(formatPlatform).join(', ')})` : ''}`,
          );
        const client = registryClient(ref.registry, o, Boolean(g.debug));
        for (const entry of latest.values()) {
          const bytes = await s.readArtifact(entry.digest);
          const m = decodeManifest(bytes);
          if (!m.subject) throw new SociError('ERR_INVALID_MANIFEST', `index ${entry.digest} has no subject`);
          if (o.existingIndex !== 'allow') {
            say('checking if a soci index already exists in remote repository...');
            const existing = (await client.referrers(ref.repository, m.subject.digest, MT.sociIndexV1)).filter((d) => d.digest !== entry.digest);
            if (existing.length) {
              const found =
                existing.length > 1
                  ? 'multiple soci indices found in remote repository'
                  : `soci index found in remote repository with digest: ${existing[0]!.digest}`;
              if (o.existingIndex === 'skip') {
                say(`${found}: skipping pushing artifacts for image manifest: ${m.subject.digest}`);
                continue;
              }
              out(`[WARN] ${found}: pushing index anyway`);
            }
          }
          if (o.quiet) out(entry.digest);
          else out(`pushing soci index with digest: ${entry.digest}`);
          const blobs = [{ digest: EMPTY_CONFIG.digest, size: EMPTY_CONFIG.size }, ...m.layers.map((l) => ({ digest: l.digest, size: l.size }))];
          await runBounded(blobs.length, o.maxConcurrentUploads || 3, async (i) => {
            const b = blobs[i]!;
            say(`pushing artifact with digest: ${b.digest}`);
            const data = b.digest === EMPTY_CONFIG.digest ? Buffer.from(EMPTY_CONFIG.bytes) : await s.readArtifact(b.digest);
            const how = await client.pushBlob(ref.repository, b.digest, b.size, data);
            say(how === 'exists' ? `skipped artifact with digest: ${b.digest}` : `successfully pushed artifact with digest: ${b.digest}`);
          });
          say(`pushing artifact with digest: ${entry.digest}`);
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
          say(`successfully pushed artifact with digest: ${entry.digest}`);
        }
      } finally {
        await s.close();
        await closeClients();
      }
    });
}
