/**
 * What each key of AWS's config.toml does here. A key works as in AWS's docs/config.md unless it is
 * listed below:
 *  - moot: our design has nothing for it to tune; when the file sets it, the daemon says so in one
 *    line at start and goes on;
 *  - refused: the daemon does not start with this value (one line, exit ≠ 0).
 * Keys are dotted paths as written in the file ("blob.check_always").
 */

/** `when`: the values the rule is about (default: any value the file sets). */
export interface KeyRule {
  kind: 'moot' | 'refused';
  why: string;
  when?: (v: unknown) => boolean;
}

const METADATA = 'layer metadata is an in-memory inode tree per layer, built from its zTOC; there is no bbolt store';
const CACHE =
  'spans are kept in one on-disk span cache shared by all layers and bounded in bytes (plus a small in-memory LRU), so there is no per-layer cache to choose';

const moot = (why: string): KeyRule => ({ kind: 'moot', why });
const refusedWhenTrue = (why: string): KeyRule => ({ kind: 'refused', when: (v) => v === true, why });

export const KEY_RULES: Record<string, KeyRule> = {
  metadata_store: moot(METADATA),
  metadata_db_no_sync: moot(METADATA),
  metadata_insertion_chunk_size: moot(METADATA),
  http_cache_type: moot('registry responses are not cached; verified spans are'),
  filesystem_cache_type: moot(CACHE),
  'directory_cache.max_lru_cache_entry': moot(CACHE),
  'directory_cache.max_cache_fds': moot(CACHE),
  'directory_cache.sync_add': moot(CACHE),
  'directory_cache.direct': moot(CACHE),
  disable_verification: refusedWhenTrue('every span digest and every file header is always verified'),
  debug_address: { kind: 'refused', when: (v) => v !== '', why: 'there is no Go pprof server in this daemon; unset it' },
  'blob.force_single_range_mode': moot('every Range request already asks for one range'),
  'resolver.enable_auth_client_sharing': moot('one registry client per host is shared by every image already'),
};

export interface KeyReport {
  key: string;
  kind: 'moot';
  why: string;
}

/**
 * The reports for the keys `set` in the file to something else than their default (AWS's own
 * config.toml lists every key at its default: that says nothing); throws the first refusal as its
 * one line.
 */
export function checkKeys(set: ReadonlyMap<string, unknown>, isDefault: (key: string, v: unknown) => boolean, refuse: (line: string) => never): KeyReport[] {
  const out: KeyReport[] = [];
  for (const [key, value] of set) {
    const rule = KEY_RULES[key];
    if (!rule || isDefault(key, value)) continue;
    if (rule.when && !rule.when(value)) continue;
    if (rule.kind === 'refused') refuse(`config: ${key} = ${JSON.stringify(value)} is not supported: ${rule.why}`);
    out.push({ key, kind: rule.kind, why: rule.why });
  }
  return out;
}
