"""Streams: offsets, time, consumer groups and their commits, SEEK (blocking client)."""

from __future__ import annotations

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _broker import Broker, module_broker, unique, wait_until  # noqa: E402

import sluice  # noqa: E402
from sluice import Client  # noqa: E402

broker: Broker


def setUpModule() -> None:
    global broker
    broker = module_broker()



class StreamTest(unittest.TestCase):
    def setUp(self) -> None:
        self.clients = []
        self.c = self.client()
        self.s = unique("stream")
        self.assertEqual(self.c.declare_stream(self.s).messages, 0)
        # Five messages; the time between the third and the fourth is noted.
        self.ids = [self.c.publish("", self.s, b"m%d" % i, id="id-%d" % i).id for i in (1, 2, 3)]
        t3 = time.time()
        wait_until(lambda: time.time() >= t3 + 0.005, what="the clock to move on")
        self.t4 = time.time()
        self.ids += [self.c.publish("", self.s, b"m%d" % i, id="id-%d" % i).id for i in (4, 5)]

    def tearDown(self) -> None:
        for c in self.clients:
            c.close()

    def client(self, **kw) -> Client:
        kw.setdefault("timeout", 20)
        kw.setdefault("reconnect_delay", 0.05)
        c = Client(broker.addr, **kw)
        self.clients.append(c)
        return c

    def read(self, sub, n: int):
        out = []
        for _ in range(n):
            m = sub.next(timeout=10)
            self.assertIsNotNone(m, f"only {len(out)} of {n} deliveries came")
            out.append(m)
        return out

    def test_offsets_and_time(self) -> None:
        c = self.c
        first = self.read(c.subscribe(self.s, offset="first", prefetch=10), 5)
        self.assertEqual([m.offset for m in first], [1, 2, 3, 4, 5])
        self.assertEqual([m.id for m in first], self.ids)
        self.assertEqual([m.body for m in first], [b"m1", b"m2", b"m3", b"m4", b"m5"])
        from3 = self.read(c.subscribe(self.s, offset=3), 3)
        self.assertEqual([m.offset for m in from3], [3, 4, 5])
        last = self.read(c.subscribe(self.s, offset="last"), 1)
        self.assertEqual(last[0].offset, 5)
        by_time = self.read(c.subscribe(self.s, time=self.t4), 2)
        self.assertEqual([m.offset for m in by_time], [4, 5])
        new = c.subscribe(self.s)  # offset=next: only what comes from now on
        self.assertIsNone(new.next(timeout=0.2))
        c.publish("", self.s, b"m6")
        self.assertEqual(new.next(timeout=10).offset, 6)
        # Acking on a stream only gives prefetch room back; the messages stay.
        for m in first:
            m.ack()
        self.assertEqual(c.declare_stream(self.s).messages, 6)
        self.assertEqual([m.position for m in self.c.peek(self.s, 2, start=2)], [2, 3])  # PEEK: the position is the offset
        with self.assertRaises(sluice.PreconditionError):
            c.get(self.s)

    def test_group_commits_and_resumes(self) -> None:
        a = self.client()
        sub = a.subscribe(self.s, group="billing", offset="first", prefetch=10)
        got = self.read(sub, 5)
        self.assertEqual([m.offset for m in got], [1, 2, 3, 4, 5])
        wait_until(lambda: sub.active, what="NOTICE active")
        # Acks commit in order: 1 and 2 are done, 4 too, but 3 is not.
        for m in (got[0], got[1], got[3]):
            m.ack()
        a.close()
        # Another member resumes at the committed offset (3): 3 and 5 come again,
        # flagged; 4, acked after the commit point, does not (protocol.md, section 16).
        b = self.client()
        sub_b = b.subscribe(self.s, group="billing", offset="first", prefetch=10)
        again = self.read(sub_b, 2)
        self.assertEqual([(m.offset, m.redelivered) for m in again], [(3, True), (5, True)])
        for m in again:
            m.ack()
        # Everything committed: nothing more until something is published.
        self.assertIsNone(sub_b.next(timeout=0.2))
        self.assertEqual(b.seek(self.s, "billing", offset="next"), [6])

    def test_seek_replays(self) -> None:
        sub = self.c.subscribe(self.s, group="audit", offset="first", prefetch=10)
        for m in self.read(sub, 5):
            m.ack()
        self.assertEqual(self.c.seek(self.s, "audit", offset="first"), [1])
        replay = self.read(sub, 5)
        self.assertEqual([m.offset for m in replay], [1, 2, 3, 4, 5])
        for m in replay:
            m.ack()
        self.assertEqual(self.c.seek(self.s, "audit", time=self.t4), [4])
        self.assertEqual([m.offset for m in self.read(sub, 2)], [4, 5])
        self.assertEqual(self.c.seek(self.s, "fresh-group", offset=2), [2])  # a group placed before it reads
        with self.assertRaises(sluice.NotFoundError):
            self.c.seek(unique("nostream"), "g", offset="first")
        with self.assertRaises(ValueError):
            self.c.seek(self.s, "g")

    def test_reader_resumes_after_a_dropped_connection(self) -> None:
        # Without a group, the client subscribes again after the last offset it handed out.
        c = self.client()
        sub = c.subscribe(self.s, offset="first", prefetch=10)
        seen = self.read(sub, 2)
        wait_until(lambda: sub.buffered == 3, what="the rest to be buffered")
        c._drop_connection()
        # The buffered three were the old connection's: dropped, and read again from offset 3.
        wait_until(lambda: c.reconnects == 1 and c.connected, what="the reconnect")
        rest = self.read(sub, 3)
        self.assertEqual([m.offset for m in seen + rest], [1, 2, 3, 4, 5])
        self.assertEqual(c.reconnects, 1)
        self.assertIsNone(sub.next(timeout=0.2))

    def test_partitioned_stream(self) -> None:
        name = unique("parts")
        self.assertEqual(self.c.declare_stream(name, partitions=2).partitions, 2)
        n = 40  # 40 keys: both partitions get some (each key's messages go to one)
        for i in range(n):
            self.c.publish(name, "user-%d" % i, b"%d" % i)
        sub = self.c.subscribe(name, group="ledger", offset="first", prefetch=100)
        got = self.read(sub, n)
        self.assertEqual(sorted(m.body for m in got), sorted(b"%d" % i for i in range(n)))
        self.assertEqual({m.partition for m in got}, {0, 1})
        for m in got:
            m.ack()
        self.assertEqual(self.c.seek(name, "ledger", offset="first"), [1, 1])


if __name__ == "__main__":
    unittest.main()
