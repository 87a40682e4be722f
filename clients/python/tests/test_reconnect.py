"""Reconnecting: a broker restart, a dropped connection, a broker that stays away."""

from __future__ import annotations

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _broker import Broker, unique, wait_until  # noqa: E402

import sluice  # noqa: E402
from sluice import Client  # noqa: E402


class ReconnectTest(unittest.TestCase):
    def setUp(self) -> None:
        self.broker = Broker()
        self.addCleanup(self.broker.cleanup)  # runs after tearDown, and even if setUp fails
        self.broker.start()
        self.clients = []

    def tearDown(self) -> None:
        for c in self.clients:
            c.close()

    def client(self, **kw) -> Client:
        kw.setdefault("timeout", 30)
        kw.setdefault("reconnect_delay", 0.05)
        kw.setdefault("reconnect_max_delay", 0.5)
        c = Client(self.broker.addr, **kw)
        self.clients.append(c)
        return c

    def test_broker_restart_resubscribes(self) -> None:
        c = self.client()
        q = unique()
        c.declare_queue(q, durable=True)
        ids = [c.publish("", q, b"before %d" % i).id for i in range(3)]
        sub = c.subscribe(q, prefetch=10)
        got = [sub.next(timeout=10) for _ in range(3)]
        self.assertEqual([m.id for m in got], ids)
        got[0].ack()
        # Two held unacked: the broker stops (SIGTERM) and starts again on the
        # same address and data directory.
        self.broker.stop()
        wait_until(lambda: not c.connected, what="the client to see the broker go")
        with self.assertRaises(sluice.DeliveryLostError):
            got[1].ack()
        self.broker.start()
        self.assertTrue(c.wait_connected(timeout=20))
        self.assertEqual(c.reconnects, 1)
        # The subscription goes on: the two unacked come again, flagged, then new ones.
        again = [sub.next(timeout=20) for _ in range(2)]
        self.assertEqual([m.id for m in again], ids[1:])
        self.assertTrue(all(m.redelivered for m in again))
        new_id = c.publish("", q, b"after").id
        after = sub.next(timeout=20)
        self.assertEqual((after.id, after.body, after.redelivered), (new_id, b"after", False))
        for m in again + [after]:
            m.ack()
        s = c.stats(q)
        self.assertEqual((s["messages_ready"], s["messages_unacked"]), ("0", "0"))

    def test_publish_waits_for_the_reconnect(self) -> None:
        c = self.client()
        q = unique()
        c.declare_queue(q, durable=True)
        self.broker.stop()
        wait_until(lambda: not c.connected, what="the client to see the broker go")
        self.broker.start()
        # Issued while reconnecting (or just after): it waits for the connection.
        self.assertEqual(c.publish("", q, b"x").routed, 1)
        self.assertEqual([m.body for m in c.get(q, auto_ack=True)], [b"x"])

    def test_dropped_connection_redelivers_to_the_same_subscription(self) -> None:
        c = self.client()
        q = unique()
        c.declare_queue(q)
        sub = c.subscribe(q, prefetch=10)
        ids = [c.publish("", q, b"%d" % i).id for i in range(3)]
        held = [sub.next(timeout=10) for _ in range(3)]
        c._drop_connection()  # as a network failure would
        again = [sub.next(timeout=20) for _ in range(3)]
        self.assertEqual([m.id for m in again], ids)
        self.assertTrue(all(m.redelivered and m.deliveries == 2 for m in again))
        self.assertGreater(min(m._gen for m in again), max(m._gen for m in held))
        with self.assertRaises(sluice.DeliveryLostError):
            held[0].nack()
        for m in again:
            m.ack()
        self.assertEqual(c.reconnects, 1)

    def test_resubscribe_keeps_prefetch_bytes(self) -> None:
        c = self.client()
        q = unique()
        c.declare_queue(q)
        for body in (b"first!", b"second", b"third!"):
            c.publish("", q, body)
        sub = c.subscribe(q, prefetch=100, prefetch_bytes=10)
        held = sub.next(timeout=10)
        self.assertEqual(held.body, b"first!")
        c._drop_connection()  # as a network failure would
        # The SUB on the new connection says prefetch-bytes=10 again: one 6-byte body at a time.
        again = sub.next(timeout=20)
        self.assertEqual((again.body, again.redelivered), (b"first!", True))
        self.assertGreater(again._gen, held._gen)

        def one_out() -> bool:
            s = c.stats(q)
            return (s["messages_ready"], s["messages_unacked"]) == ("2", "1")

        wait_until(one_out, what="2 ready and 1 unacked after the reconnect")
        self.assertIsNone(sub.next(timeout=0.3), "a second 6-byte delivery came with 6 of 10 bytes out")
        again.ack()
        self.assertEqual(sub.next(timeout=10).body, b"second")

    def test_next_address_after_a_loss(self) -> None:
        second = Broker().start()
        try:
            c = Client([self.broker.addr, second.addr], timeout=30, reconnect_delay=0.05)
            self.clients.append(c)
            self.assertEqual("%s:%d" % c.address, self.broker.addr)
            self.broker.stop()
            self.assertTrue(wait_until(lambda: c.connected and "%s:%d" % c.address == second.addr,
                                       timeout=20, what="a connection to the second broker"))
            c.ping()
        finally:
            second.cleanup()

    def test_gives_up_after_reconnect_timeout(self) -> None:
        c = self.client(reconnect_timeout=0.5)
        q = unique()
        c.declare_queue(q)
        sub = c.subscribe(q)
        self.broker.stop()
        with self.assertRaises(sluice.SluiceConnectionError):
            for _ in sub:
                pass
        with self.assertRaises(sluice.SluiceConnectionError):
            c.ping()


if __name__ == "__main__":
    unittest.main()
