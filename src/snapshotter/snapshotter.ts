/**
 * The snapshotter: containerd overlayfs-snapshotter semantics over MetaStore + directories, plus
 * the remote-snapshot protocol through a pluggable LayerMounter / LocalUnpacker.
 */
import { LABELS, REMOTE_SNAPSHOT } from './labels.js';
import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { isSociError } from '../errors.js';
import { alreadyExists, failedPrecondition, SnapshotError } from './errors.js';
import { compileFilters } from './filters.js';
import type { LayerMounter, LocalUnpacker, MountContext } from './layer-mounter.js';
import type { Logger } from './logger.js';
import { MetaStore, type Info, type Snapshot } from './metastore.js';
import { FUSE_MOUNT_FAILURE_COUNT, LOCAL_MOUNT_FAILURE_COUNT, operationCount } from './metrics.js';
import { isMountPoint, mountPointsUnder, unmountAllUnder } from '../host/index.js';
import { diskUsage } from './disk-usage.js';
import type { Mount } from './mounts.js';
import { LayerDecisions, type LayerMode } from './decisions.js';

export interface SnapshotterOptions {
  root: string; // the daemon root; data lives in <root>/snapshotter
  mounter: LayerMounter;
  unpacker?: LocalUnpacker;
  logger: Logger;
  minLayerSize?: number;
  allowInvalidMountsOnRestart?: boolean;
  indexOff?: boolean;
  /**
   * AWS's parallel pull and unpack: `primary` pulls every layer that way (nothing is lazy),
   * `fallback` only the layers of images without an index (experimental_parallel_pull_as_fallback).
   * Either way a failed parallel pull fails the Prepare instead of deferring to containerd.
   */
  parallelPull?: 'primary' | 'fallback';
}

export class Snapshotter {
  readonly store: MetaStore;
  /** per-layer outcomes of prepare (lazy, local, deferred), for the status service */
  readonly decisions = new LayerDecisions();
  readonly snapshotsDir: string;
  private readonly o: SnapshotterOptions;

  private constructor(o: SnapshotterOptions, store: MetaStore) {
    this.o = o;
    this.store = store;
    this.snapshotsDir = join(o.root, 'snapshotter', 'snapshots');
  }

  static async open(o: SnapshotterOptions): Promise<Snapshotter> {
    const base = join(o.root, 'snapshotter');
    await mkdir(join(base, 'snapshots'), { recursive: true, mode: 0o700 });
    return new Snapshotter(o, new MetaStore(join(base, 'metadata.db')));
  }

  close(): void {
    this.store.close();
  }

  upperPath(id: string): string {
    return join(this.snapshotsDir, id, 'fs');
  }

  private workPath(id: string): string {
    return join(this.snapshotsDir, id, 'work');
  }

  private log(ctx: MountContext): Logger {
    return this.o.logger.child({ key: ctx.key, namespace: ctx.namespace });
  }

  /** containerd overlayfs snapshotter's mounts(). */
  mountsOf(s: Snapshot): Mount[] {
    if (s.parentIds.length === 0) {
      return [{ type: 'bind', source: this.upperPath(s.id), target: '', options: [s.kind === 'view' ? 'ro' : 'rw', 'rbind'] }];
    }
    const options: string[] = [];
    if (this.o.indexOff) options.push('index=off');
    if (s.kind === 'active') {
      options.push(`workdir=${this.workPath(s.id)}`, `upperdir=${this.upperPath(s.id)}`);
    } else if (s.parentIds.length === 1) {
      return [{ type: 'bind', source: this.upperPath(s.parentIds[0]!), target: '', options: ['ro', 'rbind'] }];
    }
    options.push(`lowerdir=${s.parentIds.map((id) => this.upperPath(id)).join(':')}`);
    return [{ type: 'overlay', source: 'overlay', target: '', options }];
  }

  /**
   * SOCI's checkAvailability: before handing out mounts, ask the mounter whether every remote
   * layer in the chain starting at `checkKey` is still healthy; UNAVAILABLE if not.
   */
  private async checkedMounts(s: Snapshot, checkKey: string): Promise<Mount[]> {
    const check = this.o.mounter.check?.bind(this.o.mounter);
    if (check && checkKey) {
      const probes: Promise<void>[] = [];
      for (let k = checkKey; k; ) {
        const cur = this.store.get(k);
        if (cur.info.labels[LABELS.remote] !== undefined) probes.push(check(this.upperPath(cur.id), cur.info.labels));
        k = cur.info.parent;
      }
      try {
        await Promise.all(probes);
      } catch (e) {
        this.o.logger.warn({ key: checkKey, err: e instanceof Error ? e.message : String(e) }, 'layer is unavailable');
        throw new SnapshotError('unavailable', `layer "${s.id}" unavailable: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
    return this.mountsOf(s);
  }

  private async create(kind: 'active' | 'view', key: string, parent: string, labels: Record<string, string>): Promise<Snapshot> {
    const s = this.store.create(kind, key, parent, labels);
    try {
      await mkdir(this.upperPath(s.id), { recursive: true, mode: 0o755 });
      await mkdir(this.workPath(s.id), { mode: 0o711 });
    } catch (e) {
      this.store.remove(key);
      throw e;
    }
    return s;
  }

  async prepare(ctx: MountContext, key: string, parent: string, labels: Record<string, string>): Promise<Mount[]> {
    const s = await this.create('active', key, parent, labels);
    const target = labels[LABELS.targetSnapshot];
    if (!target) return this.checkedMounts(s, parent);
    const log = this.log(ctx);
    const fsDir = this.upperPath(s.id);
    const size = Number(labels[LABELS.size] ?? NaN);
    const minSize = this.o.minLayerSize ?? 0;
    let tryLocal = false;
    let deferReason = '';
    let cause = '';
    const decide = (mode: LayerMode, reason: string) =>
      this.decisions.record({
        image: labels[LABELS.manifestDigest] ?? '',
        imageRef: labels[LABELS.imageRef] ?? '',
        layer: labels[LABELS.layerDigest] ?? '',
        mode,
        reason,
        cause: mode === 'lazy' ? '' : cause,
      });
    const parallel = this.o.parallelPull;
    let pullImage = false;
    if (parallel === 'primary') {
      pullImage = true;
      cause = 'parallel-pull';
      deferReason = 'parallel pull and unpack is the primary pull mode';
    } else if (minSize > 0 && Number.isFinite(size) && size < minSize) {
      tryLocal = true;
      cause = 'min-layer-size';
      deferReason = `layer size ${size} below min_layer_size ${minSize}`;
      log.info({ 'remote-snapshot-prepared': 'false', reason: `layer size ${size} below min_layer_size ${minSize}` }, 'skipping remote snapshot');
      // The image's lazy layers come next: their zTOCs (and prefetch) download while this one unpacks.
      this.o.mounter.resolve?.(labels);
    } else {
      try {
        await this.o.mounter.mount(fsDir, labels, ctx);
        const remoteLabels = { ...labels, [LABELS.remote]: REMOTE_SNAPSHOT, [LABELS.hasSociIndexDigest]: 'true', [LABELS.namespace]: ctx.namespace };
        await this.commitPrepared(target, key, remoteLabels, true, log);
        decide('lazy', '');
        log.info({ 'remote-snapshot-prepared': 'true', target }, 'remote snapshot successfully prepared');
        throw alreadyExists(`target snapshot "${target}": already exists`);
      } catch (e) {
        if (e instanceof SnapshotError && e.kind === 'already_exists') throw e;
        const reason = e instanceof Error ? e.message : String(e);
        log.warn({ 'remote-snapshot-prepared': 'false', reason, err: isSociError(e) ? e.code : undefined }, 'failed to prepare remote snapshot');
        deferReason = reason;
        cause = isSociError(e, 'ERR_NO_INDEX') ? 'no-index' : isSociError(e, 'ERR_NO_ZTOC') ? 'no-ztoc' : 'mount-failed';
        if (isSociError(e, 'ERR_NO_INDEX')) pullImage = parallel === 'fallback';
        else {
          tryLocal = true;
          if (!isSociError(e, 'ERR_NO_ZTOC')) operationCount.inc({ operation_type: FUSE_MOUNT_FAILURE_COUNT, layer: labels[LABELS.layerDigest] ?? '' });
        }
        if (await isMountPoint(fsDir)) await this.o.mounter.unmount(fsDir).catch(() => undefined);
      }
    }
    if (pullImage) {
      const unpackImage = this.o.unpacker?.unpackImage?.bind(this.o.unpacker);
      if (!unpackImage) throw new SnapshotError('internal', 'parallel pull and unpack: no unpacker configured');
      try {
        await unpackImage(
          fsDir,
          s.parentIds.map((id) => this.upperPath(id)),
          labels,
          ctx,
        );
      } catch (e) {
        operationCount.inc({ operation_type: LOCAL_MOUNT_FAILURE_COUNT, layer: labels[LABELS.layerDigest] ?? '' });
        log.warn({ 'local-snapshot-prepared': 'false', err: e instanceof Error ? e.message : String(e) }, 'parallel pull and unpack failed');
        await this.remove(key).catch(() => undefined);
        throw new SnapshotError(
          'internal',
          `parallel pull and unpack of layer ${labels[LABELS.layerDigest] ?? ''}: ${e instanceof Error ? e.message : String(e)}`,
        );
      }
      await this.commitPrepared(target, key, labels, false, log);
      decide('local', deferReason);
      log.info({ 'local-snapshot-prepared': 'true', target }, 'local snapshot successfully prepared');
      throw alreadyExists(`target snapshot "${target}": already exists`);
    }
    if (tryLocal) {
      if (!this.o.unpacker) {
        deferReason = `${deferReason}; no local unpacker configured`;
        cause ||= 'no-unpacker';
      } else {
        try {
          await this.o.unpacker.unpack(
            fsDir,
            s.parentIds.map((id) => this.upperPath(id)),
            labels,
            ctx,
          );
          await this.commitPrepared(target, key, { ...labels, [LABELS.hasSociIndexDigest]: 'true' }, false, log);
          decide('local', deferReason);
          log.info({ 'local-snapshot-prepared': 'true', target }, 'local snapshot successfully prepared');
          throw alreadyExists(`target snapshot "${target}": already exists`);
        } catch (e) {
          if (e instanceof SnapshotError && e.kind === 'already_exists') throw e;
          deferReason = `${deferReason}; local unpack failed: ${e instanceof Error ? e.message : String(e)}`;
          cause = 'unpack-failed';
          operationCount.inc({ operation_type: LOCAL_MOUNT_FAILURE_COUNT, layer: labels[LABELS.layerDigest] ?? '' });
          log.warn({ 'local-snapshot-prepared': 'false', reason: deferReason }, 'failed to prepare local snapshot');
          // Whatever the unpacker left behind must not leak into containerd's own unpack.
          await rm(fsDir, { recursive: true, force: true });
          await mkdir(fsDir, { mode: 0o755 });
        }
      }
    }
    decide('deferred', deferReason);
    log.info({ 'defer-snapshot-runtime': 'true', reason: deferReason }, 'deferring snapshot preparation to the container runtime');
    return this.checkedMounts(s, parent);
  }

  /** Commit after a remote/local prepare; an existing target still means "already exists". */
  private async commitPrepared(target: string, key: string, labels: Record<string, string>, remote: boolean, log: Logger): Promise<void> {
    try {
      await this.commit(target, key, labels, remote);
    } catch (e) {
      if (e instanceof SnapshotError && e.kind === 'already_exists') {
        // Another Prepare (e.g. a second image sharing the layer) committed the target first:
        // drop our duplicate so its mount does not leak until containerd's GC finds it.
        log.info({ target }, 'target snapshot already exists; removing the duplicate');
        await this.remove(key).catch((re: unknown) => log.warn({ err: String(re) }, 'failed to remove duplicate snapshot'));
        return;
      }
      throw e;
    }
  }

  async view(key: string, parent: string, labels: Record<string, string>): Promise<Mount[]> {
    return this.checkedMounts(await this.create('view', key, parent, labels), parent);
  }

  async mounts(key: string): Promise<Mount[]> {
    const s = this.store.get(key);
    if (s.kind === 'committed') throw failedPrecondition(`failed to get active mount: requested snapshot ${key} not active or view`);
    return this.checkedMounts(s, key);
  }

  async commit(name: string, key: string, labels: Record<string, string>, remote = false): Promise<void> {
    // Same check order as containerd's CommitActive: existing name, missing key, not active.
    if (name && this.store.has(name)) throw alreadyExists(`committed snapshot ${name}: already exists`);
    const s = this.store.get(key);
    if (s.kind !== 'active') throw failedPrecondition(`snapshot "${key}" is not active: failed precondition`);
    // Remote layers are not walked: that would fetch the whole layer through FUSE.
    const usage = remote ? { size: 0, inodes: 0 } : await diskUsage(this.upperPath(s.id));
    this.store.commit(key, name, labels, usage);
  }

  async remove(key: string): Promise<void> {
    const { id } = this.store.remove(key);
    await this.removeDir(id);
  }

  /** Unmounts (through the mounter first, so it can release the layer) and deletes a snapshot dir. */
  private async removeDir(id: string): Promise<void> {
    const dir = join(this.snapshotsDir, id);
    const fsDir = join(dir, 'fs');
    if (await isMountPoint(fsDir)) {
      await this.o.mounter.unmount(fsDir).catch((e: unknown) => this.o.logger.debug({ dir: fsDir, err: String(e) }, 'failed to unmount'));
    }
    await unmountAllUnder(dir);
    // Never rm -r through a mount: that would delete the mounted content.
    if ((await mountPointsUnder(dir)).length > 0) throw new Error(`snapshot dir ${dir} still has mounts; not removing`);
    await rm(dir, { recursive: true, force: true });
  }

  stat(key: string): Info {
    return this.store.get(key).info;
  }

  update(info: { name: string; labels: Record<string, string> }, paths: string[]): Info {
    return this.store.update(info, paths);
  }

  list(filters: string[]): Info[] {
    const match = compileFilters(filters);
    return this.store
      .list()
      .map((s) => s.info)
      .filter(match);
  }

  async usage(key: string): Promise<{ size: number; inodes: number }> {
    const s = this.store.get(key);
    if (s.kind === 'active') return diskUsage(this.upperPath(s.id));
    return this.store.usage(key);
  }

  /** Removes directories that have no metadata row (left by Remove failures or crashes). */
  async cleanup(): Promise<string[]> {
    const dirs = await readdir(this.snapshotsDir);
    const ids = this.store.ids(); // read after listing: a dir created meanwhile already has its row
    const removed: string[] = [];
    for (const d of dirs) {
      if (ids.has(d)) continue;
      try {
        await this.removeDir(d);
        removed.push(d);
      } catch (e) {
        this.o.logger.warn({ dir: d, err: String(e) }, 'failed to clean up snapshot dir');
      }
    }
    return removed;
  }

  /** Snapshots committed from a remote mount. */
  remoteSnapshots(): Snapshot[] {
    return this.store.list().filter((s) => s.kind === 'committed' && s.info.labels[LABELS.remote] === REMOTE_SNAPSHOT);
  }

  /** At start, after stale mounts were cleaned: mount every remote snapshot again (restart). */
  async restoreRemoteSnapshots(): Promise<void> {
    for (const s of this.remoteSnapshots()) {
      const ctx = { namespace: s.info.labels[LABELS.namespace] ?? '', key: s.info.name };
      try {
        await this.o.mounter.mount(this.upperPath(s.id), s.info.labels, ctx);
        this.o.logger.info({ key: s.info.name }, 'restored remote snapshot');
      } catch (e) {
        if (!this.o.allowInvalidMountsOnRestart) {
          throw new Error(`failed to restore remote snapshot ${s.info.name}: ${e instanceof Error ? e.message : String(e)}`);
        }
        this.o.logger.warn({ key: s.info.name, err: String(e) }, 'failed to restore remote snapshot; continuing (allow_invalid_mounts_on_restart)');
      }
    }
  }

  /** SIGINT path: unmount every remote snapshot through the mounter. */
  async unmountAll(): Promise<void> {
    for (const s of this.remoteSnapshots()) {
      const fsDir = this.upperPath(s.id);
      try {
        if (await isMountPoint(fsDir)) await this.o.mounter.unmount(fsDir);
      } catch (e) {
        this.o.logger.warn({ dir: fsDir, err: String(e) }, 'failed to unmount');
      }
    }
  }
}
