/** The local SOCI state under `--root`: content store + artifacts DB. */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { ArtifactsDb } from './artifacts-db.js';
import { ContentStore } from './content-store.js';

export { ArtifactsDb, type ArtifactEntry, type ArtifactType } from './artifacts-db.js';
export { ContentStore, type BlobInfo } from './content-store.js';

export const DEFAULT_ROOT = '/var/lib/soci-snapshotter-grpc';

/** `--root`, else $SOCI_ROOT, else the reference default. */
export function resolveRoot(flag?: string): string {
  return flag || process.env.SOCI_ROOT || DEFAULT_ROOT;
}

export interface LocalStore {
  root: string;
  content: ContentStore;
  db: ArtifactsDb;
  close(): void;
}

export async function openLocalStore(root: string): Promise<LocalStore> {
  mkdirSync(root, { recursive: true, mode: 0o700 });
  const content = await ContentStore.open(join(root, 'content'));
  const db = new ArtifactsDb(join(root, 'artifacts.db'));
  return { root, content, db, close: () => db.close() };
}
