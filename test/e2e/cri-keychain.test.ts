/**
 * `[cri_keychain]`: kubelet talks CRI ImageService to our socket; we forward to containerd and keep
 * the pull's registry credentials, so lazy mounts of an image in a password-protected registry work,
 * also after the daemon restarts (AWS's loses them): the restarted daemon fetches spans nobody read
 * before with the credentials it kept in a root-only file.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtemp, readFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { needs } from '../../harness/env.js';
import { startRegistry } from '../../harness/registry.js';
import { removeTree, sociFuseMounts, startContainerd, startSnapshotter, CONTAINERD_VERSIONS } from '../../harness/containerd.js';
import { criListImages, criPull } from '../../harness/cri.js';
import { appPartBytes, buildAppImage } from '../../harness/app-image.js';

const exec = promisify(execFile);
const SOCI = join(process.cwd(), 'bin/soci.js');

for (const version of CONTAINERD_VERSIONS)
  test(`CRI keychain: credentials from PullImage reach the lazy mounts (containerd ${version})`, {
    skip: needs({ root: true, tools: ['containerd', 'ctr', 'docker-registry', 'skopeo'] }),
    timeout: 600_000,
  }, async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'soci-kc-'));
    const reg = await startRegistry(t, { auth: 'htpasswd' });
    const creds = `${reg.user}:${reg.password}`;
    const app = buildAppImage(join(dir, 'app'), { bulkMb: 16, seed: 7 });
    await exec('skopeo', ['copy', '--dest-tls-verify=false', '--dest-creds', creds, `oci:${app.dir}:latest`, `docker://${reg.host}/app:v1`]);
    await exec(process.execPath, [SOCI, '--root', join(dir, 'soci'), 'convert', '--remote', '-q', '-u', creds, `${reg.host}/app:v1`, `${reg.host}/app:soci`]);

    // The snapshotter first (containerd would otherwise be in dial backoff towards it), told where
    // containerd's socket will be.
    const address = join(dir, 'sn.sock');
    const ctdSocket = join(dir, 'containerd.sock');
    const config = `[cri_keychain]\nenable_keychain = true\nimage_service_path = "${ctdSocket}"\n[background_fetch]\ndisable = true\n`;
    const sn = await startSnapshotter(t, { address, dir, config });
    await startContainerd(t, { version, snapshotterSocket: address, address: ctdSocket, cri: true, plainHttpRegistries: [reg.host] });
    t.after(() => removeTree(dir));

    // kubelet's view: the image service is the snapshotter's socket
    await criPull(sn.address, `${reg.host}/app:soci`, { username: reg.user!, password: reg.password! });
    const images = await criListImages(sn.address);
    assert.ok(
      images.some((i) => i.repo_tags.includes(`${reg.host}/app:soci`)),
      JSON.stringify(images),
    );

    const mounts = await sociFuseMounts(dir);
    assert.equal(mounts.length, 1, `lazy mount with the keychain's credentials\n${sn.logs().slice(-3000)}`);
    assert.ok(await sn.waitLine((l) => l.msg === 'CRI PullImage proxied' && l.credentials === 'provided'));
    assert.ok(!sn.logs().includes(reg.password!), 'the password never appears in the logs');

    // A restart: the kept credentials authenticate the spans read for the first time after it.
    const kept = join(dir, 'root', 'soci', 'cri-credentials.json');
    assert.equal((await stat(kept)).mode & 0o777, 0o600, 'the credentials file is root-only');
    await sn.stop('SIGTERM');
    const sn2 = await startSnapshotter(t, { address, dir, config });
    assert.ok(await sn2.waitLine((l) => l.msg === 'layer mount taken over from the previous daemon'), sn2.logs().slice(-3000));
    const part = await readFile(join(mounts[0]!, 'usr/share/bulk/part3.bin'));
    assert.ok(part.equals(appPartBytes(3, 7)), 'a span first read after the restart is fetched with the kept credentials');
    assert.ok(!sn2.logs().includes(reg.password!), 'the password never appears in the logs');
  });
