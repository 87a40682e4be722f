"""The pure protocol code (sluice._protocol, sluice.errors), without a server."""

from __future__ import annotations

import os
import random
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _broker  # noqa: E402,F401  (puts this checkout's package first on sys.path)

from sluice import _protocol as P  # noqa: E402
from sluice import errors  # noqa: E402


class TokenizeTest(unittest.TestCase):
    def test_bare_words_and_blanks(self) -> None:
        self.assertEqual(P.tokenize(b"PuB\t\"\"  jobs\t x"), [b"PuB", b"", b"jobs", b"x"])
        self.assertEqual(P.tokenize(b"  a   b  "), [b"a", b"b"])
        self.assertEqual(P.tokenize(b""), [])

    def test_quotes_and_escapes(self) -> None:
        self.assertEqual(P.tokenize(b'a "two  words" "" "q \\"x\\" \\\\"'),
                         [b"a", b"two  words", b"", b'q "x" \\'])

    def test_option_with_quoted_value(self) -> None:
        line = b'MSG - 1 "" k1 deliveries=1 id="a b" group="g g" h.x="q \\"z\\"" h.bin="\xff\x01" {3}'
        self.assertEqual(P.tokenize(line), [b"MSG", b"-", b"1", b"", b"k1", b"deliveries=1", b"id=a b",
                                            b"group=g g", b'h.x=q "z"', b"h.bin=\xff\x01", b"{3}"])

    def test_bytes_that_are_not_utf8_stay_bare(self) -> None:
        self.assertEqual(P.tokenize(b"caf\xe9 \xff"), [b"caf\xe9", b"\xff"])

    def test_malformed(self) -> None:
        for bad in (b'"oops', b'"a\\tb"', b'"a"b', b'x"y"', b'"a\\'):
            with self.subTest(bad=bad), self.assertRaises(ValueError):
                P.tokenize(bad)

    def test_quote_round_trip(self) -> None:
        words = [b"", b"plain", b"two words", b'"', b"\\", b"{5}", b"{}", b"x{5}", b"caf\xe9", b"\x01\x7f",
                 b"a=b", b'h.x="y"', b"\t"]
        line = b" ".join(P.encode_word(w) for w in words)
        self.assertEqual(P.tokenize(line), words)
        line = b" ".join(P.quote(w) for w in words)
        self.assertEqual(P.tokenize(line), words)

    def test_random_words_round_trip(self) -> None:
        rng = random.Random(11)
        pieces = [b"a", b" ", b"\t", b'"', b"\\", b"=", b"{", b"}", b"7", b"\xff", b"\x01", b"h.", b"\x7f"]
        for _ in range(5000):
            words = [b"".join(rng.choice(pieces) for _ in range(rng.randrange(0, 6))) for _ in range(rng.randrange(1, 6))]
            for enc in (P.encode_word, P.quote):
                line = b" ".join(enc(w) for w in words)
                self.assertEqual(P.tokenize(line), words, line)
            # An option whose value is quoted reads back as name=value.
            self.assertEqual(P.tokenize(b"x h.k=" + P.quote(words[0])), [b"x", b"h.k=" + words[0]])

    def test_needs_quotes(self) -> None:
        self.assertFalse(P.needs_quotes(b"jobs"))
        self.assertFalse(P.needs_quotes(b"caf\xe9"))
        for w in (b"", b"a b", b"{12}", b'a"', b"a\\", b"\x1f", b"\x7f"):
            self.assertTrue(P.needs_quotes(w), w)
        self.assertEqual(P.encode_word(b"{12}"), b'"{12}"')

    def test_words_that_cannot_be_sent(self) -> None:
        for w in ("a\nb", "a\rb", "a\0b"):
            with self.assertRaises(ValueError):
                P.quote(w)

    def test_str_with_bytes_that_are_not_utf8(self) -> None:
        text = P.to_text(b"caf\xe9")
        self.assertEqual(P.to_bytes(text), b"caf\xe9")


class FrameReaderTest(unittest.TestCase):
    STREAM = (b"HELLO sluice 0.1.0 proto=1\r\n"
              b"OK a routed=1\r\n"
              b"MSG t 1 \"\" q deliveries=1 id=a {8}\r\n\r\n\r\n\r\n\x00\xff\r\n"
              b"OK {3}\n{5}\n"
              b"NOTICE heartbeat\r\n"
              b"OK \"{5}\"\r\n"
              b"MSG t 2 \"\" q deliveries=1 id=b {0}\r\n\r\n")

    EXPECTED = [
        (b"HELLO sluice 0.1.0 proto=1", None),
        (b"OK a routed=1", None),
        (b"MSG t 1 \"\" q deliveries=1 id=a {8}", b"\r\n\r\n\r\n\x00\xff"),
        (b"OK {3}", b"{5}"),
        (b"NOTICE heartbeat", None),
        (b"OK \"{5}\"", None),
        (b"MSG t 2 \"\" q deliveries=1 id=b {0}", b""),
    ]

    def frames(self, chunks) -> list:
        r = P.FrameReader()
        out = []
        for c in chunks:
            r.feed(c)
            while True:
                f = r.next_frame()
                if f is None:
                    break
                out.append(f)
        self.assertEqual(r.buffered, 0)
        return out

    def test_whole(self) -> None:
        self.assertEqual(self.frames([self.STREAM]), self.EXPECTED)

    def test_byte_by_byte(self) -> None:
        s = self.STREAM
        self.assertEqual(self.frames([s[i:i + 1] for i in range(len(s))]), self.EXPECTED)

    def test_literal_marks(self) -> None:
        # protocol.md's table: which lines announce a literal
        cases = [
            (b'PUB "" jobs {5}', 5),
            (b'PUB "" jobs {5}   ', 5),
            (b'PUB "" jobs "{5}"', None),
            (b'PUB "" jobs x{5}', None),
            (b'PUB "" jobs {000000000000000000001}', 1),
            (b'{2}', 2),
        ]
        for line, n in cases:
            with self.subTest(line=line):
                m = P.LITERAL_MARK.search(line)
                self.assertEqual(int(m.group(1)) if m else None, n)

    def test_literal_count_agrees_with_the_regex(self) -> None:
        rng = random.Random(7)
        alphabet = [b"{", b"}", b"1", b"0", b"9", b" ", b"\t", b"x", b'"', b"{12}", b" {3}"]
        for _ in range(20000):
            line = b"".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 12)))
            m = P.LITERAL_MARK.search(line)
            self.assertEqual(P.literal_count(line), int(m.group(1)) if m else None, line)

    def test_no_end_of_line_after_literal(self) -> None:
        r = P.FrameReader()
        r.feed(b"OK {3}\r\nabcX\r\n")
        with self.assertRaises(errors.ProtocolError):
            r.next_frame()

    def test_large_stream_compacts(self) -> None:
        body = bytes(range(256)) * 400
        one = b"MSG t 1 \"\" q deliveries=1 id=a {%d}\r\n" % len(body) + body + b"\r\n"
        frames = self.frames([one * 20])
        self.assertEqual(len(frames), 20)
        self.assertTrue(all(b == body for _, b in frames))


class ParseTest(unittest.TestCase):
    def test_delivery(self) -> None:
        line = (b'MSG w1 2 orders "invoice created" redelivered deliveries=2 id=inv-42 group="g 1" '
                b'offset=7 partition=1 h.content-type=application/json h.x="a \\"b\\"" future=thing newflag {26}')
        kw = P.parse_delivery(P.tokenize(line), b'{"invoice":42,"total":9.5}')
        d = P.Delivery(**kw)
        self.assertEqual(d.consumer_tag, "w1")
        self.assertEqual(d.delivery_tag, 2)
        self.assertEqual(d.exchange, "orders")
        self.assertEqual(d.routing_key, "invoice created")
        self.assertTrue(d.redelivered)
        self.assertEqual(d.deliveries, 2)
        self.assertEqual(d.id, "inv-42")
        self.assertEqual(d.group, "g 1")
        self.assertEqual(d.offset, 7)
        self.assertEqual(d.partition, 1)
        self.assertEqual(d.headers, {"content-type": "application/json", "x": 'a "b"'})
        self.assertEqual(d.extra, {"future": "thing"})
        self.assertEqual(d.body, b'{"invoice":42,"total":9.5}')

    def test_delivery_not_redelivered_binary_key(self) -> None:
        kw = P.parse_delivery(P.tokenize(b'MSG - 1 "" caf\xe9 deliveries=1 id=x {0}'), b"")
        d = P.Delivery(**kw)
        self.assertFalse(d.redelivered)
        self.assertEqual(d.routing_key_bytes, b"caf\xe9")
        self.assertIsNone(d.offset)

    def test_confirm(self) -> None:
        self.assertEqual(P.parse_confirm(P.tokenize(b"a routed=1")), P.Confirm("a", 1))
        self.assertEqual(P.parse_confirm(P.tokenize(b'"a b" routed=2 rejected=1 duplicate')),
                         P.Confirm("a b", 2, 1, True))

    def test_replies(self) -> None:
        self.assertEqual(P.split_reply(b"OK"), (True, []))
        self.assertEqual(P.split_reply(b"OK jobs messages=3 consumers=0"),
                         (True, [b"jobs", b"messages=3", b"consumers=0"]))
        self.assertEqual(P.split_reply(b'ERR NOT_FOUND exchange "nowhere"'),
                         (False, [b"NOT_FOUND", b'exchange "nowhere"']))
        self.assertEqual(P.parse_queue_info([b"s", b"messages=0", b"consumers=0", b"partitions=2"]),
                         P.QueueInfo("s", 0, 0, 2))
        self.assertEqual(P.parse_offsets([b"offset=1,4"]), [1, 4])
        self.assertEqual(P.parse_redrive([b"moved=2", b"kept=1"]), P.RedriveResult(2, 1))
        with self.assertRaises(errors.ProtocolError):
            P.split_reply(b"WHAT")

    def test_errors_by_code(self) -> None:
        e = P.error_from_reply(b"NO_ROUTE", b'exchange "" routed the message to no queue')
        self.assertIsInstance(e, errors.NoRouteError)
        self.assertIsInstance(e, errors.ServerError)
        self.assertIsInstance(e, errors.SluiceError)
        self.assertEqual(e.code, "NO_ROUTE")
        self.assertEqual(e.text, 'exchange "" routed the message to no queue')
        codes = {"SYNTAX": errors.BadSyntaxError, "UNKNOWN_COMMAND": errors.UnknownCommandError,
                 "NOT_FOUND": errors.NotFoundError, "PRECONDITION": errors.PreconditionError,
                 "QUEUE_FULL": errors.QueueFullError, "TOO_LARGE": errors.TooLargeError,
                 "LINE_TOO_LONG": errors.LineTooLongError, "BAD_FRAME": errors.BadFrameError,
                 "UNKNOWN_TAG": errors.UnknownTagError, "NOAUTH": errors.NoAuthError,
                 "FORBIDDEN": errors.ForbiddenError, "LOCKED": errors.LockedError, "LIMIT": errors.LimitError,
                 "INTERNAL": errors.InternalError, "UNAVAILABLE": errors.UnavailableError}
        for code, cls in codes.items():
            err = errors.error_for(code, "t")
            self.assertIs(type(err), cls)
            self.assertEqual(err.code, code)
        # An unknown code is treated like INTERNAL and keeps its code.
        odd = errors.error_for("NEW_THING", "t")
        self.assertIsInstance(odd, errors.InternalError)
        self.assertEqual(odd.code, "NEW_THING")


class CommandTest(unittest.TestCase):
    def test_pub(self) -> None:
        data = P.pub_command("", "jobs", b"a\r\nb", persistent=False, mandatory=True, id="x y", ttl=1.5,
                             delay=0, priority=3, group="g", headers={"k": "v w"})
        self.assertEqual(data, b'PUB "" "jobs" transient mandatory id="x y" ttl=1500 delay=0 priority=3 '
                               b'group=g h.k="v w" {4}\r\na\r\nb\r\n')

    def test_declare_and_sub(self) -> None:
        opts = P.declare_queue_options(durable=True, max_length=10, retry_delays=[1, 0.5], dead_letter="")
        self.assertEqual(P.command("DECLARE QUEUE", "q", options=opts),
                         b'DECLARE QUEUE "q" durable max-length=10 dead-letter="" retry-delays=1000,500\r\n')
        self.assertEqual(P.sub_command("s", "t1", prefetch=2, auto_ack=False, exclusive=False, offset="first",
                                       time=None, group="g"),
                         b'SUB "s" tag=t1 prefetch=2 group=g offset=first\r\n')
        with self.assertRaises(ValueError):
            P.offset_option(1, 2.0)
        self.assertEqual(P.sub_command("q", "t2", prefetch=100, prefetch_bytes=10, auto_ack=True, exclusive=False,
                                       offset=None, time=None, group=None),
                         b'SUB "q" tag=t2 prefetch=100 prefetch-bytes=10 ack=auto\r\n')
        for bad in (0, (1 << 30) + 1):
            with self.assertRaises(ValueError):
                P.sub_command("q", "t", prefetch=None, prefetch_bytes=bad, auto_ack=False, exclusive=False,
                              offset=None, time=None, group=None)
        for bad in (True, 1.5, "10"):
            with self.assertRaises(TypeError):
                P.check_prefetch_bytes(bad)  # type: ignore[arg-type]

    def test_addresses(self) -> None:
        self.assertEqual(P.parse_address("127.0.0.1:5681"), ("127.0.0.1", 5681))
        self.assertEqual(P.parse_address("[::1]:7"), ("::1", 7))
        self.assertEqual(P.parse_address("example.org"), ("example.org", 5680))


if __name__ == "__main__":
    unittest.main()
