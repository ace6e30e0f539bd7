/**
 * What a command works on, from AWS's global flags: the artifacts DB under `--root`, the content
 * store that `--content-store` names (`containerd`, AWS's default, or `soci`: ours under --root),
 * and a containerd connection (`-a/--address`, `-n/--namespace`, `--timeout`) made on first use.
 *
 * Artifacts are read from the store in use and then from ours, so what a registry or standalone
 * conversion recorded (always kept in our store) stays readable in either mode.
 */
import type { Command } from 'commander';
import type { Containerd } from '../containerd/index.js';
import { DEFAULT_ADDRESS, DEFAULT_NAMESPACE } from '../containerd/defaults.js';
import { SociError, isSociError } from '../errors.js';
import { localBlobs, openLocalStore, resolveRoot, DB_NAME, AWS_DB_NAME, type ArtifactBlobs, type ArtifactsDb, type LocalStore } from '../store/index.js';
import { parseGoDuration } from './duration.js';
import { info } from './output.js';
import { onInterrupt } from './interrupt.js';

export type ContentStoreType = 'containerd' | 'soci';

export interface GlobalOpts {
  root?: string;
  contentStore?: string;
  debug?: boolean;
  namespace?: string;
  address?: string;
  timeout?: string;
}

export interface Session {
  readonly storeType: ContentStoreType;
  readonly local: LocalStore;
  readonly db: ArtifactsDb;
  /** containerd, connected on first use (one-line errors when it is not there) */
  containerd(): Promise<Containerd>;
  /** the content store in use */
  blobs(): Promise<ArtifactBlobs>;
  /** containerd's content store, whichever store is in use */
  containerdBlobs(): Promise<ArtifactBlobs>;
  /** a blob from the store in use, else from ours */
  readArtifact(digest: string): Promise<Buffer>;
  /** takes a containerd lease for the writes that follow; Ctrl-C releases it too */
  holdLease(): Promise<void>;
  close(): Promise<void>;
}

export function globals(cmd: Command): GlobalOpts {
  return cmd.optsWithGlobals() as GlobalOpts;
}

export function contentStoreType(v: string | undefined): ContentStoreType {
  const t = v || 'containerd';
  if (t !== 'containerd' && t !== 'soci') throw new SociError('ERR_USAGE', `unknown content store type: ${t}; must be one of [soci containerd]`);
  return t;
}

export async function openSession(g: GlobalOpts): Promise<Session> {
  const storeType = contentStoreType(g.contentStore);
  const timeoutMs = g.timeout ? parseGoDuration('timeout', g.timeout) : 0;
  const deadline = timeoutMs > 0 ? new Date(Date.now() + timeoutMs) : undefined;
  const root = resolveRoot(g.root);
  const local = await openLocalStore(root);
  if (local.besideAwsDb) {
    info(
      `soci: note: ${root}/${AWS_DB_NAME} is AWS soci's database and is left alone; this soci keeps its own (${root}/${DB_NAME}): "soci rebuild-db" lists what is already in the content store`,
    );
  }
  let cd: Promise<Containerd> | undefined;
  let unhook: (() => void) | undefined;
  // Loaded on first use: commands that never talk to containerd do not load gRPC.
  const containerd = () =>
    (cd ??= import('../containerd/index.js').then(({ Containerd }) =>
      Containerd.connect({
        address: g.address || process.env.CONTAINERD_ADDRESS || DEFAULT_ADDRESS,
        namespace: g.namespace || process.env.CONTAINERD_NAMESPACE || DEFAULT_NAMESPACE,
        ...(deadline ? { deadline } : {}),
      }),
    ));
  const ours = localBlobs(local.content);
  let theirs: Promise<ArtifactBlobs> | undefined;
  const containerdStore = () => (theirs ??= Promise.all([containerd(), import('../containerd/index.js')]).then(([c, m]) => m.containerdBlobs(c.content)));
  const blobs = () => (storeType === 'soci' ? Promise.resolve(ours) : containerdStore());
  return {
    storeType,
    local,
    db: local.db,
    containerd,
    blobs,
    containerdBlobs: containerdStore,
    async readArtifact(digest) {
      if (storeType === 'containerd') {
        try {
          return await (await blobs()).get(digest);
        } catch (e) {
          if (!isSociError(e, 'ERR_NOT_FOUND') && !isSociError(e, 'ERR_CONTAINERD')) throw e;
          if (!(await ours.has(digest))) throw e;
        }
      }
      return ours.get(digest);
    },
    async holdLease() {
      const c = await containerd();
      await c.holdLease();
      unhook ??= onInterrupt(() => c.releaseLease());
    },
    async close() {
      unhook?.();
      const c = cd ? await cd.catch(() => undefined) : undefined;
      if (c) {
        await c.releaseLease().catch(() => {});
        c.close();
      }
      local.close();
    },
  };
}
