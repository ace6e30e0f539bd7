/**
 * Which SOCI index serves an image, and its artifacts: for the first layer of an image that
 * containerd prepares, the index is found once per manifest digest (mirrors first, then the
 * registry; cached for the process, like AWS's sociContext) and its zTOCs and prefetch artifacts are
 * fetched in the background. Also the registry clients (http for localhost and insecure mirrors,
 * like AWS's resolver), and the prefetch recorder of an image when recording is on.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { SociError } from '../errors.js';
import type { Logger } from '../logger.js';
import { writeFileAtomic } from '../host/index.js';
import { PrefetchRecorder, encodeRecord } from '../image/prefetch-record.js';
import {
  fetchIndexArtifacts,
  findSociIndex,
  type ArtifactReader,
  type FindSociIndexOptions,
  type FoundSociIndex,
  type SociArtifacts,
} from '../image/discovery.js';
import { isLocalhost, parseReference } from '../oci/reference.js';
import { ContentStore, localBlobs } from '../store/index.js';
import { chainCredentials, defaultCredentials, RegistryHosts, type RegistryClient } from '../registry/index.js';
import { Semaphore } from '../concurrency.js';
import { VERSION } from '../version.js';
import type { CredentialProvider } from '../registry/types.js';
import type { Config } from './config.js';
import { LABELS } from './labels.js';
import { ImageOperationCounter } from './image-metrics.js';
import { daemonRegistryOptions } from './registry-config.js';
import { rangeIgnoredCount } from './metrics.js';

export interface ImageResolverOptions {
  config: Config;
  /** the daemon's root (prefetch records go under it) */
  root: string;
  logger: Logger;
  /** consulted after Docker config (AWS's order): the CRI keychain */
  extraCredentials?: CredentialProvider;
}

export interface Context {
  index: FoundSociIndex;
  /** the zTOCs and prefetch artifacts, still arriving while non-indexed layers unpack */
  artifacts: Promise<Artifacts>;
  repo: string;
  /** FUSE operations of the image, emitted fuse_metrics_emit_wait_duration_sec after it was resolved */
  ops: ImageOperationCounter;
  /** which files the image's start reads, when recording is on for it */
  recorder?: PrefetchRecorder;
}

export interface Artifacts {
  artifacts: SociArtifacts;
  /** the host that served them, which then serves the layers' spans */
  client: RegistryClient;
}

export class ImageResolver {
  private readonly hosts: RegistryHosts;
  /** localhost registries are spoken to over http, like AWS's resolver */
  private readonly localHosts: RegistryHosts;
  private readonly contexts = new Map<string, Promise<Context>>();
  private readonly counters = new Set<ImageOperationCounter>();
  /** AWS's max_concurrency: layers whose zTOCs download at once, across images (0 = no bound) */
  private readonly resolveGate: Semaphore;
  private readonly logger: Logger;

  constructor(private readonly o: ImageResolverOptions) {
    this.logger = o.logger;
    const credentials = o.extraCredentials ? chainCredentials(defaultCredentials(), o.extraCredentials) : defaultCredentials();
    this.resolveGate = new Semaphore(o.config.max_concurrency);
    const net = { ...daemonRegistryOptions(o.config), onRangeIgnored: (i: { registry: string; repo: string; digest: string }) => this.rangeIgnored(i) };
    this.localHosts = new RegistryHosts({ plainHttp: true, credentials, userAgent: `soci-snapshotter/${VERSION}`, ...net });
    const insecure = Object.values(o.config.resolver.host).flatMap((h) => h.mirrors.filter((m) => m.insecure).map((m) => m.host));
    this.hosts = new RegistryHosts({
      // Like AWS's resolver: http for localhost and for mirrors marked insecure.
      plainHttp: [...insecure],
      credentials,
      userAgent: `soci-snapshotter/${VERSION}`,
      ...net,
    });
  }

  client(host: string): RegistryClient {
    return isLocalhost(host) ? this.localHosts.get(host) : this.hosts.get(host);
  }

  private readonly rangeIgnoredBy = new Set<string>();

  /** A registry answered a Range read with the whole blob: counted always, logged once per registry. */
  private rangeIgnored(i: { registry: string; repo: string; digest: string }): void {
    rangeIgnoredCount.inc({ registry: i.registry });
    if (this.rangeIgnoredBy.has(i.registry)) return;
    this.rangeIgnoredBy.add(i.registry);
    this.logger.warn(
      { registry: i.registry, repo: i.repo, digest: i.digest },
      'registry ignores Range requests: every span read downloads the blob up to the span, lazy loading saves nothing there',
    );
  }

  /** A prefetch record of an image's start, written to <root>/prefetch-records/<manifest hex>.json when its window closes. */
  private recorder(image: string, manifest: string): PrefetchRecorder {
    const pr = this.o.config.prefetch_record;
    const dir = join(this.o.root, 'prefetch-records');
    const file = join(dir, `${manifest.replace(/^sha256:/, '')}.json`);
    return new PrefetchRecorder({
      image,
      manifest,
      quietMs: pr.quiet_period_sec * 1000,
      maxMs: pr.max_duration_sec * 1000,
      onDone: (r) => {
        mkdir(dir, { recursive: true, mode: 0o700 })
          .then(() => writeFileAtomic(file, encodeRecord(r), 0o600))
          .then(
            () => this.logger.info({ image, manifest, file, files: r.files.length }, 'prefetch record written'),
            (e: Error) => this.logger.warn({ image, file, error: e.message }, 'cannot write the prefetch record'),
          );
      },
    });
  }

  /**
   * The index of an image, found once per manifest digest (mirrors first, then the registry). Its
   * zTOCs are fetched from then on, concurrently and in the background: containerd prepares the
   * layers one by one, bottom first, and the bottom layers are often too small to be indexed, so
   * their download and unpack overlap the zTOC downloads instead of waiting for them.
   */
  context(labels: Record<string, string>): Promise<Context> {
    const manifestDigest = labels[LABELS.manifestDigest]!;
    let p = this.contexts.get(manifestDigest);
    if (p) {
      // most recently used last: the bound below drops the image used longest ago
      this.contexts.delete(manifestDigest);
      this.contexts.set(manifestDigest, p);
    } else {
      p = (async () => {
        const ref = parseReference(labels[LABELS.imageRef]!);
        const mirrors = this.o.config.resolver.host[ref.registry]?.mirrors.map((m) => m.host) ?? [];
        const explicit = labels[LABELS.indexDigest];
        const pm = this.o.config.pull_modes;
        const store = await this.artifactStore();
        const opts: FindSociIndexOptions = {
          ...(explicit ? { explicitDigest: explicit } : {}),
          store,
          v1: pm.soci_v1.enable,
          v2: pm.soci_v2.enable,
          gate: this.resolveGate,
        };
        const hosts = [...mirrors, ref.registry];
        let last: unknown;
        for (const [i, host] of hosts.entries()) {
          const client = this.client(host);
          try {
            const index = await findSociIndex(client, ref.repository, manifestDigest, opts);
            this.logger.info({ digest: index.desc.digest, host, version: index.version }, 'fetching SOCI artifacts using index descriptor');
            const artifacts = this.artifacts(hosts.slice(i), ref.repository, index, opts);
            artifacts.catch(() => undefined); // observed by mount(); a layer that never asks must not crash the daemon
            const ops: ImageOperationCounter = new ImageOperationCounter(
              manifestDigest,
              this.o.config.fuse_metrics_emit_wait_duration_sec * 1000,
              this.logger,
              () => this.counters.delete(ops),
            );
            this.counters.add(ops);
            const record = this.o.config.prefetch_record.enable || labels[LABELS.prefetchRecord] === 'true';
            return { index, artifacts, repo: ref.repository, ops, ...(record ? { recorder: this.recorder(labels[LABELS.imageRef]!, manifestDigest) } : {}) };
          } catch (e) {
            last = e;
            if (e instanceof SociError && e.code === 'ERR_NO_INDEX') break; // a definite answer, not a host problem
          }
        }
        throw last instanceof SociError && last.code === 'ERR_NO_INDEX'
          ? last
          : new SociError('ERR_NO_INDEX', `no valid SOCI index found for ${manifestDigest}: ${(last as Error)?.message ?? 'unknown error'}`);
      })();
      this.contexts.set(manifestDigest, p);
      // AWS's resolve_result_entry (30 when 0): resolved images kept for later layers of the same image
      const limit = this.o.config.resolve_result_entry > 0 ? this.o.config.resolve_result_entry : 30;
      while (this.contexts.size > limit) this.contexts.delete(this.contexts.keys().next().value!);
    }
    return p;
  }

  private store: Promise<{ reader: ArtifactReader; close: () => void }> | undefined;

  /**
   * Where SOCI artifacts are read before the registry, and kept once fetched: the image manifest,
   * the SOCI index and its zTOCs and prefetch artifacts, all content-addressed and checked against
   * their digests on every read. Like AWS's default ([content_store] type = "soci"), that is our
   * content store under the root, so a restarted daemon fetches none of them again. With type =
   * "containerd", containerd's content store is read first (what `soci convert` or `soci create` put
   * there on this node); it is never written (blobs written outside a lease would be containerd's
   * garbage), so what the registry serves is kept in ours. When containerd cannot be reached, one
   * warning, and the next image tries again.
   */
  private artifactStore(): Promise<ArtifactReader> {
    this.store ??= (async () => {
      const local = localBlobs(await ContentStore.open(join(this.o.root, 'content')));
      const cs = this.o.config.content_store;
      if (cs.type !== 'containerd') return { reader: local, close: () => undefined };
      const { Containerd, containerdBlobs } = await import('../containerd/index.js');
      try {
        const c = await Containerd.connect({ address: cs.containerd_address, namespace: cs.namespace });
        const theirs = containerdBlobs(c.content);
        const reader: ArtifactReader = {
          has: async (d) => (await theirs.has(d)) || local.has(d),
          get: async (d) => ((await theirs.has(d)) ? theirs.get(d) : local.get(d)),
          put: local.put,
        };
        return { reader, close: () => c.close() };
      } catch (e) {
        this.logger.warn(
          { address: cs.containerd_address, error: (e as Error).message },
          "cannot read SOCI artifacts from containerd's content store; fetching them from the registry",
        );
        this.store = undefined;
        return { reader: local, close: () => undefined };
      }
    })();
    return this.store.then((s) => s.reader);
  }

  /** The index's zTOCs and prefetch artifacts from the first host that serves them all. */
  private async artifacts(hosts: string[], repo: string, index: FoundSociIndex, opts: FindSociIndexOptions): Promise<Artifacts> {
    let first: unknown;
    for (const host of hosts) {
      const client = this.client(host);
      try {
        return { artifacts: await fetchIndexArtifacts(client, repo, index, opts), client };
      } catch (e) {
        first ??= e;
      }
    }
    throw first;
  }

  async close(): Promise<void> {
    for (const c of this.counters) c.stop();
    (await this.store)?.close();
    await this.hosts.close();
    await this.localHosts.close();
  }
}
