/**
 * The daemon's status service and its decision log, without a daemon: LayerDecisions keeps the
 * latest decision per layer of each image, bounded in images (the least recently prepared go
 * first); the gRPC service serves Info and Layers as JSON over a unix socket, and the client's
 * calls give up at their deadline when nothing answers.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { tempDir } from '../../harness/env.js';
import { LayerDecisions } from '../../src/snapshotter/decisions.js';
import { STATUS_SERVICE, statusClient, statusHandlers, type StatusInfo } from '../../src/snapshotter/status-service.js';

const decision = (image: string, layer: string, mode: 'lazy' | 'local' | 'deferred' = 'lazy') => ({
  image,
  imageRef: `r/${image}`,
  layer,
  mode,
  reason: mode === 'lazy' ? '' : 'why',
  cause: mode === 'lazy' ? '' : 'no-ztoc',
});

test('decisions: latest per layer, per image, bounded in images (least recently prepared dropped)', () => {
  const d = new LayerDecisions(2);
  d.record(decision('i1', 'l1', 'deferred'));
  d.record(decision('i1', 'l1', 'lazy'));
  d.record(decision('i1', 'l2', 'local'));
  d.record(decision('', 'l9'));
  assert.deepEqual(
    d.list('i1').map((x) => [x.layer, x.mode]),
    [
      ['l1', 'lazy'],
      ['l2', 'local'],
    ],
  );
  d.record(decision('i2', 'l1'));
  d.record(decision('i1', 'l3')); // i1 is now the most recent
  d.record(decision('i3', 'l1'));
  assert.deepEqual(d.list('i2'), [], 'i2 was dropped');
  assert.equal(d.list('i1').length, 3);
  assert.equal(d.list().length, 4, 'every image kept, with no image given');
});

test('status service: Info and Layers over a unix socket; a silent socket fails at the deadline', async (t) => {
  const dir = await tempDir(t, 'soci-status-');
  const socket = join(dir, 's.sock');
  const decisions = new LayerDecisions();
  decisions.record(decision('sha256:img', 'sha256:l1'));
  const info: StatusInfo = {
    version: '9.9.9',
    pid: 42,
    root: '/r',
    configPath: '/c.toml',
    metricsAddress: '',
    metricsNetwork: '',
    minLayerSize: 0,
    v1: false,
    v2: true,
  };
  const server = new grpc.Server();
  server.addService(
    STATUS_SERVICE,
    statusHandlers(
      () => info,
      (image) => decisions.list(image),
    ),
  );
  await new Promise<void>((res, rej) => server.bindAsync(`unix://${socket}`, grpc.ServerCredentials.createInsecure(), (e) => (e ? rej(e) : res())));
  t.after(() => server.forceShutdown());
  const c = statusClient(socket);
  try {
    assert.deepEqual(await c.info(), info);
    assert.deepEqual(
      (await c.layers('sha256:img')).map((x) => x.layer),
      ['sha256:l1'],
    );
    assert.deepEqual(await c.layers('sha256:other'), []);
  } finally {
    c.close();
  }
  const silent = statusClient(join(dir, 'nothing.sock'), 500);
  await assert.rejects(silent.info());
  silent.close();
});
