/**
 * `soci prefetch list|ls [--json]` and `soci prefetch info <digest> [--json]`, as in AWS's newest
 * CLI: the prefetch artifacts of the artifacts DB, read from the content store in use. The list
 * shows each artifact's layer and its span count (N/A when the artifact cannot be read); its JSON
 * form is AWS's array of {Digest, LayerDigest, TotalSpans, CreatedAt} (`null` when empty, as Go
 * encodes an empty slice it never filled). `info` prints AWS's summary, each span range, and with
 * --json the artifact itself.
 */
import { Command } from 'commander';
import { SociError } from '../errors.js';
import { parseDigest } from '../oci/digest.js';
import type { ArtifactEntry } from '../store/index.js';
import { ago } from './duration.js';
import { out, table } from './output.js';
import { globals, openSession, type Session } from './session.js';

interface Span {
  start_span: number;
  end_span: number;
  priority?: number;
}
interface Artifact {
  version: string;
  prefetch_spans: Span[];
}

/** The artifact as AWS's UnmarshalPrefetchArtifact accepts it: a version and integer span ids. */
function parseArtifact(bytes: Buffer, digest: string): Artifact {
  let j: unknown;
  try {
    j = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new SociError('ERR_INVALID_MANIFEST', `prefetch artifact ${digest} is not JSON`);
  }
  const o = j as Partial<Artifact>;
  const spans = o.prefetch_spans ?? [];
  if (typeof o.version !== 'string' || !Array.isArray(spans) || !spans.every((s) => Number.isSafeInteger(s?.start_span) && Number.isSafeInteger(s?.end_span)))
    throw new SociError('ERR_INVALID_MANIFEST', `prefetch artifact ${digest} is not a prefetch artifact`);
  return {
    version: o.version,
    prefetch_spans: spans.map((s) => ({ start_span: s.start_span, end_span: s.end_span, ...(s.priority ? { priority: s.priority } : {}) })),
  };
}

const spanCount = (a: Artifact) => a.prefetch_spans.reduce((n, s) => n + s.end_span - s.start_span + 1, 0);

/** Go's time.Time JSON form (RFC 3339 with the fraction's trailing zeros dropped). */
function goTime(iso: string): string {
  const t = new Date(iso);
  if (!Number.isFinite(t.getTime())) return '0001-01-01T00:00:00Z';
  return t.toISOString().replace(/\.?0+Z$/, 'Z');
}

async function totalSpans(s: Session, e: ArtifactEntry): Promise<number> {
  try {
    return spanCount(parseArtifact(await s.readArtifact(e.digest), e.digest));
  } catch {
    return -1;
  }
}

export function prefetchCommand(): Command {
  const cmd = new Command('prefetch').description('manage prefetch artifacts');
  cmd
    .command('list')
    .alias('ls')
    .description('list prefetch artifacts')
    .option('--json', 'output in JSON format', false)
    .action(async (o: { json: boolean }, c: Command) => {
      const s = await openSession(globals(c));
      try {
        const seen = new Set<string>();
        const rows: Array<{ e: ArtifactEntry; spans: number }> = [];
        for (const e of s.db.list({ type: 'soci_prefetch' })) {
          if (seen.has(`${e.digest} ${e.originalDigest}`)) continue;
          seen.add(`${e.digest} ${e.originalDigest}`);
          rows.push({ e, spans: await totalSpans(s, e) });
        }
        if (o.json) {
          const list = rows.map(({ e, spans }) => ({ Digest: e.digest, LayerDigest: e.originalDigest, TotalSpans: spans, CreatedAt: goTime(e.createdAt) }));
          out(list.length ? JSON.stringify(list, null, 2) : 'null');
          return;
        }
        const body = rows.map(({ e, spans }) => [e.digest, e.originalDigest, spans === -1 ? 'N/A' : String(spans), ago(e.createdAt)]);
        process.stdout.write(table(['DIGEST', 'LAYER DIGEST', 'SPANS', 'CREATED'], body, { minWidth: 8, terminated: true }));
      } finally {
        await s.close();
      }
    });
  cmd
    .command('info')
    .description('display a prefetch artifact')
    .argument('<digest>')
    .option('--json', 'output in JSON format', false)
    .action(async (digest: string, o: { json: boolean }, c: Command) => {
      parseDigest(digest);
      const s = await openSession(globals(c));
      try {
        const entries = s.db.list({ digest });
        if (!entries.length) throw new SociError('ERR_NOT_FOUND', `prefetch artifact ${digest} not found (try "soci rebuild-db" first)`);
        const entry = entries.find((e) => e.type === 'soci_prefetch');
        if (!entry) throw new SociError('ERR_USAGE', `the provided digest is not a prefetch artifact (type: ${entries[0]!.type})`);
        const a = parseArtifact(await s.readArtifact(digest), digest);
        const created = new Date(entry.createdAt);
        const pad = (n: number) => String(n).padStart(2, '0');
        const when = `${created.getFullYear()}-${pad(created.getMonth() + 1)}-${pad(created.getDate())} ${pad(created.getHours())}:${pad(created.getMinutes())}:${pad(created.getSeconds())}`;
        const lines = [
          `Digest:        ${digest}`,
          `Version:       ${a.version}`,
          `Span Ranges:   ${a.prefetch_spans.length}`,
          `Layer Digest:  ${entry.originalDigest}`,
          `Size:          ${entry.size} bytes`,
          `Created:       ${when}`,
          '',
          'Prefetch Spans:',
        ];
        for (const [i, sp] of a.prefetch_spans.entries()) {
          lines.push(`  [${i}] StartSpan: ${sp.start_span}, EndSpan: ${sp.end_span} (covers ${sp.end_span - sp.start_span + 1} spans)`);
          if (sp.priority) lines.push(`      Priority: ${sp.priority}`);
        }
        lines.push('', `Total spans to prefetch: ${spanCount(a)}`);
        if (o.json) lines.push('', 'Raw JSON:', JSON.stringify(a, null, 2), '');
        out(lines.join('\n'));
      } finally {
        await s.close();
      }
    });
  return cmd;
}
