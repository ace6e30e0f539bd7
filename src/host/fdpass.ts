/**
 * The `fdpass` addon (native/fdpass.c): passing file descriptors between processes, which Node has
 * no API for: taking one from another process (pidfd_getfd(2), Linux >= 5.6) and sending some over
 * a unix datagram socket (SCM_RIGHTS, as sd_notify(3) does for systemd's fd store). Without the
 * addon (no compiler at `npm install`) both are unavailable and `fdPassUnavailable()` says why in
 * one line. SOCI_FDPASS_ADDON names another build of it.
 */
import { createRequire } from 'node:module';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SociError } from '../errors.js';

interface FdPassAddon {
  /** a duplicate of process `pid`'s descriptor `fd` (pidfd_getfd) */
  take(pid: number, fd: number): number;
  /** one datagram with `fds` attached (SCM_RIGHTS) to the unix socket at `path` ("@x": abstract) */
  notify(path: string, message: string, fds: number[]): void;
}

/** Where `npm install` (node-gyp) puts the addon: <package root>/build/Release/fdpass.node. */
const defaultAddonPath = resolve(dirname(fileURLToPath(import.meta.url)), '../../build/Release/fdpass.node');

let loaded: { addon: FdPassAddon | null; why: string } | undefined;

function load(): { addon: FdPassAddon | null; why: string } {
  if (loaded) return loaded;
  const path = process.env.SOCI_FDPASS_ADDON ?? defaultAddonPath;
  try {
    const a = createRequire(import.meta.url)(path) as Partial<FdPassAddon>;
    if (typeof a.take !== 'function' || typeof a.notify !== 'function') throw new Error('wrong exports');
    loaded = { addon: a as FdPassAddon, why: '' };
  } catch (e) {
    const why = (e as NodeJS.ErrnoException).code === 'MODULE_NOT_FOUND' ? 'not built' : String((e as Error).message).split('\n')[0];
    loaded = { addon: null, why: `the fdpass addon (${path}) is unavailable: ${why}` };
  }
  return loaded;
}

/** null when fds can be handed over; else the one-line reason they cannot. */
export function fdPassUnavailable(): string | null {
  const l = load();
  return l.addon ? null : l.why;
}

export function fdPassAddon(): FdPassAddon {
  const l = load();
  if (!l.addon) throw new SociError('ERR_UNSUPPORTED', l.why);
  return l.addon;
}
