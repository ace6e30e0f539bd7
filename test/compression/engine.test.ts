/**
 * Engine selection: SOCI_ZLIB_ENGINE=js|native is honoured, forcing a missing native engine is a
 * clear ERR_UNSUPPORTED, and without the addon everything falls back to the JS engine automatically.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { gzipSync } from 'node:zlib';
import { isSociError } from '../../src/errors.js';
import { chooseEngine, createInflater, defaultAddonPath, loadAddon, Z_BLOCK, Z_OK } from '../../src/compression/engine.js';
import { createLayerIndexer, nativeAvailable, selectEngine } from '../../src/compression/index.js';
import { tempDir } from '../../harness/env.js';
import { indexBlob, mixed, testEngines } from './helpers.js';

const root = resolve(import.meta.dirname, '../..');

test('chooseEngine: forced values, automatic choice, bad values', () => {
  assert.equal(chooseEngine('js', true), 'js');
  assert.equal(chooseEngine('JS', false), 'js');
  assert.equal(chooseEngine('native', true), 'native');
  assert.equal(chooseEngine(undefined, true), 'native');
  assert.equal(chooseEngine('', false), 'js');
  assert.equal(chooseEngine(undefined, false), 'js');
  assert.throws(
    () => chooseEngine('native', false),
    (e: unknown) => isSociError(e, 'ERR_UNSUPPORTED') && /SOCI_ZLIB_ENGINE=native/.test((e as Error).message),
  );
  assert.throws(
    () => chooseEngine('zstd', true),
    (e: unknown) => isSociError(e, 'ERR_USAGE'),
  );
});

test('selectEngine honours SOCI_ZLIB_ENGINE in this process', () => {
  const saved = process.env.SOCI_ZLIB_ENGINE;
  try {
    process.env.SOCI_ZLIB_ENGINE = 'js';
    assert.equal(selectEngine(), 'js');
    process.env.SOCI_ZLIB_ENGINE = 'native';
    if (nativeAvailable()) assert.equal(selectEngine(), 'native');
    else
      assert.throws(
        () => selectEngine(),
        (e: unknown) => isSociError(e, 'ERR_UNSUPPORTED'),
      );
    delete process.env.SOCI_ZLIB_ENGINE;
    assert.equal(selectEngine(), nativeAvailable() ? 'native' : 'js');
  } finally {
    if (saved === undefined) delete process.env.SOCI_ZLIB_ENGINE;
    else process.env.SOCI_ZLIB_ENGINE = saved;
  }
});

test('the native addon is built and loads (required in CI)', { skip: testEngines().includes('native') ? false : 'native addon not built' }, () => {
  const a = loadAddon(defaultAddonPath);
  assert.ok(a);
  assert.equal(a.zlibVersion, process.versions.zlib.split('-')[0]);
});

test('loadAddon returns null for a missing file, a broken .node and a module of the wrong shape', async (t) => {
  const dir = await tempDir(t, 'soci-engine-');
  assert.equal(loadAddon(join(dir, 'nope.node')), null);
  const broken = join(dir, 'broken.node');
  writeFileSync(broken, Buffer.from('not an ELF file at all'));
  assert.equal(loadAddon(broken), null);
  const wrong = join(dir, 'wrong.cjs');
  writeFileSync(wrong, 'module.exports = { create() {} };');
  assert.equal(loadAddon(wrong), null);
});

test('without the addon (SOCI_ZINFLATE_ADDON → missing file) a fresh process falls back to js and still indexes', () => {
  const script = `
    import { selectEngine, nativeAvailable, createLayerIndexer } from './src/compression/index.ts';
    import { gzipSync } from 'node:zlib';
    const gz = gzipSync(Buffer.alloc(100000, 7));
    const ix = createLayerIndexer({ compression: 'gzip', spanSize: 1024, onData: () => {} });
    ix.write(gz);
    const r = ix.end();
    let forced = 'ok';
    process.env.SOCI_ZLIB_ENGINE = 'native';
    try { selectEngine(); } catch (e) { forced = e.code; }
    console.log(JSON.stringify({ available: nativeAvailable(), spans: r.maxSpanId + 1, forced }));
  `;
  const env: NodeJS.ProcessEnv = { ...process.env, SOCI_ZINFLATE_ADDON: join(root, 'does-not-exist.node') };
  delete env.SOCI_ZLIB_ENGINE;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: root, env, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as { available: boolean; spans: number; forced: string };
  assert.deepEqual(out, { available: false, spans: 1, forced: 'ERR_UNSUPPORTED' });
});

test('explicit engine option is used regardless of the environment', () => {
  const gz = gzipSync(mixed(200_000, 3));
  for (const e of testEngines()) {
    const inf = createInflater(e, 47);
    assert.equal(inf.engine, e);
    const out = Buffer.alloc(1 << 20);
    const rc = inf.inflate(gz, 0, gz.length, out, 0, out.length, Z_BLOCK);
    assert.equal(rc, Z_OK);
    assert.equal(inf.dataType & 128, 128, 'stopped right after the gzip header');
    assert.equal(inf.availIn, gz.length - 10);
    assert.equal(indexBlob(gz, 'gzip', 50_000, e).result.compression, 'gzip');
  }
  assert.throws(
    () => createLayerIndexer({ compression: 'zstd' as never, spanSize: 1, onData: () => {} }),
    (e: unknown) => isSociError(e, 'ERR_UNSUPPORTED'),
  );
});

test('prime + setDictionary resume inflation mid-stream identically on both engines', () => {
  // resume at a checkpoint with the engines' own inflatePrime (what AWS's C extraction does)
  const plain = mixed(300_000, 8);
  const gz = gzipSync(plain, { level: 6 });
  const { result } = indexBlob(gz, 'gzip', 50_000, testEngines()[0]!);
  const cps = result.checkpoints;
  const n = cps.readInt32LE(0);
  for (let k = 1; k < n; k++) {
    const o = 12 + k * 32785;
    const inOff = Number(cps.readBigInt64LE(o));
    const outOff = Number(cps.readBigInt64LE(o + 8));
    const bits = cps[o + 16]!;
    const window = cps.subarray(o + 17, o + 17 + 32768);
    for (const e of testEngines()) {
      const inf = createInflater(e, -15);
      if (bits) assert.equal(inf.prime(bits, gz[inOff - 1]! >> (8 - bits)), Z_OK);
      assert.equal(inf.setDictionary(Buffer.from(window)), Z_OK);
      const out = Buffer.alloc(4000);
      inf.inflate(gz, inOff, gz.length - inOff, out, 0, out.length, 0);
      assert.ok(out.equals(plain.subarray(outOff, outOff + 4000)), `checkpoint ${k} [${e}]`);
    }
  }
});
