/** `names: 'latin1'`: names that are not valid UTF-8 (raw tar member names) round-trip byte for byte. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { FuseServer, ROOT_INO } from '../../src/fuse/index.js';
import { needs } from '../../harness/env.js';
import { makeMountDir, sh } from './helpers.js';
import { SyntheticFs } from '../../harness/synthetic-fs.js';

test('latin1 name codec keeps non-UTF-8 names exact (lookup, readdir, read)', {
  skip: needs({ root: true, tools: ['python3'] }),
  timeout: 60_000,
}, async (t) => {
  const raw = Buffer.from([0x66, 0xe9, 0xff, 0x2e, 0x74, 0x78, 0x74]); // "f\xe9\xff.txt": invalid UTF-8
  const fsys = new SyntheticFs({ bigSize: 1024 });
  fsys.file(ROOT_INO, raw.toString('latin1'), Buffer.from('raw name\n'));
  const dir = await makeMountDir();
  const server = await FuseServer.mount(fsys, { mountpoint: dir, names: 'latin1' });
  t.after(async () => {
    await server.unmount({ lazy: 'fallback' }).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });
  const py = `import os,sys; d=os.fsencode(sys.argv[1]); n=bytes.fromhex('${raw.toString('hex')}'); print(n in os.listdir(d)); print(open(os.path.join(d,n),'rb').read().decode(), end='')`;
  const r = await sh(`python3 -c "${py}" ${dir}`);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, 'True\nraw name\n');
});
