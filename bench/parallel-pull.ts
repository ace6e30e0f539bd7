/**
 * The parallel puller alone, no containerd: every layer of an OCI layout pulled from a local
 * registry into scratch dirs as the snapshotter's Prepares would (the first layer starts them all,
 * each later one claims its own), with the bench's parallel settings. Per run: wall time, the
 * process's CPU (threads included, the unpigz children not), the main thread's CPU (what the
 * daemon's event loop pays) and peak RSS. Runs the built product (dist/): from source, every worker
 * would start by compiling TypeScript. Usage (root; the layout defaults to the echo bench image,
 * which `npm run bench` builds):
 *   node --import tsx bench/parallel-pull.ts [--layout DIR] [--runs 3] [--unpacks 10]
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { startRegistry } from '../harness/registry.js';
import { benchArgs } from './lib/args.js';
import { median } from './lib/stats.js';

const exec = promisify(execFile);
const { values: flags } = benchArgs({
  options: {
    layout: { type: 'string', default: resolve('.bench-work', 'images', 'echo', 'layout') },
    runs: { type: 'string', default: '3' },
    unpacks: { type: 'string', default: '10' },
  },
});

/** CPU of the main thread alone, ms (utime + stime of its task). */
function mainThreadCpuMs(): number {
  const f = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
}

async function main(): Promise<void> {
  if (!existsSync(join(flags.layout, 'index.json'))) throw new Error(`no OCI layout at ${flags.layout} (npm run bench builds the echo image)`);
  await exec('npx', ['tsc', '-p', 'tsconfig.build.json']);
  const dist = resolve('dist');
  const { ImagePuller, decompressTools } = (await import(join(dist, 'pull', 'index.js'))) as typeof import('../src/pull/index.js');
  const { RegistryClient } = (await import(join(dist, 'registry', 'index.js'))) as typeof import('../src/registry/index.js');
  const { silentLogger } = (await import(join(dist, 'logger.js'))) as typeof import('../src/logger.js');
  const cleanups: Array<() => unknown> = [];
  try {
    const reg = await startRegistry({ after: (fn) => cleanups.push(fn) });
    await exec('skopeo', ['copy', '--dest-tls-verify=false', `oci:${flags.layout}`, `docker://${reg.host}/bench:v1`]);
    const index = JSON.parse(readFileSync(join(flags.layout, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
    const manifestDigest = index.manifests[0]!.digest;
    const manifest = JSON.parse(readFileSync(join(flags.layout, 'blobs', 'sha256', manifestDigest.slice(7)), 'utf8')) as {
      layers: Array<{ digest: string; size: number }>;
    };
    const rows: Array<{ wall: number; cpu: number; main: number; rss: number }> = [];
    for (let run = 0; run < Number(flags.runs); run++) {
      const top = resolve('.bench-work', 'parallel-pull');
      rmSync(top, { recursive: true, force: true });
      mkdirSync(top, { recursive: true });
      const client = new RegistryClient({ registry: reg.host, plainHttp: true, connections: 0 });
      const puller = await ImagePuller.open({
        stagingDir: join(top, 'staging'),
        contentDir: join(top, 'content'),
        clientFor: () => client,
        logger: silentLogger,
        settings: {
          maxConcurrentDownloads: -1,
          maxConcurrentDownloadsPerImage: 10,
          chunkSize: 16 << 20,
          maxConcurrentUnpacks: -1,
          maxConcurrentUnpacksPerImage: Number(flags.unpacks),
          discardUnpackedLayers: true,
          tools: decompressTools({}),
        },
      });
      const t0 = performance.now();
      const r0 = process.resourceUsage();
      const m0 = mainThreadCpuMs();
      for (const [i, l] of manifest.layers.entries()) {
        const dir = join(top, `layer-${i}`);
        mkdirSync(dir);
        await puller.image({ registry: reg.host, repository: 'bench', manifestDigest, layerDigest: l.digest, size: l.size }, dir);
      }
      const r1 = process.resourceUsage();
      const row = {
        wall: performance.now() - t0,
        cpu: (r1.userCPUTime - r0.userCPUTime + r1.systemCPUTime - r0.systemCPUTime) / 1000,
        main: mainThreadCpuMs() - m0,
        rss: r1.maxRSS / 1024,
      };
      rows.push(row);
      console.log(
        `run ${run + 1}: ${row.wall.toFixed(0)} ms, process CPU ${row.cpu.toFixed(0)} ms, main thread ${row.main} ms, peak RSS ${row.rss.toFixed(0)} MB`,
      );
      await client.close();
      rmSync(top, { recursive: true, force: true });
    }
    const m = (k: 'wall' | 'cpu' | 'main') => median(rows.map((r) => r[k])).toFixed(0);
    console.log(
      `median: ${m('wall')} ms, process CPU ${m('cpu')} ms, main thread ${m('main')} ms; peak RSS ${Math.max(...rows.map((r) => r.rss)).toFixed(0)} MB`,
    );
  } finally {
    for (const fn of cleanups.reverse()) await fn();
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`bench: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
