/**
 * FUSE protocol benchmark (root): mounts a SyntheticFs (512 MiB generated file) and measures
 *  - request round trip: 4 KiB O_DIRECT reads in a loop from a child `dd` (one READ per read(2)),
 *    1 client and 4 clients;
 *  - sequential `dd bs=1M` of the 512 MiB file: cold (page cache of that file dropped with
 *    fadvise DONTNEED, every byte served by the daemon) and warm (page cache), with
 *    read_ahead_kb at the default and raised to 1024.
 * Usage: node --import tsx bench/fuse.ts [--reader pipe|worker] [--runs N] [--json]
 * Clients run in child processes (never touch the mount synchronously from the serving process).
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rmdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FuseServer } from '../src/fuse/index.js';
import { SyntheticFs } from '../harness/synthetic-fs.js';
import { benchArgs } from './lib/args.js';
import { median } from './lib/stats.js';

const MiB = 1024 * 1024;
const { values: flags } = benchArgs({
  options: { reader: { type: 'string', default: 'auto' }, runs: { type: 'string', default: '5' }, json: { type: 'boolean', default: false } },
});
const reader = flags.reader as 'pipe' | 'worker' | 'auto';
const runs = Number(flags.runs);
const json = flags.json;
const RT_COUNT = 20000;

function sh(cmd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('sh', ['-c', cmd], { maxBuffer: 16 * MiB }, (err, stdout, stderr) => {
      resolve({ code: err ? 1 : 0, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

/** Seconds from dd's summary line ("… copied, 0.52 s, 1.0 GB/s"). */
function ddSeconds(stderr: string): number {
  const m = /copied, ([0-9.e+-]+) s,/.exec(stderr);
  if (!m) throw new Error(`cannot parse dd output: ${stderr}`);
  return Number(m[1]);
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'soci-fuse-bench-'));
  const fsys = new SyntheticFs({ bigSize: 64 * MiB, hugeSize: 512 * MiB });
  const server = await FuseServer.mount(fsys, { mountpoint: dir, subtype: 'socibench', reader });
  const results: Record<string, number | string> = { reader: server.readerKind ?? '?', kernelMinor: server.kernel.minor };
  try {
    const huge = `${dir}/huge.bin`;

    // --- round trip ---
    await sh(`dd if=${huge} of=/dev/null bs=4k count=2000 iflag=direct status=none`); // warm up JIT
    const rt: number[] = [];
    for (let i = 0; i < runs; i++) {
      const reads0 = fsys.calls.read ?? 0;
      const r = await sh(`dd if=${huge} of=/dev/null bs=4k count=${RT_COUNT} iflag=direct`);
      // every read(2) must have been one READ to the daemon, or the figure means nothing
      if ((fsys.calls.read ?? 0) - reads0 < RT_COUNT) throw new Error('O_DIRECT reads did not reach the daemon');
      rt.push((ddSeconds(r.stderr) / RT_COUNT) * 1e6);
    }
    results.roundTripUs = Number(median(rt).toFixed(1));
    const par: number[] = [];
    for (let i = 0; i < runs; i++) {
      const reads0 = fsys.calls.read ?? 0;
      const t0 = performance.now();
      await sh(`for k in 0 1 2 3; do dd if=${huge} of=/dev/null bs=4k count=${RT_COUNT} skip=$((k*${RT_COUNT})) iflag=direct status=none & done; wait`);
      par.push((4 * RT_COUNT) / ((performance.now() - t0) / 1000));
      if ((fsys.calls.read ?? 0) - reads0 < 4 * RT_COUNT) throw new Error('parallel O_DIRECT reads did not reach the daemon');
    }
    results.reqPerSec4Clients = Math.round(median(par));

    // --- sequential ---
    const seq = async (label: string): Promise<void> => {
      const cold: number[] = [];
      const warm: number[] = [];
      const cpu: number[] = [];
      for (let i = 0; i < runs; i++) {
        await sh(`dd if=${huge} iflag=nocache count=0 status=none`); // fadvise DONTNEED: drop this file's pages
        const reads0 = fsys.calls.read ?? 0;
        const c0 = process.cpuUsage();
        const r = await sh(`dd if=${huge} of=/dev/null bs=1M`);
        const c = process.cpuUsage(c0);
        const served = (fsys.calls.read ?? 0) - reads0;
        if (served < 64) throw new Error(`cold run served only ${served} READs: page cache not dropped`);
        cold.push((512 * MiB) / ddSeconds(r.stderr) / 1e9);
        cpu.push((c.user + c.system) / 1e6 / ((512 * MiB) / 1e9));
        results[`${label}MeanReadKiB`] = Math.round((512 * MiB) / served / 1024);
        const w = await sh(`dd if=${huge} of=/dev/null bs=1M`);
        warm.push((512 * MiB) / ddSeconds(w.stderr) / 1e9);
      }
      results[`${label}ColdGBps`] = Number(median(cold).toFixed(2));
      results[`${label}ColdCpuSecPerGB`] = Number(median(cpu).toFixed(2));
      results[`${label}WarmGBps`] = Number(median(warm).toFixed(2));
    };
    await seq('ra128');
    await server.setReadaheadKb(1024);
    await seq('ra1024');
    results.timeouts = server.stats.timeouts;
    results.replyFailures = server.stats.replyFailures;
  } finally {
    await server.unmount().catch(() => undefined);
    await rmdir(dir).catch(() => undefined);
  }
  if (json) console.log(JSON.stringify(results));
  else for (const [k, v] of Object.entries(results)) console.log(`${k.padEnd(26)} ${v}`);
}

await main();
