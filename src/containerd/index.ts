/**
 * The containerd client `soci` uses for containerd's image store: connection (namespace, lease,
 * deadline), the images and content services, and leases around a batch of writes.
 */
import { ContainerdConnection, type ContainerdOptions } from './client.js';
import { ContentService } from './content.js';
import { ImageService } from './images.js';
import { createLease, deleteLease } from './leases.js';
import { parseReference } from '../oci/reference.js';
import type { ImageRecord } from './images.js';

export { socketPath, type ContainerdOptions } from './client.js';
export { DEFAULT_ADDRESS, DEFAULT_NAMESPACE } from './defaults.js';
export { containerdBlobs } from './blobs.js';
export type { ContentInfo, ContentService } from './content.js';
export type { ImageRecord, ImageService } from './images.js';

export class Containerd {
  readonly content: ContentService;
  readonly images: ImageService;

  private constructor(readonly conn: ContainerdConnection) {
    this.content = new ContentService(conn);
    this.images = new ImageService(conn);
  }

  /** Connects and checks that containerd answers (one-line errors when it does not). */
  static async connect(opts: ContainerdOptions): Promise<Containerd> {
    const conn = new ContainerdConnection(opts);
    try {
      await conn.connect();
    } catch (e) {
      conn.close();
      throw e;
    }
    return new Containerd(conn);
  }

  get namespace(): string {
    return this.conn.namespace;
  }

  get address(): string {
    return this.conn.path;
  }

  /**
   * An image record by name as typed, else by its normalised name (`rabbitmq:latest` is stored by
   * nerdctl and ctr as `docker.io/library/rabbitmq:latest`).
   */
  async findImage(name: string, namespace?: string): Promise<ImageRecord | undefined> {
    const exact = await this.images.get(name, namespace);
    if (exact) return exact;
    let full: string;
    try {
      full = parseReference(name).string();
    } catch {
      return undefined;
    }
    return full === name ? undefined : this.images.get(full, namespace);
  }

  /** Namespaces other than ours that hold an image of this name (for "wrong namespace" hints). */
  async namespacesWith(name: string): Promise<string[]> {
    const out: string[] = [];
    for (const ns of await this.namespaces()) if (ns !== this.namespace && (await this.findImage(name, ns))) out.push(ns);
    return out;
  }

  async namespaces(): Promise<string[]> {
    const r = (await this.conn.unary('namespaces', 'List', { filter: '' }, { namespace: null })) as { namespaces: Array<{ name: string }> };
    return r.namespaces.map((n) => n.name);
  }

  /** Takes a lease that every later call carries, until releaseLease. */
  async holdLease(): Promise<void> {
    if (!this.conn.lease) this.conn.lease = await createLease(this.conn);
  }

  /** Deletes the lease: what it alone protected becomes garbage for containerd's GC. */
  async releaseLease(): Promise<void> {
    const id = this.conn.lease;
    if (!id) return;
    this.conn.lease = undefined;
    await deleteLease(this.conn, id);
  }

  close(): void {
    this.conn.close();
  }
}
