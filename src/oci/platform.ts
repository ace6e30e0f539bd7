/** Platform parsing, normalisation and matching (containerd `platforms` semantics, the parts SOCI uses). */
import { SociError } from '../errors.js';
import type { Platform } from './types.js';

const ARCH: Record<string, string> = { x64: 'amd64', x86_64: 'amd64', aarch64: 'arm64', ia32: '386', i386: '386', ppc64: 'ppc64le' };

/** containerd platforms.Normalize */
export function normalizePlatform(p: Platform): Platform {
  const os = (p.os || 'linux').toLowerCase();
  let architecture = (p.architecture || '').toLowerCase();
  architecture = ARCH[architecture] ?? architecture;
  let variant = p.variant ?? '';
  if (architecture === 'arm64') {
    if (variant === '8' || variant === 'v8' || variant === 'v8.0') variant = '';
  } else if (architecture === 'arm') {
    if (variant === '' || variant === '7') variant = 'v7';
    else if (variant === '5' || variant === '6' || variant === '8') variant = `v${variant}`;
  } else if (architecture === 'armhf') {
    architecture = 'arm';
    variant = 'v7';
  } else if (architecture === 'armel') {
    architecture = 'arm';
    variant = 'v6';
  } else if (architecture === 'amd64' && (variant === 'v1' || variant === '')) {
    variant = '';
  }
  const out: Platform = { architecture, os };
  if (variant) out.variant = variant;
  if (p['os.version']) out['os.version'] = p['os.version'];
  return out;
}

/** The platform `soci` builds for by default: this host's. */
export function hostPlatform(): Platform {
  const arch = ARCH[process.arch] ?? process.arch;
  return normalizePlatform({ os: 'linux', architecture: arch, ...(arch === 'arm' ? { variant: 'v7' } : {}) });
}

/** "linux/arm64/v8", "linux/amd64", "arm64" → Platform */
export function parsePlatform(s: string): Platform {
  const parts = s.trim().split('/');
  if (parts.length === 0 || parts.length > 3 || parts.some((x) => !x || !/^[A-Za-z0-9_.-]+$/.test(x))) {
    throw new SociError('ERR_USAGE', `invalid platform "${s}": expected os/arch[/variant]`);
  }
  if (parts.length === 1) return normalizePlatform({ os: 'linux', architecture: parts[0]! });
  return normalizePlatform({ os: parts[0]!, architecture: parts[1]!, ...(parts[2] ? { variant: parts[2] } : {}) });
}

export function formatPlatform(p: Platform): string {
  const n = normalizePlatform(p);
  return [n.os, n.architecture, n.variant].filter(Boolean).join('/');
}

/** Exact match after normalisation (containerd platforms.Only without the compat fall-backs). */
export function platformMatches(want: Platform, have: Platform | undefined): boolean {
  if (!have) return false;
  const a = normalizePlatform(want);
  const b = normalizePlatform(have);
  return a.os === b.os && a.architecture === b.architecture && (a.variant ?? '') === (b.variant ?? '');
}

export function samePlatform(a: Platform, b: Platform): boolean {
  return formatPlatform(a) === formatPlatform(b);
}
