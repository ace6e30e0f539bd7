/**
 * The artifacts DB (reference: bbolt `<root>/artifacts.db`, bucket `soci_artifacts`): which SOCI
 * indexes, zTOCs and prefetch artifacts exist locally and what they belong to. Here an embedded
 * SQLite database (better-sqlite3); every write is a single transaction, so it is atomic.
 */
import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

export type ArtifactType = 'soci_index' | 'soci_layer' | 'soci_prefetch';

export interface ArtifactEntry {
  /** digest of the artifact (index manifest, zTOC or prefetch blob) */
  digest: string;
  size: number;
  type: ArtifactType;
  /** zTOC/prefetch: the image layer digest; index: the image manifest digest */
  originalDigest: string;
  /** index: the image manifest digest it serves */
  imageDigest: string;
  /** index: the image reference it was built from */
  imageRef: string;
  /** index: os/arch[/variant] */
  platform: string;
  /** where the source came from (layout path, registry ref), to find layer bytes again */
  location: string;
  /** index: manifest media type; zTOC: the layer media type */
  mediaType: string;
  /** index: config media type (v1 or v2) */
  artifactType: string;
  spanSize: number;
  /** RFC 3339 */
  createdAt: string;
}

const COLUMNS = [
  'digest',
  'size',
  'type',
  'original_digest',
  'image_digest',
  'image_ref',
  'platform',
  'location',
  'media_type',
  'artifact_type',
  'span_size',
  'created_at',
] as const;

export class ArtifactsDb {
  private readonly db: Database.Database;

  constructor(path: string) {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    this.db.exec(`CREATE TABLE IF NOT EXISTS artifacts (
      digest TEXT NOT NULL, size INTEGER NOT NULL, type TEXT NOT NULL,
      original_digest TEXT NOT NULL DEFAULT '', image_digest TEXT NOT NULL DEFAULT '',
      image_ref TEXT NOT NULL DEFAULT '', platform TEXT NOT NULL DEFAULT '', location TEXT NOT NULL DEFAULT '',
      media_type TEXT NOT NULL DEFAULT '', artifact_type TEXT NOT NULL DEFAULT '',
      span_size INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL,
      PRIMARY KEY (digest, type, original_digest, image_digest))`);
  }

  close(): void {
    this.db.close();
  }

  put(e: ArtifactEntry): void {
    this.db
      .prepare(`INSERT OR REPLACE INTO artifacts (${COLUMNS.join(',')}) VALUES (${COLUMNS.map(() => '?').join(',')})`)
      .run(e.digest, e.size, e.type, e.originalDigest, e.imageDigest, e.imageRef, e.platform, e.location, e.mediaType, e.artifactType, e.spanSize, e.createdAt);
  }

  putMany(entries: ArtifactEntry[]): void {
    this.db.transaction((es: ArtifactEntry[]) => {
      for (const e of es) this.put(e);
    })(entries);
  }

  list(filter: Partial<Pick<ArtifactEntry, 'type' | 'digest' | 'imageRef' | 'imageDigest' | 'originalDigest' | 'platform'>> = {}): ArtifactEntry[] {
    const where: string[] = [];
    const args: unknown[] = [];
    const col: Record<string, string> = {
      type: 'type',
      digest: 'digest',
      imageRef: 'image_ref',
      imageDigest: 'image_digest',
      originalDigest: 'original_digest',
      platform: 'platform',
    };
    for (const [k, v] of Object.entries(filter)) {
      if (v === undefined) continue;
      where.push(`${col[k]} = ?`);
      args.push(v);
    }
    const rows = this.db
      .prepare(`SELECT * FROM artifacts ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at DESC, rowid DESC`)
      .all(...args) as Record<string, unknown>[];
    return rows.map(toEntry);
  }

  /** A zTOC already built for this layer with this span size (reuse unless --force). */
  findZtoc(layerDigest: string, spanSize: number): ArtifactEntry | undefined {
    return this.list({ type: 'soci_layer', originalDigest: layerDigest }).find((e) => e.spanSize === spanSize);
  }

  remove(digest: string, type?: ArtifactType): number {
    const r = type
      ? this.db.prepare('DELETE FROM artifacts WHERE digest = ? AND type = ?').run(digest, type)
      : this.db.prepare('DELETE FROM artifacts WHERE digest = ?').run(digest);
    return r.changes;
  }

  /** Replaces the whole table (rebuild-db) in one transaction. */
  replaceAll(entries: ArtifactEntry[]): void {
    this.db.transaction((es: ArtifactEntry[]) => {
      this.db.exec('DELETE FROM artifacts');
      for (const e of es) this.put(e);
    })(entries);
  }
}

function toEntry(r: Record<string, unknown>): ArtifactEntry {
  return {
    digest: r.digest as string,
    size: r.size as number,
    type: r.type as ArtifactType,
    originalDigest: r.original_digest as string,
    imageDigest: r.image_digest as string,
    imageRef: r.image_ref as string,
    platform: r.platform as string,
    location: r.location as string,
    mediaType: r.media_type as string,
    artifactType: r.artifact_type as string,
    spanSize: r.span_size as number,
    createdAt: r.created_at as string,
  };
}
