// Publishing, consuming and settling against a real broker.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { Client, ConnectionError, SluiceError, type SubscribeOptions } from '../dist/index.js';
import { nextMessage, startServer, uniq, until, within, type Server } from './helpers.js';

let server: Server;
const clients: Client[] = [];

async function connect(name = 'test'): Promise<Client> {
  const c = await Client.connect({ addresses: [server.addr], name, reconnect: false });
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

describe('publish', () => {
  test('the confirm carries the id and routed', async () => {
    const c = await connect();
    const q = uniq('confirm');
    assert.deepEqual(await c.declare(q), { name: q, messages: 0, consumers: 0 });
    const given = await c.publish('', q, 'one', { id: 'my-id-1' });
    assert.deepEqual(given, { id: 'my-id-1', routed: 1, rejected: 0, duplicate: false });
    const generated = await c.publish('', q, 'two');
    assert.match(generated.id, /^[0-9a-f]+-\d+$/);
    assert.equal(generated.routed, 1);
    // A fanout to two queues routes two copies; a key nobody binds, none.
    const ex = uniq('fan');
    await c.declareExchange(ex, 'fanout');
    const q2 = uniq('confirm');
    await c.declare(q2);
    await c.bind(q, ex);
    await c.bind(q2, ex);
    assert.equal((await c.publish(ex, 'any', 'three')).routed, 2);
    assert.equal((await c.publish('', uniq('nobody'), 'lost')).routed, 0);
    const got = await c.get(q, { count: 10, ack: 'auto' });
    assert.deepEqual(
      got.map((m) => [m.id, m.text()]),
      [
        ['my-id-1', 'one'],
        [generated.id, 'two'],
        [got[2]!.id, 'three'],
      ],
    );
  });

  test('mandatory and unroutable rejects with SluiceError NO_ROUTE', async () => {
    const c = await connect();
    const ex = uniq('direct');
    await c.declareExchange(ex, 'direct');
    await assert.rejects(c.publish(ex, 'nobody.listens', 'x', { mandatory: true }), (e: unknown) => {
      assert.ok(e instanceof SluiceError);
      assert.equal(e.code, 'NO_ROUTE');
      assert.ok(e.known);
      return true;
    });
    // The connection goes on, and other codes come through the same way.
    await assert.rejects(c.publish(uniq('no-such-exchange'), 'k', 'x'), { name: 'SluiceError', code: 'NOT_FOUND' });
    await assert.rejects(c.declare('bad name!'), { code: 'SYNTAX' });
    await c.ping();
  });

  test('many publishes pipelined through the window are confirmed in order', async () => {
    const c = await Client.connect({ addresses: [server.addr], window: 16, reconnect: false });
    clients.push(c);
    const q = uniq('window');
    await c.declare(q);
    const confirms = await Promise.all(
      Array.from({ length: 500 }, (_, i) => c.publish('', q, `m${i}`, { id: `id-${i}` })),
    );
    assert.deepEqual(
      confirms.map((x) => x.id),
      Array.from({ length: 500 }, (_, i) => `id-${i}`),
    );
    assert.ok(confirms.every((x) => x.routed === 1));
    const got = await c.get(q, { count: 500, ack: 'auto' });
    assert.deepEqual(
      got.map((m) => m.text()),
      Array.from({ length: 500 }, (_, i) => `m${i}`),
    );
  });
});

describe('consume', () => {
  test('prefetch 2: at most 2 unacked deliveries until one is acked', async () => {
    const c = await connect();
    const watcher = await connect();
    const q = uniq('prefetch');
    await c.declare(q);
    for (let i = 1; i <= 5; i++) await c.publish('', q, `p${i}`);
    const sub = await c.subscribe(q, { prefetch: 2 });
    const m1 = await nextMessage(sub);
    const m2 = await nextMessage(sub);
    assert.deepEqual([m1.text(), m2.text()], ['p1', 'p2']);
    // The broker's own count: 2 out, 3 waiting. A third delivery would show here.
    const s = await watcher.stats(q);
    assert.equal(s['messages_unacked'], '2');
    assert.equal(s['messages_ready'], '3');
    await c.ping();
    assert.equal(sub.buffered, 0, 'no third delivery arrived');
    await m1.ack();
    const m3 = await nextMessage(sub);
    assert.equal(m3.text(), 'p3');
    const s2 = await watcher.stats(q);
    assert.equal(s2['messages_unacked'], '2');
    assert.equal(s2['messages_ready'], '2');
    await sub.cancel();
  });

  /**
   * Publishes `bodies`, subscribes with `options`, and checks that each
   * delivery is out alone: the broker holds the rest back (its own counts,
   * and nothing arrives before a PING's reply) until it is acked.
   */
  async function oneAtATime(bodies: string[], options: SubscribeOptions): Promise<void> {
    const c = await connect();
    const watcher = await connect();
    const q = uniq('pbytes');
    await c.declare(q);
    for (const b of bodies) await c.publish('', q, b);
    const sub = await c.subscribe(q, options);
    assert.equal(sub.options.prefetchBytes, options.prefetchBytes);
    const counts = async () => {
      const s = await watcher.stats(q);
      return `${s['messages_ready']} ready, ${s['messages_unacked']} unacked`;
    };
    let m = await nextMessage(sub);
    assert.equal(m.text(), bodies[0]);
    for (const [i, body] of bodies.slice(1).entries()) {
      const want = `${bodies.length - 1 - i} ready, 1 unacked`;
      await until(async () => (await counts()) === want, 5000, want);
      await c.ping();
      assert.equal(sub.buffered, 0, `a delivery came with ${m.body.length} bytes out`);
      await m.ack();
      m = await nextMessage(sub);
      assert.equal(m.text(), body);
    }
    await m.ack();
    assert.equal(await counts(), '0 ready, 0 unacked');
    await sub.cancel();
  }

  test('prefetchBytes 10: one 6-byte body out at a time, though prefetch has room', async () => {
    await oneAtATime(['first!', 'second', 'third!'], { prefetch: 100, prefetchBytes: 10 });
  });

  test('prefetchBytes 10: a 16-byte body comes alone once nothing else is out', async () => {
    // 4 bytes out: the 16-byte body waits; then it is out alone: the 2-byte one waits.
    await oneAtATime(['aaaa', '0123456789abcdef', 'dd'], { prefetchBytes: 10 });
  });

  test('prefetchBytes out of range throws before anything is sent', async () => {
    const c = await connect();
    const q = uniq('pbytes-range');
    await c.declare(q);
    for (const bad of [0, -1, 2 ** 30 + 1, 1.5, Number.NaN]) {
      await assert.rejects(c.subscribe(q, { prefetchBytes: bad }), (e: unknown) => {
        assert.ok(e instanceof TypeError);
        assert.match(e.message, /^prefetchBytes: expected a whole number from 1 to 1073741824/);
        return true;
      });
    }
    assert.equal((await c.stats(q))['consumers'], '0');
    const sub = await c.subscribe(q, { prefetchBytes: 2 ** 30 });
    assert.equal((await c.stats(q))['consumers'], '1');
    await sub.cancel();
  });

  test('ack, nack (requeue, delay), reject and the redelivered flag', async () => {
    const c = await connect();
    const dead = uniq('dead');
    const q = uniq('work');
    await c.declare(dead);
    await c.declare(q, { deadLetter: '', deadLetterKey: dead });
    await c.publish('', q, 'a', { id: 'a' });
    await c.publish('', q, 'b', { id: 'b' });
    await c.publish('', q, 'c', { id: 'c' });
    const sub = await c.subscribe(q, { prefetch: 1 });

    const a1 = await nextMessage(sub);
    assert.deepEqual([a1.id, a1.redelivered, a1.deliveries], ['a', false, 1]);
    await a1.nack();
    const a2 = await nextMessage(sub);
    assert.deepEqual([a2.id, a2.redelivered, a2.deliveries], ['a', true, 2], 'requeued at its position');
    await a2.ack();
    await assert.rejects(a2.ack(), { name: 'SluiceError', code: 'UNKNOWN_TAG' });

    const b1 = await nextMessage(sub);
    assert.equal(b1.id, 'b');
    await b1.nack({ delay: 300 });
    const c1 = await nextMessage(sub);
    assert.equal(c1.id, 'c', 'the delayed b waits; c goes first');
    await c1.reject();
    const b2 = await nextMessage(sub);
    assert.deepEqual([b2.id, b2.redelivered, b2.deliveries], ['b', true, 2]);
    await b2.ack();

    // The rejected c was dead-lettered, with the reason.
    const [d] = await c.get(dead);
    assert.ok(d);
    assert.equal(d.id, 'c');
    assert.equal(d.headers['x-death-reason'], 'rejected');
    assert.equal(d.headers['x-death-queue'], q);
    await d.ack();
    assert.equal((await c.stats(q))['messages_ready'], '0');
    await sub.cancel();
  });

  test('a consumer that disconnects holding deliveries: another consumer gets them, redelivered', async () => {
    const holder = await connect('holder');
    const other = await connect('other');
    const q = uniq('held');
    await holder.declare(q);
    for (const id of ['h1', 'h2', 'h3']) await holder.publish('', q, id, { id });
    const sub = await holder.subscribe(q, { prefetch: 10 });
    const held = [await nextMessage(sub), await nextMessage(sub), await nextMessage(sub)];
    assert.deepEqual(
      held.map((m) => [m.id, m.redelivered]),
      [
        ['h1', false],
        ['h2', false],
        ['h3', false],
      ],
    );
    const theirs = await other.subscribe(q, { prefetch: 10 });
    await holder.close();
    const again = [await nextMessage(theirs), await nextMessage(theirs), await nextMessage(theirs)];
    assert.deepEqual(
      again.map((m) => [m.id, m.redelivered, m.deliveries]),
      [
        ['h1', true, 2],
        ['h2', true, 2],
        ['h3', true, 2],
      ],
    );
    await assert.rejects(held[0]!.ack(), ConnectionError, 'a delivery of a closed connection cannot be acked');
    for (const m of again) await m.ack();
    await theirs.cancel();
  });

  test('leaving a for-await loop cancels the subscription and gives back what it buffered', async () => {
    const c = await connect();
    const q = uniq('loop');
    await c.declare(q);
    for (let i = 0; i < 5; i++) await c.publish('', q, `l${i}`);
    const sub = await c.subscribe(q, { prefetch: 5 });
    await until(() => sub.buffered >= 4, 5000, 'the deliveries to arrive');
    const seen: string[] = [];
    for await (const m of sub) {
      seen.push(m.text());
      await m.ack();
      if (seen.length === 1) break;
    }
    assert.equal(sub.closed, true);
    // Nothing else is outstanding: the four buffered ones were given back (NACK).
    await until(async () => (await c.stats(q))['messages_unacked'] === '0', 5000, 'the buffered deliveries to be nacked');
    const rest = await c.get(q, { count: 10, ack: 'auto' });
    assert.deepEqual(
      rest.map((m) => m.text()),
      ['l1', 'l2', 'l3', 'l4'],
    );
  });
});

describe('framing against the broker', () => {
  test('binary bodies with CRLFs and NULs, odd keys and header values round-trip', async () => {
    const c = await connect();
    const q = uniq('binary');
    const ex = uniq('direct');
    await c.declare(q);
    await c.declareExchange(ex, 'direct');
    const key = Buffer.concat([Buffer.from('key with "quotes", a \\ and {3} '), Buffer.from([0xe9, 0xff])]);
    await c.bind(q, ex, key);
    const big = Buffer.alloc(2 * 1024 * 1024 + 3);
    for (let i = 0; i < big.length; i++) big[i] = (i * 31) & 0xff;
    const bodies: Buffer[] = [
      Buffer.from('\r\n\r\n\r\n'),
      Buffer.concat([Buffer.from([0, 0, 0]), Buffer.from('\r\n\r\n\r\nMSG x 1 "" k deliveries=1 id=x {2}\r\nOK\r\n'), Buffer.from([0])]),
      Buffer.alloc(0),
      Buffer.from('{5}'),
      big,
    ];
    const headers = { note: 'a "quoted" word = x', empty: '', raw: Buffer.from([0xc3, 0x28, 0x80]) };
    for (const body of bodies) {
      const r = await c.publish(ex, key, new Uint8Array(body), { headers });
      assert.equal(r.routed, 1);
    }
    const sub = await c.subscribe(q, { prefetch: 10 });
    for (const body of bodies) {
      const m = await nextMessage(sub, 10000);
      assert.ok(m.body.equals(body), `body of ${body.length} bytes`);
      assert.ok(m.rawRoutingKey.equals(key), 'routing key byte for byte');
      assert.equal(m.exchange, ex);
      assert.equal(m.headers['note'], 'a "quoted" word = x');
      assert.equal(m.headers['empty'], '');
      assert.deepEqual(m.rawHeaders.find(([n]) => n === 'raw')?.[1], headers.raw);
      await m.ack();
    }
    // The same through PEEK and GET.
    await sub.cancel();
    await c.publish(ex, key, bodies[1]!);
    const [p] = await c.peek(q);
    assert.ok(p && p.body.equals(bodies[1]!));
    const [g] = await c.get(q, { ack: 'auto' });
    assert.ok(g && g.body.equals(bodies[1]!));
  });

  test('a push arriving between a command and its reply goes to its subscription', async () => {
    const c = await connect('consumer');
    const p = await connect('producer');
    const subQ = uniq('pushed');
    const getQ = uniq('pulled');
    await c.declare(subQ);
    await c.declare(getQ);
    const sub = await c.subscribe(subQ, { prefetch: 10 });

    // GET wait= holds c's pipeline: its reply comes only once getQ has a message.
    let getDone = false;
    const get = c.get(getQ, { wait: 10000, count: 5 }).finally(() => {
      getDone = true;
    });
    const ping = c.ping(); // waits behind the GET
    await p.publish('', subQ, 'pushed while GET waits');
    const pushed = await nextMessage(sub);
    assert.equal(pushed.text(), 'pushed while GET waits');
    assert.equal(pushed.consumerTag, sub.tag);
    assert.equal(getDone, false, 'the MSG came before the GET was answered');
    await p.publish('', getQ, 'the GET answer');
    const got = await within(get, 5000, 'the GET reply');
    assert.deepEqual(
      got.map((m) => [m.consumerTag, m.text()]),
      [['-', 'the GET answer']],
    );
    await within(ping, 5000, 'the PING behind the GET');
    // Settling works for both kinds.
    await got[0]!.ack();
    await pushed.ack();
    assert.equal(sub.buffered, 0);
    await sub.cancel();
  });
});

describe('topology', () => {
  test('declare, bind, purge, peek, delete, redrive', async () => {
    const c = await connect();
    const ex = uniq('topic');
    const q = uniq('errors');
    await c.declareExchange(ex, 'topic', { durable: false });
    const info = await c.declare('', { exclusive: true });
    assert.match(info.name, /^gen-/);
    await c.declare(q);
    await c.bind(q, ex, '*.error');
    await c.bind(q, ex, 'level=error'); // quoted: a key, not an option
    assert.equal((await c.publish(ex, 'eu.error', 'e1')).routed, 1);
    assert.equal((await c.publish(ex, 'level=error', 'e2')).routed, 1);
    assert.equal((await c.publish(ex, 'eu.info', 'i1')).routed, 0);
    const peeked = await c.peek(q, { count: 10 });
    assert.deepEqual(
      peeked.map((m) => [m.position, m.text(), m.deliveries]),
      [
        [1, 'e1', 0],
        [2, 'e2', 0],
      ],
    );
    await c.unbind(q, ex, '*.error');
    assert.equal((await c.publish(ex, 'eu.error', 'e3')).routed, 0);
    assert.equal(await c.purge(q), 2);
    await c.publish('', q, 'left');
    await assert.rejects(c.delete(q, { ifEmpty: true }), { code: 'PRECONDITION' });
    assert.equal(await c.delete(q), 1);
    await assert.rejects(c.delete(q), { code: 'NOT_FOUND' });
    await c.deleteExchange(ex);

    // REDRIVE sends dead letters back.
    const dead = uniq('dl');
    const work = uniq('jobs');
    await c.declare(dead);
    await c.declare(work, { deadLetter: '', deadLetterKey: dead });
    await c.publish('', work, 'job', { id: 'job-1' });
    const [m] = await c.get(work);
    await m!.reject();
    assert.deepEqual(await c.redrive(dead), { moved: 1, kept: 0 });
    const [back] = await c.get(work, { ack: 'auto' });
    assert.equal(back?.id, 'job-1');
  });

  test('a deleted queue ends its subscription with the reason', async () => {
    const c = await connect();
    const q = uniq('doomed');
    await c.declare(q);
    const sub = await c.subscribe(q);
    const other = await connect();
    await other.delete(q);
    const r = await within(sub.next(), 5000, 'the end of the subscription');
    assert.equal(r.done, true);
    assert.equal(sub.cancelReason, 'queue-deleted');
  });
});
