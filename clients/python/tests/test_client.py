"""The blocking client against a real broker (one for the module)."""

from __future__ import annotations

import os
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _broker import Broker, module_broker, unique, wait_until  # noqa: E402

import sluice  # noqa: E402
from sluice import Client  # noqa: E402

broker: Broker
MAX_LITERAL = 2 * 1024 * 1024


def setUpModule() -> None:
    global broker
    broker = module_broker(extra_args=["--max-literal", str(MAX_LITERAL)])



class ClientTest(unittest.TestCase):
    def setUp(self) -> None:
        self.clients = []
        self.c = self.client()

    def tearDown(self) -> None:
        for c in self.clients:
            c.close()

    def client(self, **kw) -> Client:
        kw.setdefault("timeout", 20)
        c = Client(broker.addr, **kw)
        self.clients.append(c)
        return c

    def ready_unacked(self, q: str):
        s = self.c.stats(q)
        return int(s["messages_ready"]), int(s["messages_unacked"])

    # -- confirms and typed errors

    def test_confirm_id_and_routed(self) -> None:
        q = unique()
        self.assertEqual(self.c.declare_queue(q, durable=True), sluice.QueueInfo(q, 0, 0))
        confirm = self.c.publish("", q, b"one job")
        self.assertIsInstance(confirm, sluice.Confirm)
        self.assertEqual(confirm.routed, 1)
        self.assertRegex(confirm.id, r"^[0-9a-f]+-[0-9]+$")
        self.assertEqual(self.c.publish("", q, "two", id="job 2", persistent=False), sluice.Confirm("job 2", 1))
        # Routed to no queue: dropped, routed=0 (not an error without mandatory).
        self.assertEqual(self.c.publish("", unique("nobody"), b"x").routed, 0)
        self.assertEqual(self.c.declare_queue(q, durable=True).messages, 2)
        got = self.c.get(q, 10, auto_ack=True)
        self.assertEqual([(m.id, m.body) for m in got], [(confirm.id, b"one job"), ("job 2", b"two")])

    def test_mandatory_unroutable_raises(self) -> None:
        with self.assertRaises(sluice.NoRouteError) as cm:
            self.c.publish("", unique("nobody"), b"x", mandatory=True)
        self.assertEqual(cm.exception.code, "NO_ROUTE")
        self.assertIsInstance(cm.exception, sluice.ServerError)
        # Routable with mandatory: a confirm.
        q = unique()
        self.c.declare_queue(q)
        self.assertEqual(self.c.publish("", q, b"x", mandatory=True).routed, 1)

    def test_typed_errors(self) -> None:
        q = unique()
        self.c.declare_queue(q, max_length=1, overflow="reject-publish")
        with self.assertRaises(sluice.PreconditionError) as cm:
            self.c.declare_queue(q, durable=True)
        self.assertEqual(cm.exception.code, "PRECONDITION")
        with self.assertRaises(sluice.NotFoundError):
            self.c.publish(unique("no-exchange"), "k", b"x")
        with self.assertRaises(sluice.NotFoundError):
            self.c.subscribe(unique("no-queue"))
        self.c.publish("", q, b"1")
        with self.assertRaises(sluice.QueueFullError) as full:
            self.c.publish("", q, b"2")
        self.assertEqual(full.exception.code, "QUEUE_FULL")
        with self.assertRaises(sluice.BadSyntaxError) as syn:
            self.c.publish("", q, b"x", priority=256)
        self.assertEqual(syn.exception.code, "SYNTAX")
        with self.assertRaises(sluice.UnknownCommandError):
            self.c.send_command("frobnicate")
        # The connection goes on after each error.
        self.c.ping()

    def test_publish_many_reports_each_failure(self) -> None:
        q = unique()
        self.c.declare_queue(q)
        items = [("", q, b"1"), ("", unique("nobody"), b"2", {"mandatory": True}), ("", q, b"3", {"id": "three"})]
        with self.assertRaises(sluice.BatchPublishError) as cm:
            self.c.publish_many(items, window=2)
        results = cm.exception.results
        self.assertIsInstance(results[0], sluice.Confirm)
        self.assertIsInstance(results[1], sluice.NoRouteError)
        self.assertEqual(results[2], sluice.Confirm("three", 1))
        self.assertEqual(cm.exception.code, "NO_ROUTE")
        self.assertEqual([m.body for m in self.c.get(q, 10, auto_ack=True)], [b"1", b"3"])

    def test_body_over_the_literal_limit(self) -> None:
        q = unique()
        self.c.declare_queue(q)
        with self.assertRaises(sluice.TooLargeError) as cm:
            self.c.publish("", q, b"\0" * (MAX_LITERAL + 1))
        self.assertEqual(cm.exception.code, "TOO_LARGE")
        # The broker skipped the bytes; the connection goes on, in step.
        self.assertEqual(self.c.publish("", q, b"\0" * MAX_LITERAL).routed, 1)
        self.assertEqual(len(self.c.get(q, auto_ack=True)[0].body), MAX_LITERAL)

    # -- subscriptions

    def test_prefetch_bound(self) -> None:
        q = unique()
        self.c.declare_queue(q)
        for i in range(5):
            self.c.publish("", q, b"m%d" % i)
        sub = self.c.subscribe(q, prefetch=2)
        first = [sub.next(timeout=10) for _ in range(2)]
        self.assertEqual([m.body for m in first], [b"m0", b"m1"])
        # The broker holds the other three back: two are out, three wait.
        wait_until(lambda: self.ready_unacked(q) == (3, 2), what="3 ready and 2 unacked")
        self.assertIsNone(sub.next(timeout=0.3), "a third delivery came with 2 unacked and prefetch=2")
        self.assertEqual(sub.buffered, 0)
        first[0].ack()
        third = sub.next(timeout=10)
        self.assertIsNotNone(third)
        self.assertEqual(third.body, b"m2")
        self.assertIsNone(sub.next(timeout=0.3), "a fourth delivery came with 2 unacked and prefetch=2")
        self.assertEqual(self.ready_unacked(q), (2, 2))
        rest = [first[1], third]
        for _ in range(2):
            rest[0].ack()
            rest = rest[1:] + [sub.next(timeout=10)]
        self.assertEqual([m.body for m in rest], [b"m3", b"m4"])
        for m in rest:
            m.ack()
        self.assertEqual(self.ready_unacked(q), (0, 0))

    def one_at_a_time(self, bodies, **options) -> None:
        """Publishes ``bodies``, subscribes with ``options``, and checks that each
        delivery is out alone: the broker holds the rest back until it is acked."""
        q = unique()
        self.c.declare_queue(q)
        for body in bodies:
            self.c.publish("", q, body)
        sub = self.c.subscribe(q, **options)
        self.assertEqual(sub.prefetch_bytes, options.get("prefetch_bytes"))
        got = sub.next(timeout=10)
        self.assertEqual(got.body, bodies[0])
        for i, body in enumerate(bodies[1:]):
            rest = len(bodies) - 1 - i
            wait_until(lambda: self.ready_unacked(q) == (rest, 1), what=f"{rest} ready and 1 unacked")
            self.assertIsNone(sub.next(timeout=0.3), f"a delivery came with {len(got.body)} bytes out")
            got.ack()
            got = sub.next(timeout=10)
            self.assertIsNotNone(got, "the next delivery did not come once nothing was outstanding")
            self.assertEqual(got.body, body)
        got.ack()
        self.assertEqual(self.ready_unacked(q), (0, 0))

    def test_prefetch_bytes_bound(self) -> None:
        # prefetch=100 leaves room for all three; 6 + 6 bytes would pass prefetch_bytes=10.
        self.one_at_a_time([b"first!", b"second", b"third!"], prefetch=100, prefetch_bytes=10)

    def test_prefetch_bytes_larger_body_comes_alone(self) -> None:
        # A 16-byte body with prefetch_bytes=10: it waits for the 4 bytes out to
        # come back, then goes alone; the 2-byte body after it waits for its ack.
        self.one_at_a_time([b"aaaa", b"0123456789abcdef", b"dd"], prefetch_bytes=10)

    def test_prefetch_bytes_out_of_range(self) -> None:
        q = unique()
        self.c.declare_queue(q)
        for bad in (0, -1, (1 << 30) + 1):
            with self.assertRaisesRegex(ValueError, "prefetch_bytes: must be between 1 and 1073741824"):
                self.c.subscribe(q, prefetch_bytes=bad)
        with self.assertRaises(TypeError):
            self.c.subscribe(q, prefetch_bytes="10")  # type: ignore[arg-type]
        # Nothing was sent: the queue has no consumer, and the client goes on.
        self.assertEqual(self.c.declare_queue(q).consumers, 0)
        sub = self.c.subscribe(q, prefetch_bytes=1 << 30)
        self.assertEqual(self.c.declare_queue(q).consumers, 1)
        sub.cancel()

    def test_ack_nack_reject_and_redelivery(self) -> None:
        q, dead = unique(), unique("dead")
        self.c.declare_queue(dead)
        self.c.declare_queue(q, dead_letter="", dead_letter_key=dead)
        for body in (b"a", b"b", b"c"):
            self.c.publish("", q, body)
        sub = self.c.subscribe(q, prefetch=10)
        a, b, c = (sub.next(timeout=10) for _ in range(3))
        self.assertEqual([a.body, b.body, c.body], [b"a", b"b", b"c"])
        self.assertEqual([m.redelivered for m in (a, b, c)], [False] * 3)
        self.assertEqual([m.deliveries for m in (a, b, c)], [1] * 3)
        a.ack()
        with self.assertRaises(sluice.UnknownTagError):
            a.ack()  # already settled
        b.nack()
        b2 = sub.next(timeout=10)
        self.assertEqual((b2.body, b2.redelivered, b2.deliveries, b2.id), (b"b", True, 2, b.id))
        self.assertNotEqual(b2.delivery_tag, b.delivery_tag)
        c.reject()
        dl = wait_until(lambda: self.c.peek(dead, 10), what="the dead letter")
        self.assertEqual([(m.body, m.id, m.headers["x-death-reason"]) for m in dl], [(b"c", c.id, "rejected")])
        started = time.monotonic()
        b2.nack(delay=0.3)
        b3 = sub.next(timeout=10)
        self.assertGreaterEqual(time.monotonic() - started, 0.25)
        self.assertEqual((b3.body, b3.redelivered, b3.deliveries), (b"b", True, 3))
        b3.nack(requeue=False)  # dead-lettered too
        self.assertEqual([m.body for m in self.c.peek(dead, 10)], [b"c", b"b"])
        self.assertEqual(self.ready_unacked(q), (0, 0))
        self.assertEqual(self.c.redrive(dead), sluice.RedriveResult(2, 0))
        again = [sub.next(timeout=10) for _ in range(2)]
        self.assertEqual(sorted(m.body for m in again), [b"b", b"c"])
        for m in again:
            m.ack()

    def test_disconnect_while_holding_deliveries(self) -> None:
        q = unique()
        self.c.declare_queue(q)
        holder = self.client(reconnect=False)
        held_sub = holder.subscribe(q, prefetch=10)
        ids = [self.c.publish("", q, b"job %d" % i).id for i in range(3)]
        held = [held_sub.next(timeout=10) for _ in range(3)]
        self.assertEqual([m.id for m in held], ids)
        other = self.client()
        other_sub = other.subscribe(q, prefetch=10)
        self.assertIsNone(other_sub.next(timeout=0.2), "a held delivery went to a second consumer")
        # The network drops the holder's connection (no QUIT, no ACK).
        holder._drop_connection()
        again = [other_sub.next(timeout=10) for _ in range(3)]
        self.assertEqual([m.id for m in again], ids)
        self.assertTrue(all(m.redelivered and m.deliveries == 2 for m in again))
        # The holder's deliveries are gone with its connection.
        with self.assertRaises(sluice.DeliveryLostError):
            held[0].ack()
        # reconnect=False: the client has failed, and its subscription with it.
        with self.assertRaises(sluice.SluiceConnectionError):
            held_sub.next(timeout=0)
        with self.assertRaises(sluice.SluiceConnectionError):
            holder.ping()
        for m in again:
            m.ack()
        self.assertEqual(self.ready_unacked(q), (0, 0))

    def test_close_gives_deliveries_back(self) -> None:
        q = unique()
        self.c.declare_queue(q)
        a = self.client()
        sub = a.subscribe(q, prefetch=5)
        self.c.publish("", q, b"x")
        m = sub.next(timeout=10)
        a.close()
        self.assertTrue(sub.closed)
        self.assertIsNone(sub.next())
        with self.assertRaises(sluice.ClientClosedError):
            a.ping()
        got = self.c.get(q, wait=10)
        self.assertEqual((got[0].id, got[0].redelivered), (m.id, True))
        got[0].ack()

    def test_cancel_gives_buffered_back(self) -> None:
        q = unique()
        self.c.declare_queue(q)
        for i in range(4):
            self.c.publish("", q, b"%d" % i)
        sub = self.c.subscribe(q, prefetch=4)
        first = sub.next(timeout=10)
        wait_until(lambda: sub.buffered == 3, what="3 buffered deliveries")
        sub.cancel()
        self.assertTrue(sub.closed)
        self.assertEqual(self.ready_unacked(q), (3, 1))  # the 3 not taken went back
        first.ack()
        self.assertEqual([m.body for m in self.c.get(q, 10, auto_ack=True)], [b"1", b"2", b"3"])

    def test_queue_deleted_ends_subscription(self) -> None:
        q = unique()
        self.c.declare_queue(q)
        sub = self.c.subscribe(q)
        other = self.client()
        self.assertEqual(other.delete_queue(q), 0)
        self.assertEqual(list(sub), [])  # the iterator ends
        self.assertEqual(sub.cancel_reason, "queue-deleted")

    def test_auto_ack(self) -> None:
        q = unique()
        self.c.declare_queue(q)
        self.c.publish("", q, b"x")
        sub = self.c.subscribe(q, auto_ack=True)
        m = sub.next(timeout=10)
        m.ack()  # nothing to do
        self.assertEqual(self.ready_unacked(q), (0, 0))

    # -- bodies, keys and headers byte for byte

    def test_binary_bodies_round_trip(self) -> None:
        q = unique()
        self.c.declare_queue(q)
        bodies = [b"\r\n\r\n\r\n", b"\x00", b"\x00" * 100, b"a\r\n\r\n\r\nb\x00c\r", b"", b"{5}",
                  b"x {3}\r\nabc", bytes(range(256)), os.urandom(1 << 20), b"\n", b"\r"]
        confirms = [self.c.publish("", q, b) for b in bodies]
        confirms += self.c.publish_many([("", q, b) for b in bodies], window=4)
        sub = self.c.subscribe(q, prefetch=50)
        got = [sub.next(timeout=10) for _ in range(2 * len(bodies))]
        self.assertEqual([m.body for m in got], bodies + bodies)
        self.assertEqual([m.id for m in got], [c.id for c in confirms])
        for m in got:
            m.ack()
        sub.cancel()
        self.c.publish("", q, b"\x00\r\n\r\n\r\n\x00")
        self.assertEqual(self.c.get(q, wait=5, auto_ack=True)[0].body, b"\x00\r\n\r\n\r\n\x00")

    def test_keys_and_headers_round_trip(self) -> None:
        ex, q = unique("ex"), unique()
        self.c.declare_exchange(ex, "direct")
        self.c.declare_queue(q)
        keys = ["two words", 'quo"te', "back\\slash", "", "{5}", "level=error", P_BYTES]
        for k in keys:
            self.c.bind(q, ex, k)
        headers = {"note": 'a "quoted" word', "bin": P_BYTES, "empty": "", "mark": "{2}"}
        for k in keys:
            self.assertEqual(self.c.publish(ex, k, b"x", headers=headers, group="g 1").routed, 1, k)
        got = self.c.get(q, 20, auto_ack=True)
        self.assertEqual([m.routing_key for m in got], keys)
        self.assertEqual(got[-1].routing_key_bytes, b"caf\xe9 \xff")
        for m in got:
            self.assertEqual(m.headers, headers)
            self.assertEqual(m.group, "g 1")
            self.assertEqual(m.exchange, ex)

    # -- a push between a command and its reply

    def test_pushes_between_commands_and_replies(self) -> None:
        q, side = unique(), unique("side")
        c = self.client()
        interleaved = []
        dispatch = c._dispatch

        def spy(batch, gen):
            # For each subscription MSG, was a reply still owed when it came? Counted
            # from the commands waiting when this read began, less the replies read
            # before it (commands sent meanwhile are not counted: never a false yes).
            owed = len(c._pending)
            for line, _ in batch:
                if line.startswith(b"OK") or line.startswith(b"ERR"):
                    owed -= 1
                elif line.startswith(b"MSG ") and not line.startswith(b"MSG -"):
                    interleaved.append(owed > 0)
            dispatch(batch, gen)

        c._dispatch = spy
        c.declare_queue(q, durable=True)
        sub = c.subscribe(q, prefetch=1000)
        # The same connection publishes persistent messages to the queue it consumes:
        # the MSGs are pushed before the fsync'd OKs of the PUBs. Commands of every
        # kind run meanwhile, and GET's own MSG line must not be mixed up with them.
        sent = []
        n = 300
        with c.pipeline(window=50) as pipe:
            for i in range(n):
                pipe.publish("", q, b"m%d" % i)
                if i % 50 == 25:
                    self.assertEqual(c.declare_queue(side).name, side)
                    c.publish("", side, b"side %d" % i)
                    got = c.get(side)
                    self.assertEqual([m.body for m in got], [b"side %d" % i])
                    got[0].ack()
                    c.ping()
        confirms = pipe.results
        self.assertTrue(all(isinstance(r, sluice.Confirm) and r.routed == 1 for r in confirms), confirms[:3])
        sent = [r.id for r in confirms]
        received = []
        while len(received) < n:
            m = sub.next(timeout=10)
            self.assertIsNotNone(m, f"only {len(received)} of {n} deliveries came")
            received.append(m)
            m.ack(wait=False)
        c.ping()
        self.assertEqual([m.id for m in received], sent)
        self.assertEqual([m.body for m in received], [b"m%d" % i for i in range(n)])
        # And for certain, whatever the timing above: a MSG pushed while a
        # GET wait= of the same connection is owed its reply.
        empty = unique("empty")
        c.declare_queue(empty)
        other = self.client()
        got: list = []
        waiting = threading.Thread(target=lambda: got.append(c.get(empty, wait=3.0)))
        waiting.start()
        deadline = time.monotonic() + 10
        while not c._pending:
            self.assertLess(time.monotonic(), deadline, "the GET was never sent")
            time.sleep(0.001)
        other.publish("", q, b"late")
        late = sub.next(timeout=10)
        self.assertIsNotNone(late, "the late delivery never came")
        self.assertEqual(late.body, b"late")
        late.ack(wait=False)
        waiting.join(10)
        self.assertEqual(got, [[]])
        self.assertIn(True, interleaved, "no MSG arrived while a reply was owed: the scenario did not happen")
        self.assertEqual(self.ready_unacked(q), (0, 0))

    def test_threads_share_a_client(self) -> None:
        q = unique()
        self.c.declare_queue(q)
        errors = []

        def work(k: int) -> None:
            try:
                for i in range(50):
                    self.assertEqual(self.c.publish("", q, b"%d-%d" % (k, i)).routed, 1)
            except Exception as e:  # noqa: BLE001
                errors.append(e)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        self.assertEqual(errors, [])
        self.assertEqual(self.ready_unacked(q), (200, 0))

    # -- the other commands

    def test_get_wait_peek_purge_delete(self) -> None:
        q = unique()
        self.c.declare_queue(q)
        self.assertEqual(self.c.get(q), [])
        timer = threading.Timer(0.3, lambda: self.client().publish("", q, b"worth the wait"))
        timer.start()
        started = time.monotonic()
        got = self.c.get(q, wait=10)
        timer.join()
        self.assertGreaterEqual(time.monotonic() - started, 0.2)
        self.assertEqual([m.body for m in got], [b"worth the wait"])
        got[0].ack()
        for i in range(5):
            self.c.publish("", q, b"%d" % i)
        peeked = self.c.peek(q, 3)
        self.assertEqual([m.body for m in peeked], [b"0", b"1", b"2"])
        self.assertEqual([m.body for m in self.c.peek(q, 10, start=peeked[2].position)], [b"2", b"3", b"4"])
        two = self.c.get(q, 2)
        self.assertEqual([m.body for m in two], [b"0", b"1"])
        self.assertEqual(self.c.purge(q), 3)
        two[1].ack(multiple=True)
        self.assertEqual(self.ready_unacked(q), (0, 0))
        self.assertEqual(self.c.delete_queue(q), 0)
        with self.assertRaises(sluice.NotFoundError):
            self.c.purge(q)

    def test_topic_exchange_bind_unbind(self) -> None:
        ex, q = unique("logs"), unique()
        self.c.declare_exchange(ex, "topic", durable=True)
        self.c.declare_queue(q)
        self.c.bind(q, ex, "*.error")
        self.assertEqual(self.c.publish(ex, "eu.error", b"e").routed, 1)
        self.assertEqual(self.c.publish(ex, "eu.info", b"i").routed, 0)
        self.c.unbind(q, ex, "*.error")
        self.assertEqual(self.c.publish(ex, "eu.error", b"e").routed, 0)
        self.c.delete_exchange(ex)
        with self.assertRaises(sluice.NotFoundError):
            self.c.delete_exchange(ex)

    def test_headers_exchange(self) -> None:
        ex, q = unique("attrs"), unique()
        self.c.declare_exchange(ex, "headers")
        self.c.declare_queue(q)
        self.c.bind(q, ex, headers={"region": "eu", "tier": "gold"}, match="all")
        self.assertEqual(self.c.publish(ex, "", b"x", headers={"region": "eu", "tier": "gold"}).routed, 1)
        self.assertEqual(self.c.publish(ex, "", b"x", headers={"region": "eu"}).routed, 0)

    def test_heartbeats_keep_an_idle_connection(self) -> None:
        # The server closes a connection it hears nothing from for two intervals
        # (0.4 s here); the client's heartbeats keep this one for a whole second.
        seen = []
        c = self.client(heartbeat=0.2, on_notice=seen.append)
        time.sleep(1.0)
        c.ping()
        self.assertEqual(c.reconnects, 0)
        self.assertIn("heartbeat", seen)

    def test_address_list_skips_a_dead_address(self) -> None:
        import socket

        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        dead = "127.0.0.1:%d" % s.getsockname()[1]
        s.close()  # nothing listens there now
        c = Client([dead, broker.addr], timeout=20)
        self.clients.append(c)
        self.assertEqual("%s:%d" % c.address, broker.addr)
        c.ping()
        with self.assertRaises(sluice.SluiceConnectionError):
            Client(dead)


P_BYTES = b"caf\xe9 \xff".decode("utf-8", "surrogateescape")

if __name__ == "__main__":
    unittest.main()
