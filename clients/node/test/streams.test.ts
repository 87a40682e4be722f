// Streams: offsets, time, consumer groups and SEEK.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { Client, type Subscription } from '../dist/index.js';
import { nextMessage, startServer, uniq, until, type Server } from './helpers.js';

let server: Server;
const clients: Client[] = [];

async function connect(): Promise<Client> {
  const c = await Client.connect({ addresses: [server.addr], reconnect: false });
  clients.push(c);
  return c;
}

before(async () => {
  server = await startServer();
});
after(async () => {
  for (const c of clients) c.destroy();
  await server?.stop();
});

async function take(sub: Subscription, n: number): Promise<Array<[number | undefined, string]>> {
  const out: Array<[number | undefined, string]> = [];
  for (let i = 0; i < n; i++) {
    const m = await nextMessage(sub);
    out.push([m.offset, m.text()]);
    await m.ack();
  }
  return out;
}

test('stream offsets, time, groups and seek', async () => {
  const c = await connect();
  const s = uniq('clicks');
  assert.deepEqual(await c.declare(s, { type: 'stream' }), { name: s, messages: 0, consumers: 0 });
  await c.publish('', s, 'home', { id: 'c1' });
  // Every message after `since` is stamped later than c1.
  const since = Date.now() + 1;
  await until(() => Date.now() >= since, 1000, 'the clock to tick');
  await c.publish('', s, 'pricing', { id: 'c2' });
  await c.publish('', s, 'signup', { id: 'c3' });

  // From the first offset: everything, each with its offset. Acking does not remove.
  const all = await c.subscribe(s, { offset: 'first', prefetch: 10 });
  assert.deepEqual(await take(all, 3), [
    [1, 'home'],
    [2, 'pricing'],
    [3, 'signup'],
  ]);
  // From a time: the first message published at or after it.
  const fromTime = await c.subscribe(s, { time: new Date(since), prefetch: 10 });
  assert.deepEqual(await take(fromTime, 2), [
    [2, 'pricing'],
    [3, 'signup'],
  ]);
  // From an offset, and from the newest.
  const fromTwo = await c.subscribe(s, { offset: 3 });
  assert.deepEqual(await take(fromTwo, 1), [[3, 'signup']]);
  const last = await c.subscribe(s, { offset: 'last' });
  assert.deepEqual(await take(last, 1), [[3, 'signup']]);
  // A new message reaches every reader.
  await c.publish('', s, 'docs', { id: 'c4' });
  for (const sub of [all, fromTime, fromTwo, last]) {
    assert.deepEqual(await take(sub, 1), [[4, 'docs']]);
    await sub.cancel();
  }

  // A consumer group: acks commit its position; a member that comes back resumes there.
  const member = await connect();
  const g1 = await member.subscribe(s, { group: 'billing', offset: 'first', prefetch: 10 });
  const d1 = await nextMessage(g1);
  const d2 = await nextMessage(g1);
  const d3 = await nextMessage(g1);
  assert.deepEqual([d1.offset, d2.offset, d3.offset], [1, 2, 3]);
  await d1.ack();
  await d2.ack();
  await member.close(); // offset 3 (and 4) not acked
  const again = await connect();
  const g2 = await again.subscribe(s, { group: 'billing', offset: 'first', prefetch: 10 });
  const r3 = await nextMessage(g2);
  assert.deepEqual([r3.offset, r3.text(), r3.redelivered], [3, 'signup', true]);
  const r4 = await nextMessage(g2);
  assert.deepEqual([r4.offset, r4.text()], [4, 'docs']);
  await r3.ack();
  await r4.ack();
  // Another group is independent.
  const other = await c.subscribe(s, { group: 'audit', offset: 'first' });
  assert.deepEqual(await take(other, 1), [[1, 'home']]);
  await other.cancel();

  // SEEK moves the group; its active member goes on from there at once.
  assert.deepEqual(await c.seek(s, 'billing', { offset: 'first' }), [1]);
  assert.deepEqual(await take(g2, 4), [
    [1, 'home'],
    [2, 'pricing'],
    [3, 'signup'],
    [4, 'docs'],
  ]);
  assert.deepEqual(await c.seek(s, 'billing', { time: since }), [2]);
  assert.deepEqual(await take(g2, 3), [
    [2, 'pricing'],
    [3, 'signup'],
    [4, 'docs'],
  ]);
  assert.deepEqual(await c.seek(s, 'billing', { offset: 'next' }), [5]);
  await g2.cancel();

  // Streams refuse what is for queues, with typed errors.
  await assert.rejects(c.get(s), { name: 'SluiceError', code: 'PRECONDITION' });
  const q = uniq('plain');
  await c.declare(q);
  await assert.rejects(c.seek(q, 'billing', { offset: 'first' }), { code: 'PRECONDITION' });
  await assert.rejects(c.seek(uniq('missing'), 'billing', { offset: 'first' }), { code: 'NOT_FOUND' });
});

test('a stream reader without a group resumes after the last offset it saw when the connection is cut', async () => {
  const c = await Client.connect({ addresses: [server.addr], reconnect: { initialDelay: 20, maxDelay: 200 } });
  clients.push(c);
  const s = uniq('log');
  await c.declare(s, { type: 'stream' });
  for (const t of ['a', 'b']) await c.publish('', s, t);
  const sub = await c.subscribe(s, { offset: 'first' });
  assert.deepEqual(await take(sub, 2), [
    [1, 'a'],
    [2, 'b'],
  ]);
  c.dropConnectionForTesting();
  await until(() => c.connected, 5000, 'the reconnect');
  await c.publish('', s, 'c');
  // Not from the first offset again: from offset 3.
  assert.deepEqual(await take(sub, 1), [[3, 'c']]);
  await c.close();
});
