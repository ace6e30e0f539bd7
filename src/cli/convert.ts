/**
 * `soci convert SRC DST`: a SOCI-enabled (v2) image. Three sources, always chosen explicitly:
 *  - default, as AWS's CLI: SRC is an image in containerd's image store (nerdctl/ctr pulled it). The
 *    zTOCs are built from containerd's content store; the new blobs go to the `--content-store` with
 *    containerd's GC references, and DST becomes an image record, ready for `nerdctl push`.
 *  - `--remote` (ours): SRC and DST are registry references; no containerd, no root. Each layer is
 *    streamed once and digest-checked while indexed, then the new image is pushed.
 *  - `--standalone` (AWS's): SRC and DST are OCI layouts (dir or oci-archive).
 * Every mode records its indexes in the artifacts DB (and the remote and standalone ones keep their
 * artifacts in our store), so `soci index list` and `soci ztoc info` show them.
 */
import { Command } from 'commander';
import { SociError, isSociError } from '../errors.js';
import { formatPlatform } from '../oci/platform.js';
import { parseReference } from '../oci/reference.js';
import { indexBlobs, recordIndex, saveBlobs, ztocCache } from '../soci/artifacts.js';
import { ContainerdImageSource } from '../soci/containerd-source.js';
import { convertImage, type ConvertResult } from '../soci/convert.js';
import { pushImageGraph } from '../soci/push-graph.js';
import { RegistryImageSource } from '../soci/registry-source.js';
import { localBlobs } from '../store/index.js';
import { OciLayout, checkOutputDir, parseLayoutRef, writeLayoutArchive, writeLayoutDir } from '../store/oci-layout.js';
import { addBuildFlags, buildFlagValues, type BuildFlags } from './common.js';
import { findContainerdImage } from './images.js';
import { info, out, printJson } from './output.js';
import { Progress } from './progress.js';
import { addRegistryFlags, closeClients, registryClient, type RegistryFlags } from './registry-opts.js';
import { globals, openSession, type GlobalOpts, type Session } from './session.js';
import { resolve } from 'node:path';
import { type Logger, lineLogger, silentLogger } from '../logger.js';

type ConvertFlags = BuildFlags &
  RegistryFlags & { standalone: boolean; remote: boolean; format: string; json: boolean; quiet: boolean; maxConcurrentUploads: number };
type Flags = ReturnType<typeof buildFlagValues> & { log: Logger; onProgress: Progress['update'] };

export function convertCommand(): Command {
  return addRegistryFlags(addBuildFlags(new Command('convert')))
    .description('convert an image to a SOCI enabled image (SOCI index manifest v2)')
    .argument('<image_ref>', "source image: in containerd's image store; a registry reference with --remote; an OCI layout with --standalone")
    .argument('<dest_ref>', 'destination: a tagged reference, or an output path with --standalone')
    .option('--remote', 'registry to registry: read SRC from its registry and push DST to its registry (no containerd)', false)
    .option('--standalone', 'read an OCI layout (dir or tar) and write a converted layout; no registry, no containerd', false)
    .option('--format <format>', 'standalone output format: oci-archive or oci-dir', 'oci-archive')
    .option('--max-concurrent-uploads <n>', 'parallel blob uploads (--remote)', (v) => Number(v), 3)
    .option('-q, --quiet', 'no progress output', false)
    .option('--json', 'print the result as JSON (ours)', false)
    .action(async (src: string, dst: string, o: ConvertFlags, cmd: Command) => {
      if (o.remote && o.standalone) throw new SociError('ERR_USAGE', 'specify --remote or --standalone, not both');
      if (o.format !== 'oci-archive' && o.format !== 'oci-dir')
        throw new SociError('ERR_USAGE', `unsupported output format "${o.format}": must be "oci-archive" or "oci-dir"`);
      const progress = new Progress(o.quiet || o.json);
      const flags: Flags = { ...buildFlagValues(o), log: o.quiet ? silentLogger : lineLogger(o.json ? info : out), onProgress: progress.update };
      if (!o.standalone) {
        parseReference(src);
        verifyDest(dst);
      }
      const g = globals(cmd);
      let r: ConvertResult;
      if (o.standalone) r = await standalone(g, src, dst, o.format, flags);
      else if (o.remote) r = await remote(g, src, dst, o, flags);
      else {
        const s = await openSession(g);
        try {
          r = await fromContainerd(s, src, dst, flags);
        } finally {
          await s.close();
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
      }
    });
}

/** AWS's rule: a tagged reference, not a digest. */
function verifyDest(dst: string): void {
  const why = (m: string) => new SociError('ERR_USAGE', `the destination image must be a tagged ref of the form "registry/repository:tag": ${m}`);
  if (dst.includes('@')) throw why('reference must not contain a digest');
  const lastSlash = dst.lastIndexOf('/');
  if (!dst.slice(lastSlash + 1).includes(':')) throw why('reference must be tagged');
  parseReference(dst);
}

async function fromContainerd(s: Session, src: string, dst: string, flags: Flags): Promise<ConvertResult> {
  let cd;
  try {
    cd = await s.containerd();
  } catch (e) {
    if (isSociError(e, 'ERR_CONTAINERD'))
      throw new SociError('ERR_CONTAINERD', `${e.message}; without containerd, convert registry to registry with --remote, or OCI layouts with --standalone`);
    throw e;
  }
  const img = await findContainerdImage(cd, src, 'convert registry to registry with --remote');
  // The destination's record name is the normalised one, as nerdctl names the images it pulls.
  const name = parseReference(dst).string();
  const blobs = await s.blobs();
  await s.holdLease();
  const r = await convertImage(img.target, new ContainerdImageSource(cd.content, img.name), ztocCache(s.db, blobs), flags);
  await saveBlobs(blobs, r.blobs);
  // With our content store in use, containerd still gets the graph: DST must be pushable.
  if (s.storeType === 'soci') await saveBlobs(await s.containerdBlobs(), r.blobs);
  await cd.images.put(name, r.desc);
  record(s, r, name, `containerd:${cd.namespace}`);
  return r;
}

async function remote(g: GlobalOpts, src: string, dst: string, o: ConvertFlags, flags: Flags): Promise<ConvertResult> {
  const from = parseReference(src);
  const to = parseReference(dst);
  const debug = Boolean(g.debug);
  const s = await optionalSession(g);
  try {
    const source = new RegistryImageSource(registryClient(from.registry, o, debug), from.repository);
    const root = await source.resolve(from);
    const r = await convertImage(root, source, s ? ztocCache(s.db, localBlobs(s.local.content)) : undefined, flags);
    await pushImageGraph(r.blobs, r.desc, source, {
      client: registryClient(to.registry, o, debug),
      repo: to.repository,
      tag: to.tag!,
      concurrency: o.maxConcurrentUploads,
      log: o.quiet || o.json ? silentLogger : lineLogger(info),
    });
    if (s) await keepLocally(s, r, to.string(), to.string());
    return r;
  } finally {
    await closeClients();
    await s?.close();
  }
}

async function standalone(g: GlobalOpts, src: string, dst: string, format: string, flags: Flags): Promise<ConvertResult> {
  const local = await parseLayoutRef(src);
  if (!local) throw new SociError('ERR_NOT_FOUND', `input ${src} does not exist`);
  await checkOutputDir(dst);
  const layout = await OciLayout.open(local.path);
  try {
    const root = await layout.resolve(local.tag);
    const r = await convertImage(root, layout, undefined, flags);
    if (format === 'oci-dir') await writeLayoutDir(dst, layout, r.blobs, r.desc);
    else await writeLayoutArchive(dst, layout, r.blobs, r.desc);
    const s = await optionalSession(g);
    if (s) {
      try {
        await keepLocally(s, r, dst, resolve(local.path));
      } finally {
        await s.close();
      }
    }
    return r;
  } finally {
    await layout.close();
  }
}

/**
 * Remote and standalone conversions need neither root nor the local store: they record what they
 * built when `--root` can be used by this user, and skip that otherwise.
 */
async function optionalSession(g: GlobalOpts): Promise<Session | undefined> {
  try {
    return await openSession(g);
  } catch (e) {
    if (isSociError(e, 'ERR_IO')) return undefined;
    throw e;
  }
}

/** Remote and standalone results: the SOCI artifacts into our store, and recorded. */
async function keepLocally(s: Session, r: ConvertResult, ref: string, location: string): Promise<void> {
  const ours = localBlobs(s.local.content);
  for (const i of r.indexes) await saveBlobs(ours, indexBlobs(i.index));
  record(s, r, ref, location);
}

function record(s: Session, r: ConvertResult, ref: string, location: string): void {
  for (const i of r.indexes) {
    recordIndex(s.db, i.index, {
      imageRef: ref,
      manifestDigest: i.manifest.digest,
      imageDigest: r.desc.digest,
      platform: formatPlatform(i.platform),
      location,
    });
  }
}
