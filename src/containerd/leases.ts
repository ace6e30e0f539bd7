/**
 * containerd leases: while a command holds one, the content it writes cannot be garbage collected,
 * even before anything references it. The lease expires by itself (containerd's
 * `containerd.io/gc.expire` label), so even a killed command leaves nothing pinned for long.
 */
import { randomBytes } from 'node:crypto';
import type { ContainerdConnection } from './client.js';

const EXPIRE_MS = 24 * 3600 * 1000;

export async function createLease(c: ContainerdConnection): Promise<string> {
  const id = `soci-${Date.now()}-${randomBytes(4).toString('hex')}`;
  const expire = new Date(Date.now() + EXPIRE_MS).toISOString().replace(/\.\d{3}Z$/, 'Z');
  await c.unary('leases', 'Create', { id, labels: { 'containerd.io/gc.expire': expire } });
  return id;
}

export async function deleteLease(c: ContainerdConnection, id: string): Promise<void> {
  await c.unary('leases', 'Delete', { id, sync: false });
}
