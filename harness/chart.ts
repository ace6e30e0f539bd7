/**
 * The Helm chart in deploy/kubernetes/soci-snapshotter, rendered by the real helm (v4, built by
 * scripts/install-test-tools.sh) and parsed, for tests that check it or run what it runs.
 */
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { execOk, repoRoot } from './containerd.js';

export const HELM = join(process.env.SOCI_TEST_TOOLS_KUBERNETES ?? '/opt/soci-test-tools/kubernetes/bin', 'helm');
export const CHART_DIR = join(repoRoot, 'deploy', 'kubernetes', 'soci-snapshotter');
export const RELEASE = 'soci-snapshotter';

/** helm with `args`; throws with helm's stderr unless it exits 0. */
export function helm(args: string[]): Promise<string> {
  return execOk(HELM, args);
}

/** `--set` arguments; helm splits a value on unescaped commas. */
export function setArgs(values: Record<string, string>): string[] {
  return Object.entries(values).flatMap(([k, v]) => ['--set', `${k}=${v.replaceAll(',', '\\,')}`]);
}

/** `helm template` of the chart with `values` (`--set` syntax: { 'metrics.port': '9555' }), one object per document. */
export async function renderChart(values: Record<string, string> = {}): Promise<object[]> {
  const out = await helm(['template', RELEASE, CHART_DIR, ...setArgs(values)]);
  const objects: object[] = [];
  for (const doc of parseAllDocuments(out)) {
    if (doc.errors.length) throw new Error(`helm template printed invalid YAML: ${doc.errors[0]!.message}`);
    const o: unknown = doc.toJS();
    if (o !== null && typeof o === 'object') objects.push(o);
  }
  return objects;
}

/** The first object of `kind` (and `name`, if given); throws if there is none. */
export function findObject(docs: object[], kind: string, name?: string): any {
  const o = docs.find((d: any) => d.kind === kind && (name === undefined || d.metadata?.name === name));
  if (!o) throw new Error(`no ${kind}${name ? ` ${name}` : ''} in the rendered chart`);
  return o;
}

/** The DaemonSet's container command and args, as the pod runs them: ['soci-snapshotter-grpc', '--address', ...]. */
export function daemonSetCommand(docs: object[]): string[] {
  const c = findObject(docs, 'DaemonSet').spec.template.spec.containers[0];
  return [...(c.command ?? []), ...(c.args ?? [])].map(String);
}
