"""The asyncio client against a real broker: the core scenarios."""

from __future__ import annotations

import asyncio
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _broker import Broker, module_broker, unique  # noqa: E402

import sluice  # noqa: E402
from sluice import AsyncClient  # noqa: E402

broker: Broker


def setUpModule() -> None:
    global broker
    broker = module_broker()



async def async_wait_until(predicate, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)


async def in_thread(fn):
    """Run a blocking call (starting or stopping a broker) off the event loop."""
    return await asyncio.get_running_loop().run_in_executor(None, fn)


class AsyncClientTest(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self) -> None:
        self.clients = []
        self.c = await self.client()

    async def asyncTearDown(self) -> None:
        for c in self.clients:
            await c.close()

    async def client(self, addr=None, **kw) -> AsyncClient:
        kw.setdefault("timeout", 20)
        kw.setdefault("reconnect_delay", 0.05)
        kw.setdefault("reconnect_max_delay", 0.5)
        c = AsyncClient(addr or broker.addr, **kw)
        self.clients.append(c)
        return await c.connect()

    async def ready_unacked(self, q: str):
        s = await self.c.stats(q)
        return int(s["messages_ready"]), int(s["messages_unacked"])

    async def read(self, sub, n: int):
        out = []
        for _ in range(n):
            m = await sub.next(timeout=10)
            self.assertIsNotNone(m, f"only {len(out)} of {n} deliveries came")
            out.append(m)
        return out

    async def test_confirm_and_mandatory(self) -> None:
        q = unique()
        await self.c.declare_queue(q, durable=True)
        confirm = await self.c.publish("", q, b"x", id="a-1")
        self.assertEqual(confirm, sluice.Confirm("a-1", 1))
        self.assertEqual((await self.c.publish("", unique("nobody"), b"x")).routed, 0)
        with self.assertRaises(sluice.NoRouteError) as cm:
            await self.c.publish("", unique("nobody"), b"x", mandatory=True)
        self.assertEqual(cm.exception.code, "NO_ROUTE")
        with self.assertRaises(sluice.PreconditionError):
            await self.c.declare_queue(q)
        with self.assertRaises(sluice.NotFoundError):
            await self.c.purge(unique("nowhere"))
        await self.c.ping()

    async def test_prefetch_bound(self) -> None:
        q = unique()
        await self.c.declare_queue(q)
        await self.c.publish_many([("", q, b"m%d" % i) for i in range(5)], window=3)
        sub = await self.c.subscribe(q, prefetch=2)
        first = await self.read(sub, 2)

        async def two_out() -> bool:
            return await self.ready_unacked(q) == (3, 2)

        await async_wait_until(two_out, what="3 ready and 2 unacked")
        self.assertIsNone(await sub.next(timeout=0.3), "a third delivery came with 2 unacked and prefetch=2")
        await first[0].ack()
        third = await sub.next(timeout=10)
        self.assertEqual(third.body, b"m2")
        self.assertIsNone(await sub.next(timeout=0.3), "a fourth delivery came with 2 unacked and prefetch=2")
        await first[1].ack()
        await third.ack()
        rest = await self.read(sub, 2)
        self.assertEqual([m.body for m in rest], [b"m3", b"m4"])
        for m in rest:
            await m.ack()
        self.assertEqual(await self.ready_unacked(q), (0, 0))

    async def test_prefetch_bytes_bound(self) -> None:
        # prefetch=100 leaves room for all; 6 + 6 bytes would pass prefetch_bytes=10,
        # and the 16-byte body, larger than the budget, goes alone once nothing is out.
        q = unique()
        await self.c.declare_queue(q)
        bodies = [b"first!", b"second", b"0123456789abcdef", b"dd"]
        await self.c.publish_many([("", q, b) for b in bodies])
        sub = await self.c.subscribe(q, prefetch=100, prefetch_bytes=10)
        self.assertEqual(sub.prefetch_bytes, 10)
        got = await sub.next(timeout=10)
        self.assertEqual(got.body, bodies[0])
        for i, body in enumerate(bodies[1:]):
            ready = len(bodies) - 1 - i

            async def one_out() -> bool:
                return await self.ready_unacked(q) == (ready, 1)

            await async_wait_until(one_out, what=f"{ready} ready and 1 unacked")
            self.assertIsNone(await sub.next(timeout=0.3), f"a delivery came with {len(got.body)} bytes out of 10")
            await got.ack()
            got = await sub.next(timeout=10)
            self.assertIsNotNone(got)
            self.assertEqual(got.body, body)
        await got.ack()
        self.assertEqual(await self.ready_unacked(q), (0, 0))
        with self.assertRaisesRegex(ValueError, "prefetch_bytes"):
            await self.c.subscribe(q, prefetch_bytes=0)
        await self.c.ping()

    async def test_ack_nack_reject_and_redelivery(self) -> None:
        q, dead = unique(), unique("dead")
        await self.c.declare_queue(dead)
        await self.c.declare_queue(q, dead_letter="", dead_letter_key=dead)
        for body in (b"a", b"b", b"c"):
            await self.c.publish("", q, body)
        sub = await self.c.subscribe(q, prefetch=10)
        a, b, c = await self.read(sub, 3)
        await a.ack()
        with self.assertRaises(sluice.UnknownTagError):
            await a.ack()
        await b.nack()
        b2 = await sub.next(timeout=10)
        self.assertEqual((b2.body, b2.redelivered, b2.deliveries), (b"b", True, 2))
        await c.reject()
        await b2.nack(requeue=False)
        self.assertEqual([m.body for m in await self.c.peek(dead, 10)], [b"c", b"b"])
        self.assertEqual(await self.ready_unacked(q), (0, 0))

    async def test_binary_bodies_round_trip(self) -> None:
        q = unique()
        await self.c.declare_queue(q)
        bodies = [b"\r\n\r\n\r\n", b"\x00", b"a\r\n\r\n\r\nb\x00c", b"", b"{3}", bytes(range(256)) * 50]
        confirms = await self.c.publish_many([("", q, b) for b in bodies], window=2)
        got = await self.c.get(q, 10, auto_ack=True)
        self.assertEqual([m.body for m in got], bodies)
        self.assertEqual([m.id for m in got], [c.id for c in confirms])

    async def test_pushes_between_commands_and_replies(self) -> None:
        q, side = unique(), unique("side")
        c = await self.client()
        interleaved = []
        on_msg = c._on_msg

        def spy(line, body, gen):
            if not line.startswith(b"MSG -"):
                interleaved.append(bool(c._pending))
            on_msg(line, body, gen)

        c._on_msg = spy
        await c.declare_queue(q, durable=True)
        sub = await c.subscribe(q, prefetch=1000)
        n = 200
        async with c.pipeline(window=50) as pipe:
            for i in range(n):
                await pipe.publish("", q, b"m%d" % i)
                if i % 50 == 25:
                    self.assertEqual((await c.declare_queue(side)).name, side)
                    await c.publish("", side, b"side %d" % i)
                    got = await c.get(side)
                    self.assertEqual([m.body for m in got], [b"side %d" % i])
                    await got[0].ack()
        sent = [r.id for r in pipe.results]
        received = await self.read(sub, n)
        for m in received:
            await m.ack(wait=False)
        await c.ping()
        self.assertEqual([m.id for m in received], sent)
        # And for certain, whatever the timing above: a MSG pushed while a
        # GET wait= of the same connection is owed its reply.
        empty = unique("empty")
        await c.declare_queue(empty)
        other = await self.client()
        waiting = asyncio.ensure_future(c.get(empty, wait=3.0))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while not c._pending:
            self.assertLess(loop.time(), deadline, "the GET was never sent")
            await asyncio.sleep(0.001)
        await other.publish("", q, b"late")
        late = await self.read(sub, 1)
        self.assertEqual(late[0].body, b"late")
        await late[0].ack(wait=False)
        self.assertEqual(await waiting, [])
        self.assertIn(True, interleaved, "no MSG arrived while a reply was owed: the scenario did not happen")

    async def test_disconnect_while_holding_deliveries(self) -> None:
        q = unique()
        await self.c.declare_queue(q)
        holder = await self.client(reconnect=False)
        held_sub = await holder.subscribe(q, prefetch=10)
        ids = [(await self.c.publish("", q, b"%d" % i)).id for i in range(3)]
        held = await self.read(held_sub, 3)
        other = await self.client()
        other_sub = await other.subscribe(q, prefetch=10)
        holder._drop_connection()
        again = await self.read(other_sub, 3)
        self.assertEqual([m.id for m in again], ids)
        self.assertTrue(all(m.redelivered for m in again))
        await async_wait_until(lambda: not holder.connected, what="the holder to see its loss")
        with self.assertRaises(sluice.DeliveryLostError):
            await held[0].ack()
        with self.assertRaises(sluice.SluiceConnectionError):
            await held_sub.next(timeout=0)
        for m in again:
            await m.ack()

    async def test_resubscribe_keeps_prefetch_bytes(self) -> None:
        q = unique()
        await self.c.declare_queue(q)
        await self.c.publish_many([("", q, b) for b in (b"first!", b"second", b"third!")])
        c = await self.client()
        sub = await c.subscribe(q, prefetch=100, prefetch_bytes=10)
        held = await sub.next(timeout=10)
        self.assertEqual(held.body, b"first!")
        c._drop_connection()  # as a network failure would
        # The SUB on the new connection says prefetch-bytes=10 again: one 6-byte body at a time.
        again = await sub.next(timeout=20)
        self.assertEqual((again.body, again.redelivered), (b"first!", True))
        self.assertGreater(again._gen, held._gen)

        async def one_out() -> bool:
            return await self.ready_unacked(q) == (2, 1)

        await async_wait_until(one_out, what="2 ready and 1 unacked after the reconnect")
        self.assertIsNone(await sub.next(timeout=0.3), "a second 6-byte delivery came with 6 of 10 bytes out")
        await again.ack()
        self.assertEqual((await sub.next(timeout=10)).body, b"second")

    async def test_broker_restart_resubscribes(self) -> None:
        own = await in_thread(Broker().start)
        try:
            c = await self.client(own.addr)
            q = unique()
            await c.declare_queue(q, durable=True)
            ids = [(await c.publish("", q, b"%d" % i)).id for i in range(2)]
            sub = await c.subscribe(q, prefetch=10)
            held = await self.read(sub, 2)
            await held[0].ack()
            await in_thread(own.stop)
            await async_wait_until(lambda: not c.connected, what="the client to see the broker go")
            with self.assertRaises(sluice.DeliveryLostError):
                await held[1].ack()
            await in_thread(own.start)
            self.assertTrue(await c.wait_connected(timeout=20))
            again = await sub.next(timeout=20)
            self.assertEqual((again.id, again.redelivered), (ids[1], True))
            new_id = (await c.publish("", q, b"after")).id
            after = await sub.next(timeout=20)
            self.assertEqual((after.id, after.redelivered), (new_id, False))
            await again.ack()
            await after.ack()
            self.assertEqual(c.reconnects, 1)
        finally:
            await in_thread(own.cleanup)

    async def test_tls(self) -> None:
        tls = await in_thread(Broker(tls=True).start)
        try:
            c = await self.client(tls.tls_addr, tls=True, ca_file=tls.cert)
            q = unique()
            await c.declare_queue(q)
            self.assertEqual((await c.publish("", q, b"\x00\r\n" * 1000)).routed, 1)
            self.assertEqual((await c.get(q, auto_ack=True))[0].body, b"\x00\r\n" * 1000)
            _, table = await c.send_command("LIST CONNECTIONS")
            self.assertIn("sluice-python-asyncio", table.decode())
            await c.close()
        finally:
            await in_thread(tls.cleanup)

    async def test_wrong_password_is_a_typed_error(self) -> None:
        own = await in_thread(Broker().start)
        try:
            admin = await self.client(own.addr)
            await admin.send_command("USER ADD root rootpw admin")
            with self.assertRaises(sluice.NoAuthError) as cm:
                await AsyncClient(own.addr, user="root", password="wrong", timeout=20).connect()
            self.assertEqual(cm.exception.code, "NOAUTH")
            ok = await self.client(own.addr, user="root", password="rootpw")
            await ok.declare_queue(unique())
        finally:
            await in_thread(own.cleanup)

    async def test_stream_offsets_groups_and_seek(self) -> None:
        s = unique("stream")
        await self.c.declare_stream(s)
        for i in range(1, 4):
            await self.c.publish("", s, b"m%d" % i)
        t4 = time.time()
        await async_wait_until(lambda: time.time() >= t4 + 0.005, what="the clock")
        t4 = time.time()
        for i in range(4, 6):
            await self.c.publish("", s, b"m%d" % i)
        first = await self.read(await self.c.subscribe(s, offset="first"), 5)
        self.assertEqual([m.offset for m in first], [1, 2, 3, 4, 5])
        by_time = await self.read(await self.c.subscribe(s, time=t4), 2)
        self.assertEqual([m.offset for m in by_time], [4, 5])
        g = await self.client()
        sub = await g.subscribe(s, group="g1", offset="first", prefetch=10)
        got = await self.read(sub, 5)
        for m in got[:2]:
            await m.ack()
        await g.close()
        h = await self.client()
        sub_h = await h.subscribe(s, group="g1", prefetch=10)
        resumed = await self.read(sub_h, 3)
        self.assertEqual([m.offset for m in resumed], [3, 4, 5])
        for m in resumed:
            await m.ack()
        self.assertEqual(await h.seek(s, "g1", offset="first"), [1])
        self.assertEqual([m.offset for m in await self.read(sub_h, 5)], [1, 2, 3, 4, 5])
        self.assertEqual(await h.seek(s, "g1", time=t4), [4])

    async def test_heartbeats_keep_an_idle_connection(self) -> None:
        seen = []
        c = await self.client(heartbeat=0.2, on_notice=seen.append)
        await asyncio.sleep(1.0)
        await c.ping()
        self.assertEqual(c.reconnects, 0)
        self.assertIn("heartbeat", seen)

    async def test_subscription_ends_when_its_queue_is_deleted(self) -> None:
        q = unique()
        await self.c.declare_queue(q)
        sub = await self.c.subscribe(q)
        other = await self.client()
        await other.delete_queue(q)
        self.assertEqual([m async for m in sub], [])
        self.assertEqual(sub.cancel_reason, "queue-deleted")


if __name__ == "__main__":
    unittest.main()
