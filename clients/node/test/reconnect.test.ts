// Losing the connection: a broker restart, a cut connection, the next address in the list.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';

import { Client, ConnectionError } from '../dist/index.js';
import { nextMessage, removeDir, startServer, tempDir, uniq, until, within, type Server } from './helpers.js';

const cleanup: Array<() => unknown> = [];
after(async () => {
  for (const f of cleanup.reverse()) await f();
});

function track(c: Client): Client {
  cleanup.push(() => c.destroy());
  return c;
}

test('after a broker restart the client reconnects and its subscription goes on', async () => {
  const dir = tempDir();
  cleanup.push(() => removeDir(dir));
  let server: Server = await startServer({ dataDir: dir });
  cleanup.push(() => server.stop());
  const addr = server.addr;

  const c = track(
    await Client.connect({ addresses: [addr], reconnect: { initialDelay: 50, maxDelay: 400 }, heartbeat: 2000 }),
  );
  const events: string[] = [];
  c.on('disconnected', () => events.push('disconnected'));
  c.on('connected', () => events.push('connected'));

  const q = uniq('orders');
  await c.declare(q, { durable: true });
  await c.publish('', q, 'first', { id: 'm1', persistent: true });
  await c.publish('', q, 'second', { id: 'm2', persistent: true });
  const sub = await c.subscribe(q, { prefetch: 10 });
  const m1 = await nextMessage(sub);
  assert.equal(m1.id, 'm1');
  await m1.ack();
  const m2 = await nextMessage(sub);
  assert.deepEqual([m2.id, m2.redelivered], ['m2', false]);
  // m2 is held, not acked, when the broker stops.

  assert.equal(await server.stop(), 0);
  await until(() => !c.connected, 5000, 'the client to notice the stop');
  // A publish while the broker is down waits in the client and goes out once it is back.
  const confirm = c.publish('', q, 'third', { id: 'm3', persistent: true });

  server = await startServer({ dataDir: dir, addr });
  await until(() => c.connected, 10000, 'the client to reconnect');
  assert.deepEqual(events, ['disconnected', 'connected']);
  assert.deepEqual(await within(confirm, 5000, 'the confirm of the queued publish'), {
    id: 'm3',
    routed: 1,
    rejected: 0,
    duplicate: false,
  });

  // The broker redelivers the held m2 (flagged) to the new subscription, then m3; m1 was acked before.
  const again = await nextMessage(sub);
  assert.deepEqual([again.id, again.redelivered, again.deliveries, again.text()], ['m2', true, 2, 'second']);
  const m3 = await nextMessage(sub);
  assert.deepEqual([m3.id, m3.redelivered], ['m3', false]);
  await assert.rejects(m2.ack(), ConnectionError, 'the old delivery tag belongs to the lost connection');
  await again.ack();
  await m3.ack();
  const s = await c.stats(q);
  assert.equal(s['messages_ready'], '0');
  assert.equal(s['messages_unacked'], '0');
  await c.close();
});

test('a cut connection: in-flight commands fail, the subscription resumes, held deliveries come back', async () => {
  const server = await startServer();
  cleanup.push(() => server.stop());
  const c = track(await Client.connect({ addresses: [server.addr], reconnect: { initialDelay: 20, maxDelay: 200 } }));
  const q = uniq('cut');
  await c.declare(q);
  await c.publish('', q, 'x', { id: 'x1' });
  const sub = await c.subscribe(q, { prefetch: 1 });
  const held = await nextMessage(sub);
  assert.equal(held.redelivered, false);
  // Commands awaiting their reply when the connection is cut fail with
  // ConnectionError: a GET that waits (written), and a PING not yet written.
  // (The wait is short: the broker notices a connection closed during a
  // GET wait= only when the wait ends, and requeues its deliveries then.)
  const empty = uniq('empty');
  await c.declare(empty);
  const waiting = c.get(empty, { wait: 300 });
  await new Promise((r) => setImmediate(r));
  const ping = c.ping();
  c.dropConnectionForTesting();
  await assert.rejects(waiting, ConnectionError);
  await assert.rejects(ping, ConnectionError);
  const back = await nextMessage(sub);
  assert.deepEqual([back.id, back.redelivered, back.deliveries], ['x1', true, 2]);
  await assert.rejects(held.ack(), ConnectionError);
  await back.ack();

  // Commands made while the client is reconnecting wait and go out once it is back,
  // a new subscription among them (subscribed once, not again by the reconnect).
  const q2 = uniq('later');
  await c.declare(q2);
  c.dropConnectionForTesting();
  assert.equal(c.connected, false);
  const later = c.subscribe(q2, { prefetch: 5 });
  const confirm = c.publish('', q2, 'y', { id: 'y1' });
  const sub2 = await within(later, 5000, 'the subscription made while reconnecting');
  assert.equal((await confirm).routed, 1);
  const y = await nextMessage(sub2);
  assert.deepEqual([y.id, y.redelivered], ['y1', false]);
  await y.ack();
  assert.equal((await c.stats(q2))['consumers'], '1');
  await c.close();
});

test('a cut connection: the subscription comes back with its prefetchBytes', async () => {
  const server = await startServer();
  cleanup.push(() => server.stop());
  const c = track(await Client.connect({ addresses: [server.addr], reconnect: { initialDelay: 20, maxDelay: 200 } }));
  const watcher = track(await Client.connect({ addresses: [server.addr], reconnect: false }));
  const q = uniq('cut-pbytes');
  await c.declare(q);
  for (const b of ['first!', 'second', 'third!']) await c.publish('', q, b);
  const sub = await c.subscribe(q, { prefetch: 100, prefetchBytes: 10 });
  const held = await nextMessage(sub);
  assert.equal(held.text(), 'first!');
  c.dropConnectionForTesting();
  const back = await nextMessage(sub);
  assert.deepEqual([back.text(), back.redelivered], ['first!', true]);
  // The SUB on the new connection says prefetch-bytes=10 again: one 6-byte body at a time.
  const counts = async () => {
    const s = await watcher.stats(q);
    return `${s['messages_ready']} ready, ${s['messages_unacked']} unacked`;
  };
  await until(async () => (await counts()) === '2 ready, 1 unacked', 5000, '2 ready, 1 unacked after the reconnect');
  await c.ping();
  assert.equal(sub.buffered, 0, 'a second delivery arrived');
  await back.ack();
  assert.equal((await nextMessage(sub)).text(), 'second');
  await c.close();
});

test('the client goes on with the next address in its list', async () => {
  const a = await startServer();
  const b = await startServer();
  cleanup.push(() => a.stop(), () => b.stop());
  // Two independent brokers with the same queue stand in for two nodes.
  const q = uniq('failover');
  for (const s of [a, b]) {
    const admin = await Client.connect({ addresses: [s.addr], reconnect: false });
    await admin.declare(q);
    await admin.close();
  }
  const c = track(
    await Client.connect({ addresses: [a.addr, b.addr], reconnect: { initialDelay: 20, maxDelay: 200 } }),
  );
  assert.equal(c.address, a.addr);
  const sub = await c.subscribe(q);
  await a.stop();
  await until(() => c.connected && c.address === b.addr, 10000, 'the client to move to the second address');
  const pub = track(await Client.connect({ addresses: [b.addr], reconnect: false }));
  await pub.publish('', q, 'on b');
  const m = await nextMessage(sub);
  assert.equal(m.text(), 'on b');
  await m.ack();
  await c.close();
  await pub.close();
});

test('a first address that does not answer is skipped at connect', async () => {
  const s = await startServer();
  cleanup.push(() => s.stop());
  const dead = await startServer();
  const deadAddr = dead.addr;
  await dead.stop();
  const c = track(await Client.connect({ addresses: [deadAddr, s.addr], reconnect: false }));
  assert.equal(c.address, s.addr);
  await c.close();
  await assert.rejects(Client.connect({ addresses: [deadAddr], reconnect: false }), ConnectionError);
});
