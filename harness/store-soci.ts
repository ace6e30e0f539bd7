/**
 * Our installed `soci` (bin/soci.js) on a test containerd's image store, as AWS's walkthrough uses it:
 *   const s = sociOn(cd, root);            // --address <cd's socket> --root <root>
 *   await s.run(args, env?)                // never throws: { stdout, stderr, code }
 *   await s.ok(args)                       // exit 0 expected; its stdout
 *   await s.convertAndPush(src, dst, [...extra flags])
 *       ctr pull SRC, soci convert SRC DST, ctr push DST, then both records removed, so a later
 *       pull goes through the snapshotter; returns convert's stdout.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { exec, repoRoot, type ExecResult, type StartedContainerd } from './containerd.js';

const SOCI = join(repoRoot, 'bin', 'soci.js');

export interface StoreSoci {
  run(args: string[], env?: NodeJS.ProcessEnv): Promise<ExecResult>;
  ok(args: string[]): Promise<string>;
  convertAndPush(src: string, dst: string, extra?: string[]): Promise<string>;
}

export function sociOn(cd: StartedContainerd, root: string, env?: NodeJS.ProcessEnv): StoreSoci {
  const run = (args: string[], e = env) =>
    exec(process.execPath, [SOCI, '--address', cd.address, '--root', root, ...args], { timeoutMs: 300_000, ...(e ? { env: e } : {}) });
  const ok = async (args: string[]) => {
    const r = await run(args);
    assert.equal(r.code, 0, `soci ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  return {
    run,
    ok,
    async convertAndPush(src, dst, extra = []) {
      const pull = await cd.ctr(['images', 'pull', '--hosts-dir', cd.hostsDir, src], { timeoutMs: 300_000 });
      assert.equal(pull.code, 0, pull.stderr);
      const out = await ok(['convert', ...extra, src, dst]);
      const push = await cd.ctr(['images', 'push', '--hosts-dir', cd.hostsDir, dst], { timeoutMs: 300_000 });
      assert.equal(push.code, 0, push.stderr);
      for (const name of [src, dst]) assert.equal((await cd.ctr(['images', 'rm', '--sync', name])).code, 0);
      return out;
    },
  };
}
