/**
 * The kubeconfig keychain (`[kubeconfig_keychain]`, AWS's docs/registry-authentication.md
 * "Kubernetes Secrets"): the daemon keeps a copy of every `kubernetes.io/dockerconfigjson` Secret of
 * every namespace, read through the API server a kubeconfig names, and answers the registry
 * credential lookups of lazy mounts from it.
 *
 * Kubeconfig: `kubeconfig_path`; when empty, the files of $KUBECONFIG (merged, the first file wins on
 * a name), else ~/.kube/config, else the pod's service account, as client-go's loading rules. One
 * that does not exist yet is looked for every 10 s (the daemon may start before the control plane).
 *
 * Sync, with client-go's list-and-watch semantics over @kubernetes/client-node:
 *  - list (field selector `type=kubernetes.io/dockerconfigjson`, all namespaces): the result replaces
 *    the whole copy, so Secrets deleted while disconnected go too; then watch from the list's
 *    resourceVersion; every event (and bookmark) moves the resourceVersion on;
 *  - a watch the server ends (its timeoutSeconds, a restart) is resumed from that resourceVersion;
 *  - 410 Gone (at the watch's start or as an ERROR event: the version was compacted away) → list again;
 *  - anything else (API server down, 401/403, TLS, an unreadable kubeconfig, no answer in 60 s) is
 *    logged and retried with capped exponential backoff while the copy keeps serving what it had
 *    (after a 401 the kubeconfig is read again: a token file may have been rotated); a watch that
 *    outlives its timeout by 30 s (a dead connection) is dropped and resumed.
 * All in the background: start() returns at once (the library, ~1 s to load, is imported by the
 * loop), the daemon serves while the API server is unreachable, "first sync complete" is logged
 * once. Lookups in the first 10 s after start wait for the first sync (a restarted daemon's first
 * reads), never longer.
 *
 * Lookup: the first Secret in namespace/name order with credentials for the registry
 * (dockerconfigjson.ts reads a Secret as Docker's config file). Unlike AWS's: that order is fixed
 * (AWS's is a Go map's); a Secret updated to a malformed value stops serving (AWS's keeps the
 * previous value); an unreadable kubeconfig is retried (AWS's stops syncing).
 *
 * Credentials never reach a log line or an error: a malformed Secret is named by namespace/name and
 * a fixed reason, and API errors are reduced to their status, reason or errno.
 */
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, join } from 'node:path';
import type { KubeConfig, V1Secret, Watch } from '@kubernetes/client-node';
import type { Logger } from '../logger.js';
import type { CredentialProvider } from '../registry/types.js';
import { type AuthEntry, DOCKERCONFIGJSON_TYPE, lookupCredentials, MalformedSecret, secretEntries } from './dockerconfigjson.js';

const SELECTOR = `type=${DOCKERCONFIGJSON_TYPE}`;
const SA_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';
const SECRETS_PATH = '/api/v1/secrets';
/** how long a list, or the start of a watch, may go unanswered */
const ANSWER_MS = 60_000;

/** An error as status, reason or errno: never a body, header or URL userinfo. */
export function describeError(e: unknown): string {
  const x = (e ?? {}) as { code?: unknown; body?: unknown; message?: unknown };
  const status = httpStatus(e);
  if (status !== undefined) {
    const body = (typeof x.body === 'string' ? jsonOrUndefined(x.body) : x.body) as { message?: unknown } | null | undefined;
    const reason = typeof body?.message === 'string' ? body.message : '';
    return `HTTP ${status}${reason ? `: ${reason.slice(0, 300)}` : ''}`;
  }
  if (typeof x.code === 'string') return x.code;
  if (e instanceof MalformedSecret) return e.message;
  const msg = typeof x.message === 'string' ? x.message.split('\n')[0]! : String(e);
  return withoutUserinfo(msg).slice(0, 300);
}

/** The HTTP status of a client-node error (ApiException's `code`, Watch's `statusCode`). */
function httpStatus(e: unknown): number | undefined {
  const x = (e ?? {}) as { code?: unknown; statusCode?: unknown };
  return typeof x.statusCode === 'number' ? x.statusCode : typeof x.code === 'number' ? x.code : undefined;
}

function jsonOrUndefined(s: string): unknown {
  try {
    return JSON.parse(s);
  } catch {
    return undefined;
  }
}

/** `scheme://user:pass@host` → `scheme://host` wherever it appears. */
function withoutUserinfo(s: string): string {
  return s.replace(/\/\/[^/@\s]*@/g, '//');
}

export interface KubeconfigKeychainOptions {
  /** `kubeconfig_path` (empty: $KUBECONFIG, ~/.kube/config, then in-cluster) */
  kubeconfigPath: string;
  logger: Logger;
  env?: NodeJS.ProcessEnv;
  /** first and largest pause between failed attempts (default 1 s and 30 s) */
  retryMs?: { min: number; max: number };
  /** how often a missing kubeconfig is looked for again (default 10 s) */
  pollMs?: number;
  /** watch duration asked of the server (default: 5–10 min at random, as client-go's reflector) */
  watchTimeoutSec?: () => number;
  /** how long lookups right after start wait for the first sync (default 10 s) */
  firstSyncWaitMs?: number;
}

interface Api {
  list(): Promise<{ items: V1Secret[]; metadata?: { resourceVersion?: string } }>;
  watch: Watch;
}

/** A watch event object: a Secret, a bookmark, or a Status for ERROR. */
type EventObject = Partial<V1Secret> & { code?: number; message?: string };

export class KubeconfigKeychain {
  private secrets = new Map<string, AuthEntry[]>();
  private ordered: Array<[string, AuthEntry[]]> | undefined;
  private resourceVersion = '';
  private stopped = false;
  private signalStop!: () => void;
  private readonly stopping = new Promise<void>((r) => (this.signalStop = r));
  private loop: Promise<void> | undefined;
  private abortWatch: (() => void) | undefined;
  private markSynced!: () => void;
  /** resolves when the first list has been applied */
  readonly synced = new Promise<void>((r) => (this.markSynced = r));
  private isSynced = false;
  private firstWait: Promise<void> = Promise.resolve();
  private waitingLogged = false;
  private readonly log: Logger;

  constructor(private readonly o: KubeconfigKeychainOptions) {
    this.log = o.logger;
  }

  /** Starts syncing in the background; returns at once. */
  start(): void {
    if (this.loop) return;
    this.firstWait = Promise.race([this.synced, this.delay(this.o.firstSyncWaitMs ?? 10_000)]);
    this.loop = this.run().catch((e: unknown) => this.log.error({ error: describeError(e) }, 'kubeconfig keychain: sync stopped'));
  }

  /** Ends the watch and the retries; a request in flight is abandoned. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.signalStop();
    this.abortWatch?.();
    await this.loop;
  }

  readonly provider: CredentialProvider = async (registry) => {
    await this.firstWait;
    this.ordered ??= [...this.secrets].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    const found = lookupCredentials(this.ordered, registry);
    if (found) this.log.debug({ registry, secret: found.secret }, 'kubeconfig keychain: credentials found');
    return found?.credentials;
  };

  private async run(): Promise<void> {
    const retry = this.o.retryMs ?? { min: 1000, max: 30_000 };
    let failures = 0;
    let api: Api | undefined;
    while (!this.stopped) {
      const t0 = Date.now();
      let events = 0;
      try {
        api ??= await this.connect();
        if (this.stopped) break;
        if (!api) {
          await this.delay(this.o.pollMs ?? 10_000);
          continue;
        }
        if (!this.resourceVersion) await this.list(api);
        if (this.stopped) break;
        const end = await this.watchOnce(api, () => events++);
        if (end === 'gone') this.resourceVersion = '';
        this.log.debug({ resourceVersion: this.resourceVersion, end }, 'kubeconfig keychain: watch ended');
        if (events > 0 || Date.now() - t0 >= 1000) failures = 0;
        else await this.delay(backoff(++failures, retry)); // a server that ends every watch at once
      } catch (e) {
        if (this.stopped) break;
        if (httpStatus(e) === 401) api = undefined; // read the kubeconfig again: its token (file) may have been rotated
        const ms = backoff(++failures, retry);
        this.log.warn({ error: describeError(e), retryInMs: ms }, 'kubeconfig keychain: cannot sync secrets from the API server; retrying');
        await this.delay(ms);
      }
    }
  }

  /** The API client from the kubeconfig, or undefined while there is none. */
  private async connect(): Promise<Api | undefined> {
    const files = this.kubeconfigFiles();
    if (files === undefined) return undefined;
    const k8s = await import('@kubernetes/client-node');
    const kc = new k8s.KubeConfig();
    try {
      if (files === 'in-cluster') kc.loadFromCluster();
      else loadMerged(kc, files, () => new k8s.KubeConfig());
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new Error(`the kubeconfig cannot be read or parsed${typeof code === 'string' ? ` (${code})` : ''}`);
    }
    const server = kc.getCurrentCluster()?.server;
    if (!server) throw new Error('the kubeconfig has no current cluster');
    const core = kc.makeApiClient(k8s.CoreV1Api);
    this.log.info(
      { kubeconfig: files === 'in-cluster' ? 'in-cluster' : files.join(delimiter), server: withoutUserinfo(server) },
      'kubeconfig keychain: syncing dockerconfigjson secrets of all namespaces',
    );
    return { list: () => core.listSecretForAllNamespaces({ fieldSelector: SELECTOR }), watch: new k8s.Watch(kc) };
  }

  /** The kubeconfig files to read, 'in-cluster', or undefined when there is nothing yet. */
  private kubeconfigFiles(): string[] | 'in-cluster' | undefined {
    const env = this.o.env ?? process.env;
    let files: string[];
    if (this.o.kubeconfigPath) files = [this.o.kubeconfigPath];
    else if (env.KUBECONFIG) files = env.KUBECONFIG.split(delimiter).filter(Boolean);
    else files = [join(env.HOME || homedir(), '.kube', 'config')];
    const found = files.filter((f) => existsSync(f));
    if (found.length > 0) return found;
    if (!this.o.kubeconfigPath && env.KUBERNETES_SERVICE_HOST && existsSync(join(SA_DIR, 'token'))) return 'in-cluster';
    if (!this.waitingLogged) this.log.info({ kubeconfig: files.join(delimiter) }, 'kubeconfig keychain: waiting for the kubeconfig to exist');
    this.waitingLogged = true;
    return undefined;
  }

  /** Lists every dockerconfigjson Secret: the result replaces what was kept. */
  private async list(api: Api): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no answer to the list in ${ANSWER_MS / 1000} s`)), ANSWER_MS)));
    const list = await Promise.race([api.list(), late, this.stopping]).finally(() => clearTimeout(timer));
    if (!list) return; // stopped
    const next = new Map<string, AuthEntry[]>();
    for (const s of list.items) {
      const parsed = this.parse(s);
      if (parsed) next.set(...parsed);
    }
    this.secrets = next;
    this.ordered = undefined;
    this.resourceVersion = list.metadata?.resourceVersion ?? '';
    this.log.info({ secrets: next.size, resourceVersion: this.resourceVersion }, 'kubeconfig keychain: listed secrets');
    if (this.isSynced) return;
    this.isSynced = true;
    this.markSynced();
    this.log.info({ secrets: next.size }, 'kubeconfig keychain: first sync complete');
  }

  /** [namespace/name, entries] of a dockerconfigjson Secret, or undefined (warned) when malformed. */
  private parse(s: Partial<V1Secret>): [string, AuthEntry[]] | undefined {
    const key = `${s.metadata?.namespace ?? ''}/${s.metadata?.name ?? ''}`;
    if (s.type !== DOCKERCONFIGJSON_TYPE) return undefined;
    try {
      return [key, secretEntries(s)];
    } catch (e) {
      this.log.warn({ secret: key, reason: describeError(e) }, 'kubeconfig keychain: secret skipped: not a valid dockerconfigjson');
      return undefined;
    }
  }

  private apply(type: string, obj: EventObject): void {
    const key = `${obj.metadata?.namespace ?? ''}/${obj.metadata?.name ?? ''}`;
    const parsed = type === 'DELETED' ? undefined : this.parse(obj);
    if (parsed) this.secrets.set(key, parsed[1]);
    else this.secrets.delete(key);
    this.ordered = undefined;
    const registries = parsed?.[1].map((e) => e.host);
    this.log.debug(
      { secret: key, event: type, resourceVersion: obj.metadata?.resourceVersion, ...(registries ? { registries } : {}) },
      'kubeconfig keychain: secret changed',
    );
  }

  /** One watch from the current resourceVersion, until the server ends it: 'gone' asks for a new list. */
  private watchOnce(api: Api, onEvent: () => void): Promise<'ended' | 'gone'> {
    const timeoutSec = this.o.watchTimeoutSec?.() ?? 300 + Math.floor(Math.random() * 300);
    return new Promise((resolve, reject) => {
      let controller: AbortController | undefined;
      let settled = false;
      let outcome: 'ended' | 'gone' | Error = 'ended';
      let watchdog = setTimeout(() => finish(new Error(`no answer to the watch in ${ANSWER_MS / 1000} s`)), ANSWER_MS);
      const finish = (err: unknown) => {
        if (settled) return;
        settled = true;
        clearTimeout(watchdog);
        this.abortWatch = undefined;
        controller?.abort();
        if (this.stopped) resolve('ended');
        else if (outcome === 'gone' || httpStatus(err) === 410) resolve('gone');
        else if (outcome instanceof Error) reject(outcome);
        else if (err) reject(err);
        else resolve('ended');
      };
      this.abortWatch = () => finish(null);
      const params = { fieldSelector: SELECTOR, resourceVersion: this.resourceVersion, allowWatchBookmarks: true, timeoutSeconds: timeoutSec };
      const onObject = (type: string, obj: EventObject) => {
        if (settled) return;
        if (type === 'ERROR') {
          if (obj?.code === 410) outcome = 'gone';
          else outcome = Object.assign(new Error('watch error event'), { statusCode: obj?.code, body: { message: obj?.message } });
          return;
        }
        onEvent();
        if (type === 'ADDED' || type === 'MODIFIED' || type === 'DELETED') this.apply(type, obj);
        const rv = obj?.metadata?.resourceVersion;
        if (rv) this.resourceVersion = rv;
      };
      api.watch.watch(SECRETS_PATH, params, onObject, finish).then((c) => {
        controller = c;
        if (settled) return c.abort();
        // The server ends the watch after timeoutSec; one that outlives it sits on a dead connection.
        clearTimeout(watchdog);
        watchdog = setTimeout(() => finish(null), (timeoutSec + 30) * 1000);
      }, finish);
    });
  }

  /** Resolves after `ms`, or at once when the keychain stops. */
  private delay(ms: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    return Promise.race([new Promise<void>((r) => (timer = setTimeout(r, ms))), this.stopping]).finally(() => clearTimeout(timer));
  }
}

/** min·2^(n-1), capped at max, ±20 % jitter. */
function backoff(n: number, r: { min: number; max: number }): number {
  const base = Math.min(r.max, r.min * 2 ** Math.min(n - 1, 30));
  return Math.round(base * (0.8 + Math.random() * 0.4));
}

/** Loads `files` into `kc`: the first file's current context; clusters, users and contexts by name, first file first. */
function loadMerged(kc: KubeConfig, files: string[], fresh: () => KubeConfig): void {
  kc.loadFromFile(files[0]!);
  for (const f of files.slice(1)) {
    const more = fresh();
    more.loadFromFile(f);
    if (!kc.currentContext) kc.currentContext = more.currentContext;
    for (const c of more.clusters) if (!kc.clusters.some((x) => x.name === c.name)) kc.addCluster(c);
    for (const u of more.users) if (!kc.users.some((x) => x.name === u.name)) kc.addUser(u);
    for (const c of more.contexts) if (!kc.contexts.some((x) => x.name === c.name)) kc.addContext(c);
  }
}
