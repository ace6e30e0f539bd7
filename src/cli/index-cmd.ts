/**
 * `soci index list|info|rm` over the artifacts DB and the content store in use, with AWS's output:
 * the list's IMAGE REF comes from containerd's image records that point at the index's image (the
 * recorded reference when containerd has none), CREATED reads `3m2s ago`, and `rm` is silent.
 */
import { Command } from 'commander';
import { SociError, isSociError } from '../errors.js';
import { parseDigest } from '../oci/digest.js';
import { formatPlatform, parsePlatform } from '../oci/platform.js';
import { MT } from '../oci/media-types.js';
import { decodeManifest } from '../oci/types.js';
import type { ArtifactEntry } from '../store/index.js';
import { ago } from './duration.js';
import { imageManifestDigests } from './images.js';
import { out, printJson, table } from './output.js';
import { globals, openSession, type Session } from './session.js';

const collect = (v: string, prev: string[] = []) => [...prev, v];

export function indexCommand(): Command {
  const cmd = new Command('index').description('manage indices');
  cmd
    .command('list')
    .alias('ls')
    .description('list indices')
    .option('--ref <ref>', 'filter indices to those that are associated with a specific image ref')
    .option('-q, --quiet', 'only display the index digests', false)
    .option('-p, --platform <platform>', 'filter indices to a specific platform', collect, [])
    .option('--json', 'JSON output (ours)', false)
    .action(async (o: { ref?: string; quiet: boolean; platform: string[]; json: boolean }, c: Command) => {
      const s = await openSession(globals(c));
      try {
        const want = o.platform.map((p) => formatPlatform(parsePlatform(p)));
        let rows = s.db.list({ type: 'soci_index' });
        if (o.ref) {
          const manifests = await imageManifestDigests(s, o.ref, o.platform.map(parsePlatform));
          rows = rows.filter((e) => (manifests ? manifests.includes(e.originalDigest) : e.imageRef === o.ref));
        } else if (want.length) {
          rows = rows.filter((e) => want.includes(e.platform));
        }
        if (o.quiet) {
          for (const r of rows) out(r.digest);
          return;
        }
        const named = await withImageNames(s, rows);
        if (o.json) return printJson(named.map(({ entry, name }) => ({ ...entry, imageRef: name })));
        out(
          table(
            ['DIGEST', 'SIZE', 'IMAGE REF', 'PLATFORM', 'MEDIA TYPE', 'MANIFEST VERSION', 'CREATED'],
            named.map(({ entry: r, name }) => [r.digest, String(r.size), name, r.platform, r.mediaType, version(r), ago(r.createdAt)]),
          ),
        );
      } finally {
        await s.close();
      }
    });
  cmd
    .command('info')
    .description('display an index')
    .argument('<digest>')
    .action(async (digest: string, _o: unknown, c: Command) => {
      parseDigest(digest);
      const s = await openSession(globals(c));
      try {
        const entries = s.db.list({ digest });
        if (!entries.length) throw new SociError('ERR_NOT_FOUND', `soci index ${digest} not found (try "soci rebuild-db" first)`);
        if (!entries.some((e) => e.type === 'soci_index'))
          throw new SociError('ERR_USAGE', 'the provided digest is of ztoc not SOCI index. Use "soci ztoc info" command to get detailed info of ztoc');
        const bytes = await s.readArtifact(digest);
        decodeManifest(bytes, `soci index ${digest}`);
        out(JSON.stringify(JSON.parse(bytes.toString('utf8')), null, 2));
      } finally {
        await s.close();
      }
    });
  cmd
    .command('remove')
    .alias('rm')
    .description('remove indices')
    .argument('[digests...]')
    .option('--ref <ref>', 'only remove indices that are associated with a specific image ref')
    .action(async (digests: string[], o: { ref?: string }, c: Command) => {
      if (o.ref && digests.length) throw new SociError('ERR_USAGE', 'please provide either index digests or image ref, but not both');
      digests.forEach(parseDigest);
      const s = await openSession(globals(c));
      try {
        let targets = digests;
        if (o.ref) {
          const manifests = await imageManifestDigests(s, o.ref, []);
          targets = s.db
            .list({ type: 'soci_index' })
            .filter((e) => (manifests ? manifests.includes(e.originalDigest) : e.imageRef === o.ref))
            .map((e) => e.digest);
        }
        await removeIndexes(s, targets);
      } finally {
        await s.close();
      }
    });
  return cmd;
}

function version(e: ArtifactEntry): string {
  return e.artifactType === MT.sociIndexV2 ? 'v2' : e.artifactType === MT.sociIndexV1 ? 'v1' : '';
}

/** One row per containerd image whose target is the index's image; else the recorded reference. */
async function withImageNames(s: Session, rows: ArtifactEntry[]): Promise<Array<{ entry: ArtifactEntry; name: string }>> {
  const cd = rows.length ? await s.containerd().catch(() => undefined) : undefined;
  const out: Array<{ entry: ArtifactEntry; name: string }> = [];
  const cache = new Map<string, string[]>();
  for (const entry of rows) {
    let names = cache.get(entry.imageDigest);
    if (!names) {
      names = cd && entry.imageDigest ? (await cd.images.list([`target.digest==${entry.imageDigest}`]).catch(() => [])).map((i) => i.name) : [];
      cache.set(entry.imageDigest, names);
    }
    if (names.length) for (const name of names) out.push({ entry, name });
    else out.push({ entry, name: entry.imageRef });
  }
  return out;
}

/**
 * Removes indexes from the DB and the content store. Content that is already gone (containerd
 * collected it after `nerdctl rmi`) is not an error: the goal, no such index, holds. zTOCs and
 * prefetch artifacts go too when no remaining index lists them.
 */
async function removeIndexes(s: Session, digests: string[]): Promise<void> {
  for (const d of digests) {
    if (!s.db.list({ type: 'soci_index', digest: d }).length) throw new SociError('ERR_NOT_FOUND', `soci index ${d} not found`);
  }
  const blobs = await s.blobs();
  const layersOf = async (d: string) => {
    try {
      return decodeManifest(await s.readArtifact(d)).layers.map((l) => l.digest);
    } catch (e) {
      if (isSociError(e, 'ERR_NOT_FOUND') || isSociError(e, 'ERR_INVALID_MANIFEST')) return [];
      throw e;
    }
  };
  const candidates = new Set<string>();
  for (const d of digests) {
    for (const l of await layersOf(d)) candidates.add(l);
    for (const e of s.db.list({ digest: d, type: 'soci_index' }))
      for (const z of s.db.list({ imageDigest: e.imageDigest })) if (z.type !== 'soci_index') candidates.add(z.digest);
  }
  for (const d of digests) {
    s.db.remove(d, 'soci_index');
    await blobs.delete(d);
    await s.local.content.delete(d);
  }
  const remaining = s.db.list({ type: 'soci_index' });
  for (const other of remaining) for (const l of await layersOf(other.digest)) candidates.delete(l);
  // In containerd's store, unreferenced zTOCs are its garbage collector's to remove: another image's
  // index may list the same zTOC (they are shared per layer).
  for (const digest of candidates) {
    s.db.remove(digest);
    await s.local.content.delete(digest);
  }
}
