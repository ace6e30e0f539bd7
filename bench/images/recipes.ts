/**
 * The five images of the time-to-ready benchmark, as ordered layer recipes plus their workloads.
 * A `debs` layer holds the apt closure of every `debs` root up to and including it, minus the
 * packages of the layers below (so "base" is the same closure, hence the same blob, everywhere).
 */
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { extractDebs, fetchDebs, pkgId, resolveClosure } from './apt.js';
import type { ImageName, Workload } from './index.js';
import type { FillResult, LayerMeta } from './layer.js';
import { PATH_ENV, withStage, writeEtc } from './rootfs.js';
import { sha256Hex } from '../../src/oci/digest.js';
import { fileBytes, run } from './sh.js';
import { clusteredList, layerPlan, scatteredList, writePlan, type ReadList, type SynthFile } from './synthetic.js';

/** Bump to rebuild every layer and image. */
export const RECIPE = 'bench-images-v1';

export interface Ctx {
  workDir: string;
  lower: LayerMeta[];
}
export interface LayerDef {
  id: string;
  /** Debian roots (name or name=version) added by this layer */
  debs?: string[] | (() => Promise<string[]>);
  /** a step after unpacking the debs; `version` is part of the layer's cache key */
  post?: { version: string; run: (dir: string, ctx: Ctx) => Promise<void> };
  /** a generated layer; `key` must change whenever its content would (lower layers' keys are added) */
  gen?: { key: string | ((workDir: string) => Promise<string>); fill: (dir: string, ctx: Ctx) => Promise<FillResult> };
}
export interface Recipe {
  name: ImageName;
  layers: LayerDef[];
  env: string[];
  workloads: (layers: LayerMeta[]) => Workload[];
}

const here = dirname(fileURLToPath(import.meta.url));
const JAVA = '/usr/lib/jvm/java-17-openjdk-amd64/bin/java';
let stages = 0;
const stageDir = (ctx: Ctx) => join(ctx.workDir, 'images', `.stage${stages++}-${process.pid}`);
const chrootEnv = { PATH: PATH_ENV.slice(5), LC_ALL: 'C', PYTHONHASHSEED: '0', HOME: '/root' };

// ---- base: libc, libstdc++, zlib, OpenSSL, CA certificates ----
const base: LayerDef = {
  id: 'base',
  debs: ['libc6', 'libstdc++6', 'zlib1g', 'libssl3', 'ca-certificates'],
  post: {
    version: 'base-v1',
    // What ca-certificates' postinst would have produced: the PEM bundle of all Mozilla roots.
    run: async (dir) => {
      const src = join(dir, 'usr/share/ca-certificates/mozilla');
      const pems = readdirSync(src)
        .filter((f) => f.endsWith('.crt'))
        .sort()
        .map((f) => readFileSync(join(src, f), 'utf8').trimEnd() + '\n');
      mkdirSync(join(dir, 'etc/ssl/certs'), { recursive: true });
      writeFileSync(join(dir, 'etc/ssl/certs/ca-certificates.crt'), pems.join(''), { mode: 0o644 });
      writeEtc(dir);
    },
  },
};

// ---- Python 3.11 runtime, with the stdlib byte-compiled like Debian's postinst would ----
const python: LayerDef = {
  id: 'python3.11',
  debs: ['python3.11'],
  post: {
    version: 'pyc-v1',
    // Compile with the image's own interpreter in a throwaway chroot (lower layers + this one), then
    // move the new __pycache__ dirs into the layer. unchecked-hash: the .pyc stays valid although
    // the tar resets source mtimes to 0; single process + fixed hash seed: reproducible bytes.
    run: async (dir, ctx) => {
      await withStage(
        ctx.lower.map((l) => l.blob),
        stageDir(ctx),
        async (root) => {
          await run(['cp', '-al', `${dir}/.`, root]);
          const r = await run(
            [
              'sh',
              '-c',
              'umask 022; exec chroot "$0" /usr/bin/python3.11 -m compileall -q -x "lib2to3/tests|test/bad" --invalidation-mode unchecked-hash /usr/lib/python3.11',
              root,
            ],
            { env: chrootEnv },
          ).catch((e: Error) => e.message);
          if (r) console.error(`  compileall: ${r.slice(0, 400)}`);
          const out = await run(['find', 'usr/lib/python3.11', '-type', 'd', '-name', '__pycache__'], { cwd: root });
          for (const rel of out.split('\n').filter(Boolean).sort()) {
            if (existsSync(join(dir, rel))) continue;
            mkdirSync(dirname(join(dir, rel)), { recursive: true });
            renameSync(join(root, rel), join(dir, rel));
          }
        },
      );
    },
  },
};

/** A small top layer: /etc/passwd, /etc/group, /tmp, plus `files`. */
function appLayer(key: string, files: Record<string, string> = {}): LayerDef {
  return {
    id: 'app',
    gen: {
      key: `${key}:${sha256Hex(JSON.stringify(files))}`,
      fill: async (dir) => {
        writeEtc(dir);
        for (const [p, c] of Object.entries(files)) {
          mkdirSync(dirname(join(dir, p)), { recursive: true });
          writeFileSync(join(dir, p), c, { mode: 0o644 });
        }
        return {};
      },
    },
  };
}

const exitOk = { kind: 'exit' } as const;

// The official python:3.11 and node:18 images are built on buildpack-deps (compilers, headers, git):
// ~1 GB of tools a hello-world never touches. python and node carry the same kind of bulk (the gcc
// and devtools layers), so their size is that of the images people actually pull
// (python image: 257 MB compressed / 668 MB raw).
const gccLayer: LayerDef = { id: 'gcc', debs: ['gcc-12', 'g++-12'] };
const devtoolsLayer: LayerDef = { id: 'devtools', debs: ['perl', 'libpython3.11-dev', 'git'] };

// ---- 1. echo: python's http.server over ~850 MB of never-read toolchains ----
const echo: Recipe = {
  name: 'echo',
  layers: [
    base,
    python,
    gccLayer,
    { id: 'clang', debs: ['clang-15'] },
    devtoolsLayer,
    appLayer('echo-app-v1', { 'www/index.html': '<html><body>hello from a lazily loaded image</body></html>\n' }),
  ],
  env: [PATH_ENV],
  workloads: () => [
    {
      name: 'http',
      description: 'python3.11 -m http.server serving /www/index.html, ready on the first 200',
      command: (port) => ['/usr/bin/python3.11', '-m', 'http.server', String(port), '--bind', '127.0.0.1', '--directory', '/www'],
      ready: { kind: 'http', path: '/' },
    },
  ],
};

// ---- 2. python: the interpreter + toolchain + numpy/pandas/docs/testsuite it never touches ----
const IMPORTS =
  'json, http.server, email.parser, email.policy, sqlite3, decimal, asyncio, urllib.request, xml.etree.ElementTree, logging, argparse, datetime, ssl, hashlib, csv, unittest, concurrent.futures, pathlib, zipfile, tarfile';
const pythonImage: Recipe = {
  name: 'python',
  layers: [
    base,
    python,
    gccLayer,
    devtoolsLayer,
    { id: 'pydata', debs: ['python3-numpy', 'python3-pandas', 'libpython3.11-testsuite', 'python3-doc'] },
    appLayer('python-app-v1'),
  ],
  env: [PATH_ENV],
  workloads: () => [
    { name: 'hello', description: 'python3.11 -c print("hello")', command: () => ['/usr/bin/python3.11', '-c', 'print("hello")'], ready: exitOk },
    {
      name: 'imports',
      description: `python3.11 imports ${IMPORTS.split(', ').length} stdlib modules and exits`,
      command: () => ['/usr/bin/python3.11', '-c', `import ${IMPORTS}; print("imported")`],
      ready: exitOk,
    },
  ],
};

// ---- 3. node: Debian's nodejs 18 (not the host's nodesource build) + npm's closure, on buildpack-deps-like bulk ----
/** The newest nodejs version that comes from Debian's own archive. */
async function debianNodejs(): Promise<string[]> {
  const out = await run(['apt-cache', 'madison', 'nodejs']);
  const v = out
    .split('\n')
    .map((l) => l.split('|').map((s) => s.trim()))
    .find((f) => f[2]?.includes('deb.debian.org'))?.[1];
  if (!v) throw new Error('no Debian nodejs version in apt-cache madison nodejs');
  return [`nodejs=${v}`];
}
const nodeImage: Recipe = {
  name: 'node',
  layers: [base, python, gccLayer, devtoolsLayer, { id: 'nodejs', debs: debianNodejs }, { id: 'npm', debs: ['npm'] }, appLayer('node-app-v1')],
  env: [PATH_ENV],
  workloads: () => [
    {
      name: 'http',
      description: "node -e: http.createServer answering 'ok', ready on the first 200",
      command: (port) => [
        '/usr/bin/node',
        '-e',
        `require('http').createServer((q,s)=>s.end('ok')).listen(${port},'127.0.0.1',()=>console.log('Server ready'))`,
      ],
      ready: { kind: 'http', path: '/' },
    },
  ],
};

// ---- 4. hostile: a JVM that reads every JDK module and scans a ~45 MB classpath at start ----
const JAVA_LIBS = [
  'libspring-context-java',
  'libspring-web-java',
  'libjackson2-databind-java',
  'libjetty9-java',
  'libnetty-java',
  'libguava-java',
  'libbcprov-java',
  'libh2-java',
  'libhibernate3-java',
];
const scanSource = readFileSync(join(here, 'Scan.java'), 'utf8');
const hostile: Recipe = {
  name: 'hostile',
  layers: [
    base,
    { id: 'jre', debs: ['openjdk-17-jre-headless'] },
    { id: 'javalibs', debs: JAVA_LIBS },
    {
      id: 'app',
      gen: {
        key: `hostile-app-v1:${sha256Hex(scanSource)}`,
        // javac from the image's own JRE (its lib/modules carries jdk.compiler) in a throwaway chroot
        fill: async (dir, ctx) => {
          await withStage(
            ctx.lower.map((l) => l.blob),
            stageDir(ctx),
            async (root) => {
              mkdirSync(join(root, 'tmp/src'), { recursive: true });
              writeFileSync(join(root, 'tmp/src/Scan.java'), scanSource);
              await run(
                [
                  'chroot',
                  root,
                  JAVA,
                  '-m',
                  'jdk.compiler/com.sun.tools.javac.Main',
                  '-encoding',
                  'UTF-8',
                  '--release',
                  '17',
                  '-d',
                  '/tmp/out',
                  '/tmp/src/Scan.java',
                ],
                { env: chrootEnv },
              );
              mkdirSync(join(dir, 'app'), { recursive: true });
              copyFileSync(join(root, 'tmp/out/Scan.class'), join(dir, 'app/Scan.class'));
              copyFileSync(join(root, 'tmp/src/Scan.java'), join(dir, 'app/Scan.java'));
            },
          );
          writeEtc(dir);
          return {};
        },
      },
    },
  ],
  env: [PATH_ENV, 'JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64'],
  workloads: () => [
    {
      name: 'http',
      description:
        "java -Xshare:off: reads every JDK module resource (jrt:/) and every entry of every jar in /usr/share/java (~65 % of the image's file bytes), then serves HTTP",
      command: (port) => [JAVA, '-Xshare:off', '-cp', '/app', 'Scan', String(port)],
      ready: { kind: 'http', path: '/' },
    },
    {
      name: 'scan',
      description: 'the same JVM start and scan, then exits 0',
      command: () => [JAVA, '-Xshare:off', '-cp', '/app', 'Scan'],
      ready: exitOk,
    },
  ],
};

// ---- 5. fat-sparse: 3 × 500 MB synthetic layers; workloads read a fixed fraction and exit ----
const BULK_LAYERS = 3;
const BULK_BYTES = 500e6;
const FRACTIONS = [0.01, 0.05, 0.2];
const bulkLayer = (n: number): LayerDef => ({
  id: `bulk${n}`,
  gen: {
    key: `synthetic-v1:${n}:${BULK_BYTES}`,
    fill: async (dir) => {
      const plan = layerPlan(n, BULK_BYTES);
      writePlan(dir, plan);
      return { notes: { files: plan.length } };
    },
  },
});
async function busyboxPkgs(workDir: string) {
  return resolveClosure(['busybox-static'], workDir);
}
const fatSparse: Recipe = {
  name: 'fat-sparse',
  layers: [
    base,
    ...Array.from({ length: BULK_LAYERS }, (_, i) => bulkLayer(i + 1)),
    {
      id: 'app',
      gen: {
        key: async (workDir) => `fat-app-v1:${(await busyboxPkgs(workDir)).map(pkgId).join(',')}:${FRACTIONS.join(',')}`,
        fill: async (dir, ctx) => {
          const pkgs = await busyboxPkgs(ctx.workDir);
          await extractDebs(await fetchDebs(pkgs, join(ctx.workDir, 'debs')), dir);
          writeEtc(dir);
          // denominator: every regular-file byte of the image (the lists themselves are a few KB)
          const denominator = ctx.lower.reduce((s, l) => s + l.fileBytes, 0) + (await fileBytes(dir)).bytes;
          const plans = Array.from({ length: BULK_LAYERS }, (_, i) => layerPlan(i + 1, BULK_BYTES));
          const all: SynthFile[] = plans.flat();
          const lists: ReadList[] = [];
          for (const f of FRACTIONS) {
            const pct = `${Math.round(f * 100)}pct`;
            lists.push(clusteredList(`${pct}-clustered`, plans[1]!, f * denominator, denominator));
            lists.push(scatteredList(`${pct}-scattered`, all, f * denominator, denominator, 4242 + Math.round(f * 1000)));
          }
          mkdirSync(join(dir, 'lists'), { recursive: true });
          for (const l of lists) writeFileSync(join(dir, 'lists', `${l.name}.txt`), l.files.join('\n') + '\n', { mode: 0o644 });
          return {
            packages: pkgs.map(pkgId),
            notes: { denominator, lists: lists.map((l) => ({ name: l.name, files: l.files.length, bytes: l.bytes, fraction: l.fraction, detail: l.detail })) },
          };
        },
      },
    },
  ],
  env: [PATH_ENV],
  workloads: (layers) => {
    const notes = layers[layers.length - 1]!.notes as { lists: Array<{ name: string; files: number; bytes: number; fraction: number; detail: string }> };
    return notes.lists.map((l) => ({
      name: l.name,
      description: `reads ${(l.fraction * 100).toFixed(2)} % of the image's file bytes (${(l.bytes / 1e6).toFixed(1)} MB): ${l.detail}`,
      // busybox cat over the list, batched by xargs (the list is far beyond one argv)
      command: () => ['/bin/busybox', 'sh', '-c', `exec /bin/busybox xargs /bin/busybox cat < /lists/${l.name}.txt > /dev/null`],
      ready: exitOk,
    }));
  },
};

export const RECIPES: Record<ImageName, Recipe> = { echo, python: pythonImage, node: nodeImage, hostile, 'fat-sparse': fatSparse };
