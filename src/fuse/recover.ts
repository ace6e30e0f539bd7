/**
 * Requests a dead server had read and never answered. The kernel keeps them on the connection's
 * "processing" list, where only a reply to their `unique` releases them: a reader would wait until
 * the mount goes away. Two ways out, for a server that took the connection over:
 *
 * - FUSE_NOTIFY_RESEND (Linux >= 6.9, protocol 7.40): the kernel moves every request on that list
 *   back to the input queue, and the new server reads and answers them as if they were new.
 * - Older kernels: the new server cannot know what was asked, so it answers each of them EINTR,
 *   the error a call interrupted by a signal gets. A read(2) then returns EINTR, which libc-based
 *   tools (coreutils' safe_read, busybox), Python (PEP 475) and Go retry; an open or stat fails
 *   with "Interrupted system call". Either way no reader waits forever. The uniques are found by
 *   trying the even ids below the first request the new server reads (the kernel numbers requests
 *   in steps of 2 since Linux 4.20): a reply to an id that is not on the processing list is refused
 *   with ENOENT and changes nothing.
 */
import fs from 'node:fs';
import { OUT_HEADER_SIZE, writeOutHeader } from './protocol.js';
import { Errno } from './types.js';

/** FUSE_NOTIFY_RESEND (include/uapi/linux/fuse.h) */
const NOTIFY_RESEND = 7;
/** the protocol minor that has it */
export const RESEND_MINOR = 40;
/** How far below the first new request the ids of lost requests are looked for. */
export const LOST_WINDOW = 1 << 18;
const BATCH = 4096;
const TWO32 = 4294967296;

/** FUSE_NOTIFY_RESEND: a header with no body, unique 0, the notify code (positive) as its error. */
export function notifyResend(fd: number): void {
  const h = Buffer.alloc(OUT_HEADER_SIZE);
  h.writeUInt32LE(OUT_HEADER_SIZE, 0);
  h.writeInt32LE(NOTIFY_RESEND, 4);
  fs.writeSync(fd, h);
}

/**
 * Answers EINTR to every request still on the processing list with an id in
 * [below - LOST_WINDOW, below) that `ours` does not claim. Runs in batches so the event loop
 * keeps turning; returns how many requests were answered.
 */
export async function failLostRequests(fd: number, below: number, ours: (unique: number) => boolean): Promise<number> {
  const h = Buffer.alloc(OUT_HEADER_SIZE);
  let answered = 0;
  const low = Math.max(2, below - LOST_WINDOW);
  let u = below - 2 - (below % 2);
  while (u >= low) {
    const end = Math.max(low, u - 2 * BATCH);
    for (; u >= end; u -= 2) {
      if (ours(u)) continue;
      writeOutHeader(h, OUT_HEADER_SIZE, Errno.EINTR, (u % TWO32) >>> 0, Math.floor(u / TWO32));
      try {
        fs.writeSync(fd, h);
        answered++;
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code !== 'ENOENT') throw e; // not on the list: nothing to answer
      }
    }
    await new Promise<void>((r) => setImmediate(r));
  }
  return answered;
}
