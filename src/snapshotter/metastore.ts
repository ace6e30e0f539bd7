/**
 * Snapshot metadata (containerd's storage.MetaStore semantics) in SQLite at
 * <root>/snapshotter/metadata.db. Keys are stored exactly as containerd sends them
 * ("<ns>/<n>/<name>"), so they are already unique across namespaces.
 * better-sqlite3 is synchronous; every statement touches a handful of rows, so this is cheap.
 */
import Database from 'better-sqlite3';
import { alreadyExists, failedPrecondition, invalidArgument, notFound } from './errors.js';

export type Kind = 'view' | 'active' | 'committed';

export interface Info {
  name: string;
  parent: string; // "" when none
  kind: Kind;
  labels: Record<string, string>;
  created: Date;
  updated: Date;
}

/** A snapshot with its storage id and the ids of its parent chain (nearest first). */
export interface Snapshot {
  id: string;
  kind: Kind;
  parentIds: string[];
  info: Info;
}

interface Row {
  id: number;
  key: string;
  parent: string | null;
  kind: string;
  labels: string;
  created_ms: number;
  updated_ms: number;
  size: number;
  inodes: number;
}

const MAX_LABEL_BYTES = 4096;

/** containerd's labels.Validate: key + value at most 4096 bytes. */
export function validateLabels(labels: Record<string, string>): void {
  for (const [k, v] of Object.entries(labels)) {
    if (Buffer.byteLength(k) + Buffer.byteLength(v) > MAX_LABEL_BYTES) {
      throw invalidArgument(
        `label key and value length (${Buffer.byteLength(k) + Buffer.byteLength(v)} bytes) greater than maximum size (${MAX_LABEL_BYTES} bytes), key: ${k.slice(0, 64)}`,
      );
    }
  }
}

/** Empty values mean "delete" in containerd's label storage. */
function cleanLabels(labels: Record<string, string> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(labels ?? {})) if (v !== '') out[k] = v;
  return out;
}

export class MetaStore {
  private readonly db: Database.Database;

  constructor(path: string) {
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.exec(`CREATE TABLE IF NOT EXISTS snapshots (
      id INTEGER PRIMARY KEY AUTOINCREMENT,
      key TEXT NOT NULL UNIQUE,
      parent TEXT,
      kind TEXT NOT NULL,
      labels TEXT NOT NULL DEFAULT '{}',
      created_ms INTEGER NOT NULL,
      updated_ms INTEGER NOT NULL,
      size INTEGER NOT NULL DEFAULT 0,
      inodes INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX IF NOT EXISTS snapshots_parent ON snapshots(parent);`);
  }

  close(): void {
    this.db.close();
  }

  private row(key: string): Row | undefined {
    return this.db.prepare('SELECT * FROM snapshots WHERE key = ?').get(key) as Row | undefined;
  }

  private toInfo(r: Row): Info {
    return {
      name: r.key,
      parent: r.parent ?? '',
      kind: r.kind as Kind,
      labels: JSON.parse(r.labels) as Record<string, string>,
      created: new Date(r.created_ms),
      updated: new Date(r.updated_ms),
    };
  }

  private parentIds(r: Row): string[] {
    const ids: string[] = [];
    let p = r.parent;
    while (p) {
      const pr = this.row(p);
      if (!pr) break; // cannot happen: Remove refuses parents with children
      ids.push(String(pr.id));
      p = pr.parent;
    }
    return ids;
  }

  private toSnapshot(r: Row): Snapshot {
    return { id: String(r.id), kind: r.kind as Kind, parentIds: this.parentIds(r), info: this.toInfo(r) };
  }

  /** CreateSnapshot: kind active or view; the parent must exist and be committed. */
  create(kind: 'active' | 'view', key: string, parent: string, labels: Record<string, string>): Snapshot {
    if (!key) throw invalidArgument('snapshot key must not be empty');
    validateLabels(labels);
    const tx = this.db.transaction((): Snapshot => {
      if (parent) {
        const pr = this.row(parent);
        if (!pr) throw notFound(`missing parent "${parent}" bucket: not found`);
        // containerd's storage reports this as invalid argument (overlayfs adds the prefix)
        if (pr.kind !== 'committed') throw invalidArgument(`failed to create snapshot: parent "${parent}" is not committed snapshot`);
      }
      if (this.row(key)) throw alreadyExists(`snapshot ${key}: already exists`);
      const now = Date.now();
      this.db
        .prepare('INSERT INTO snapshots (key, parent, kind, labels, created_ms, updated_ms) VALUES (?, ?, ?, ?, ?, ?)')
        .run(key, parent || null, kind, JSON.stringify(cleanLabels(labels)), now, now);
      return this.toSnapshot(this.row(key)!);
    });
    return tx();
  }

  get(key: string): Snapshot {
    const r = this.row(key);
    if (!r) throw notFound(`snapshot ${key} does not exist: not found`);
    return this.toSnapshot(r);
  }

  has(key: string): boolean {
    return this.row(key) !== undefined;
  }

  /** Stored usage of a committed snapshot. */
  usage(key: string): { size: number; inodes: number } {
    const r = this.row(key);
    if (!r) throw notFound(`snapshot ${key} does not exist: not found`);
    return { size: r.size, inodes: r.inodes };
  }

  /** CommitActive: the active key becomes committed `name`; labels are replaced, not inherited. */
  commit(key: string, name: string, labels: Record<string, string>, usage: { size: number; inodes: number }): Snapshot {
    validateLabels(labels);
    const tx = this.db.transaction((): Snapshot => {
      if (!name) throw invalidArgument('commit name must not be empty');
      if (this.row(name)) throw alreadyExists(`committed snapshot ${name}: already exists`);
      const r = this.row(key);
      if (!r) throw notFound(`failed to get active snapshot "${key}": not found`);
      if (r.kind !== 'active') throw failedPrecondition(`snapshot "${key}" is not active`);
      const now = Date.now();
      this.db
        .prepare("UPDATE snapshots SET key = ?, kind = 'committed', labels = ?, created_ms = ?, updated_ms = ?, size = ?, inodes = ? WHERE id = ?")
        .run(name, JSON.stringify(cleanLabels(labels)), now, now, usage.size, usage.inodes, r.id);
      return this.toSnapshot(this.row(name)!);
    });
    return tx();
  }

  /** Remove: refuses snapshots that still have children. Returns the removed id. */
  remove(key: string): { id: string; kind: Kind } {
    const tx = this.db.transaction(() => {
      const r = this.row(key);
      if (!r) throw notFound(`snapshot ${key} does not exist: not found`);
      const child = this.db.prepare('SELECT key FROM snapshots WHERE parent = ? LIMIT 1').get(key) as { key: string } | undefined;
      if (child) throw failedPrecondition(`cannot remove snapshot with child: ${key}`);
      this.db.prepare('DELETE FROM snapshots WHERE id = ?').run(r.id);
      return { id: String(r.id), kind: r.kind as Kind };
    });
    return tx();
  }

  /** UpdateInfo: only labels are mutable; paths "labels" or "labels.<key>"; no paths = all labels. */
  update(info: { name: string; labels: Record<string, string> }, paths: string[]): Info {
    validateLabels(info.labels);
    const tx = this.db.transaction((): Info => {
      const r = this.row(info.name);
      if (!r) throw notFound(`snapshot ${info.name} does not exist: not found`);
      let labels = JSON.parse(r.labels) as Record<string, string>;
      if (paths.length === 0) {
        labels = { ...info.labels };
      } else {
        for (const p of paths) {
          if (p.startsWith('labels.')) {
            const k = p.slice('labels.'.length);
            labels[k] = info.labels[k] ?? '';
          } else if (p === 'labels') {
            labels = { ...info.labels };
          } else {
            throw invalidArgument(`cannot update "${p}" field on snapshot "${info.name}": invalid argument`);
          }
        }
      }
      this.db.prepare('UPDATE snapshots SET labels = ?, updated_ms = ? WHERE id = ?').run(JSON.stringify(cleanLabels(labels)), Date.now(), r.id);
      return this.toInfo(this.row(info.name)!);
    });
    return tx();
  }

  list(): Snapshot[] {
    const rows = this.db.prepare('SELECT * FROM snapshots ORDER BY id').all() as Row[];
    return rows.map((r) => this.toSnapshot(r));
  }

  ids(): Set<string> {
    const rows = this.db.prepare('SELECT id FROM snapshots').all() as { id: number }[];
    return new Set(rows.map((r) => String(r.id)));
  }
}
