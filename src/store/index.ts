/**
 * The local SOCI state under `--root`: our content store (`<root>/content`, an OCI layout like
 * AWS's) and our artifacts DB.
 *
 * AWS's CLI keeps a bbolt database at `<root>/artifacts.db`; ours is SQLite under another name, so
 * both CLIs can share a root without either opening the other's file. A SQLite `artifacts.db` is
 * ours from before the rename and is moved once. Nothing is created until a command needs it.
 */
import { closeSync, existsSync, mkdirSync, openSync, readSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { SociError } from '../errors.js';
import { ArtifactsDb } from './artifacts-db.js';
import { ContentStore } from './content-store.js';

export { ArtifactsDb, type ArtifactEntry, type ArtifactType } from './artifacts-db.js';
export { ContentStore, type BlobInfo } from './content-store.js';
export { localBlobs, type ArtifactBlobs } from './artifact-blobs.js';

export const DEFAULT_ROOT = '/var/lib/soci-snapshotter-grpc';
export const DB_NAME = 'soci-artifacts.sqlite';
/** AWS's CLI's database (bbolt); never opened by us */
export const AWS_DB_NAME = 'artifacts.db';

/** `--root`, else $SOCI_ROOT, else AWS's default. */
export function resolveRoot(flag?: string): string {
  return flag || process.env.SOCI_ROOT || DEFAULT_ROOT;
}

export interface LocalStore {
  root: string;
  content: ContentStore;
  db: ArtifactsDb;
  /** set when this call created the DB next to AWS's bbolt one (the CLI says so once) */
  besideAwsDb: boolean;
  close(): void;
}

export async function openLocalStore(root: string): Promise<LocalStore> {
  try {
    mkdirSync(root, { recursive: true, mode: 0o700 });
  } catch (e) {
    throw new SociError('ERR_IO', `cannot use root ${root}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const dbPath = join(root, DB_NAME);
  const aws = join(root, AWS_DB_NAME);
  let besideAwsDb = false;
  if (!existsSync(dbPath) && existsSync(aws)) {
    if (isSqlite(aws)) {
      for (const ext of ['', '-wal', '-shm']) if (existsSync(aws + ext)) renameSync(aws + ext, dbPath + ext);
    } else {
      besideAwsDb = true;
    }
  }
  const db = new ArtifactsDb(dbPath);
  const content = await ContentStore.open(join(root, 'content'));
  return { root, content, db, besideAwsDb, close: () => db.close() };
}

function isSqlite(path: string): boolean {
  const fd = openSync(path, 'r');
  try {
    const b = Buffer.alloc(16);
    return readSync(fd, b, 0, 16, 0) === 16 && b.toString('latin1') === 'SQLite format 3\0';
  } finally {
    closeSync(fd);
  }
}
