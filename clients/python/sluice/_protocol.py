"""The wire protocol without I/O: framing, tokenizing, quoting, commands, replies.

Shared by the blocking and the asyncio client, and unit-tested on its own
(tests/test_protocol.py). Everything here follows protocol.md, sections 3,
4 and 6.

Text that is data (routing keys, header values, ids) may be any bytes but
NUL, CR and LF. The client hands it out as ``str`` decoded from UTF-8 with
the ``surrogateescape`` error handler, so bytes that are not UTF-8 survive
a round trip: encode such a string with ``surrogateescape`` (this module
does, for every ``str`` it sends) to get the exact bytes back.
"""

from __future__ import annotations

import datetime as _dt
import functools
import math
import re
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from .errors import ProtocolError, ServerError, error_for

Text = Union[str, bytes]
Body = Union[bytes, bytearray, memoryview, str]

#: A line announces a literal when, after its end of line and trailing
#: blanks, it ends in ``{digits}`` with the ``{`` at its start or after a
#: blank (protocol.md, "Literals"). Purely lexical.
LITERAL_MARK = re.compile(rb"(?:^|[ \t])\{([0-9]+)\}[ \t]*$")

_U64_MAX = 2**64 - 1


def to_bytes(text: Text) -> bytes:
    """``str`` as UTF-8 (``surrogateescape``: lone surrogates become their bytes); bytes as is."""
    if isinstance(text, str):
        return text.encode("utf-8", "surrogateescape")
    return bytes(text)


def to_text(data: bytes) -> str:
    """Bytes as ``str``: UTF-8, with bytes that are not UTF-8 kept by ``surrogateescape``."""
    return data.decode("utf-8", "surrogateescape")


# --------------------------------------------------------------------------
# Quoting (client -> server) and tokenizing (server -> client)


def _check_word(word: bytes) -> None:
    if b"\0" in word or b"\r" in word or b"\n" in word:
        raise ValueError(f"a word cannot hold NUL, CR or LF: {word!r}")


def _looks_like_mark(word: bytes) -> bool:
    return len(word) > 2 and word[:1] == b"{" and word[-1:] == b"}" and word[1:-1].isdigit()


_NEEDS_QUOTES = re.compile(rb'[\x00-\x20"\\\x7f]')


def needs_quotes(word: bytes) -> bool:
    """True when ``word`` must be quoted to read back as itself (the server's rule)."""
    return not word or _looks_like_mark(word) or _NEEDS_QUOTES.search(word) is not None


@functools.lru_cache(maxsize=4096)
def quote(word: Text) -> bytes:
    """``word`` always quoted, with ``"`` and ``\\`` escaped. A quoted word is always
    positional, never an option, a flag or a literal mark."""
    b = to_bytes(word)
    _check_word(b)
    return b'"' + b.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def encode_word(word: Text) -> bytes:
    """``word`` bare when that reads back as itself, quoted otherwise."""
    b = to_bytes(word)
    _check_word(b)
    if needs_quotes(b):
        return b'"' + b.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return b


# One word: a quoted word, or a bare word (that may end in an option's quoted value).
# A closing quote must be followed by a blank or the end of the line.
_WORD = re.compile(
    rb'[ \t]*(?:"((?:[^"\\]|\\["\\])*)"(?=[ \t]|$)'
    rb'|([^ \t"]+)(?:"((?:[^"\\]|\\["\\])*)"(?=[ \t]|$))?)'
)
_ESCAPE = re.compile(rb'\\(["\\])')


def tokenize(line: bytes) -> List[bytes]:
    """Split a line into words on blanks, undoing quotes (``"a b"``, ``""``) and the
    ``\\"`` and ``\\\\`` escapes, including in an option's quoted value
    (``h.note="a b"`` is the word ``h.note=a b``). Raises ``ValueError`` on a
    malformed line (unbalanced quote, unknown escape, a closing quote not
    followed by a blank, a stray quote)."""
    if b'"' not in line:
        # Fast path: no quotes. Bare words never hold control bytes (the
        # server quotes them), so split() on ASCII whitespace is exact.
        return line.split()
    words = line.split()
    if all(w == b'""' for w in words if b'"' in w):
        # Common path: the only quoted words are empty ones (the default exchange "").
        return [b"" if w == b'""' else w for w in words]
    out: List[bytes] = []
    pos, end = 0, len(line.rstrip(b" \t"))
    match = _WORD.match
    while pos < end:
        m = match(line, pos)
        if m is None:
            raise ValueError(f"malformed words (a stray or unbalanced quote, or a bad escape) in {line!r}")
        quoted, bare, value = m.group(1, 2, 3)
        if quoted is not None:
            out.append(_ESCAPE.sub(rb"\1", quoted) if b"\\" in quoted else quoted)
        elif value is not None:
            # A quote inside a bare word is allowed only as an option's value.
            if not _is_opt_prefix(bare):
                raise ValueError(f"stray quote in {line!r}")
            out.append(bare + (_ESCAPE.sub(rb"\1", value) if b"\\" in value else value))
        else:
            out.append(bare)
        pos = m.end()
    return out


def _is_opt_prefix(word: bytes) -> bool:
    if len(word) < 2 or word[-1:] != b"=":
        return False
    name = word[:-1]
    return (
        name[:1].isalpha()
        and name[:1].isascii()
        and re.fullmatch(rb"[A-Za-z0-9._-]*", name[1:]) is not None
    )


# --------------------------------------------------------------------------
# Framing


def literal_count(line: bytes) -> Optional[int]:
    """N when ``line`` ends in a literal mark ``{N}`` (after blanks; the ``{`` at the
    start or after a blank), else ``None``: ``LITERAL_MARK`` without a regex search."""
    stripped = line.rstrip(b" \t")
    if not stripped.endswith(b"}"):
        return None
    i = stripped.rfind(b"{")
    digits = stripped[i + 1:-1]
    if i < 0 or not digits or not digits.isdigit() or (i > 0 and stripped[i - 1] not in (0x20, 0x09)):
        return None
    return int(digits)


class FrameReader:
    """Cuts a byte stream from the server into frames: ``(line, body)``.

    ``line`` is the line without its end of line; ``body`` the bytes of the
    literal it announced (``{N}``), or ``None``. Feed it whatever arrives;
    :meth:`next_frame` returns ``None`` until a whole frame is buffered.
    """

    __slots__ = ("_buf", "_pos")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0

    def feed(self, data: bytes) -> None:
        if self._pos and self._pos == len(self._buf):
            self._buf.clear()
            self._pos = 0
        self._buf += data

    @property
    def buffered(self) -> int:
        return len(self._buf) - self._pos

    def next_frame(self) -> Optional[Tuple[bytes, Optional[bytes]]]:
        buf = self._buf
        pos = self._pos
        nl = buf.find(b"\n", pos)
        if nl < 0:
            return None
        end = nl - 1 if nl > pos and buf[nl - 1] == 0x0D else nl
        line = bytes(buf[pos:end])
        body: Optional[bytes] = None
        after = nl + 1
        count = literal_count(line)
        if count is not None:
            if count > _U64_MAX:
                raise ProtocolError(f"literal count too large in {line[:80]!r}")
            stop = after + count
            if len(buf) < stop + 1:
                return None
            if buf[stop] == 0x0A:
                eol = stop + 1
            elif buf[stop] == 0x0D:
                if len(buf) < stop + 2:
                    return None
                if buf[stop + 1] != 0x0A:
                    raise ProtocolError("no end of line after a literal")
                eol = stop + 2
            else:
                raise ProtocolError("no end of line after a literal")
            body = bytes(buf[after:stop])
            after = eol
        self._pos = after
        if after > 1 << 16 and after * 2 > len(buf):
            del buf[:after]
            self._pos = 0
        return line, body


# --------------------------------------------------------------------------
# Results


@dataclass
class Confirm:
    """A publish confirm (``OK <id> routed=<n> [rejected=<k>] [duplicate]``).

    ``routed`` counts the queues that took the message (0: it was dropped);
    ``rejected`` those that refused it, full with ``overflow=reject-publish``;
    ``duplicate`` says a ``dedup-window=`` queue already had this ``id``.
    """

    id: str
    routed: int
    rejected: int = 0
    duplicate: bool = False


@dataclass
class QueueInfo:
    """``DECLARE QUEUE``'s reply: the name (the generated one for ``""``), the waiting
    messages (a stream: those kept), the subscriptions, and a partitioned stream's
    partition count."""

    name: str
    messages: int
    consumers: int
    partitions: Optional[int] = None


@dataclass
class RedriveResult:
    """``REDRIVE``'s reply: messages moved back, and kept in place."""

    moved: int
    kept: int


@dataclass
class Delivery:
    """A message as the server pushed it (``MSG``): the data, without the means to settle it.

    ``routing_key``, ``group`` and header values are ``str`` decoded with
    ``surrogateescape`` (see the module docs); ``routing_key_bytes`` gives
    the exact bytes. ``offset`` and ``partition`` are set for stream
    deliveries. ``extra`` keeps ``name=value`` words this client does not
    know (newer servers may add some).
    """

    consumer_tag: str
    delivery_tag: int
    exchange: str
    routing_key: str
    body: bytes
    redelivered: bool = False
    deliveries: int = 0
    id: str = ""
    headers: Dict[str, str] = field(default_factory=dict)
    group: Optional[str] = None
    offset: Optional[int] = None
    partition: Optional[int] = None
    extra: Dict[str, str] = field(default_factory=dict)

    @property
    def routing_key_bytes(self) -> bytes:
        return to_bytes(self.routing_key)

    @property
    def position(self) -> int:
        """For a :meth:`peek` line: the message's position in its queue (``from=``)."""
        return self.delivery_tag

    def text(self, encoding: str = "utf-8") -> str:
        """The body decoded (``errors="replace"``)."""
        return self.body.decode(encoding, "replace")


def parse_delivery(words: Sequence[bytes], body: Optional[bytes]) -> Dict[str, Any]:
    """The fields of ``MSG <ctag> <dtag> <exchange> <key> [redelivered] deliveries=<n>
    id=<id> [group=<g>] [offset=<n>] [partition=<i>] [h.<name>=<value>...] {N}`` as
    keyword arguments for :class:`Delivery` (or a subclass). Unknown words are kept
    in ``extra``, unknown flags ignored."""
    if len(words) < 6 or words[0] != b"MSG":
        raise ProtocolError(f"malformed MSG line: {b' '.join(words)[:200]!r}")
    try:
        dtag = int(words[2])
    except ValueError:
        raise ProtocolError(f"MSG delivery tag is not a number: {words[2]!r}") from None
    kw: Dict[str, Any] = {
        "consumer_tag": to_text(words[1]),
        "delivery_tag": dtag,
        "exchange": to_text(words[3]),
        "routing_key": to_text(words[4]),
        "body": body if body is not None else b"",
    }
    headers: Dict[str, str] = {}
    extra: Dict[str, str] = {}
    # The last word is the literal mark {N}; it was read already.
    for w in words[5:-1] if body is not None else words[5:]:
        eq = w.find(b"=")
        if eq < 0:
            if w == b"redelivered":
                kw["redelivered"] = True
            continue
        name, value = w[:eq], w[eq + 1 :]
        if name.startswith(b"h."):
            headers[to_text(name[2:])] = to_text(value)
        elif name == b"deliveries":
            kw["deliveries"] = int(value)
        elif name == b"id":
            kw["id"] = to_text(value)
        elif name == b"group":
            kw["group"] = to_text(value)
        elif name == b"offset":
            kw["offset"] = int(value)
        elif name == b"partition":
            kw["partition"] = int(value)
        else:
            extra[to_text(name)] = to_text(value)
    kw["headers"] = headers
    kw["extra"] = extra
    return kw


def split_reply(line: bytes) -> Tuple[bool, List[bytes]]:
    """``OK ...`` -> (True, words after OK); ``ERR ...`` -> (False, [code, text])."""
    if line.startswith(b"OK"):
        if len(line) == 2 or line[2] in (0x20, 0x09):
            try:
                return True, tokenize(line[3:])
            except ValueError as e:
                raise ProtocolError(str(e)) from None
    if line.startswith(b"ERR ") or line == b"ERR":
        rest = line[4:].lstrip(b" \t")
        sp = rest.find(b" ")
        if sp < 0:
            return False, [rest, b""]
        return False, [rest[:sp], rest[sp + 1 :]]
    raise ProtocolError(f"not a reply: {line[:200]!r}")


def error_from_reply(code: bytes, text: bytes) -> ServerError:
    return error_for(code.decode("ascii", "replace"), text.decode("utf-8", "replace"))


def kv_words(words: Iterable[bytes]) -> Dict[str, str]:
    """``name=value`` words as a dict (others are ignored)."""
    out: Dict[str, str] = {}
    for w in words:
        eq = w.find(b"=")
        if eq > 0:
            out[to_text(w[:eq])] = to_text(w[eq + 1 :])
    return out


def parse_confirm(words: Sequence[bytes]) -> Confirm:
    """``OK <id> routed=<n> [rejected=<k>] [duplicate]``."""
    if not words:
        raise ProtocolError("PUB reply without an id")
    routed = rejected = 0
    duplicate = False
    for w in words[1:]:
        if w.startswith(b"routed="):
            routed = int(w[7:])
        elif w.startswith(b"rejected="):
            rejected = int(w[9:])
        elif w == b"duplicate":
            duplicate = True
    return Confirm(to_text(words[0]), routed, rejected, duplicate)


def parse_queue_info(words: Sequence[bytes]) -> QueueInfo:
    """``OK <name> messages=<n> consumers=<n> [partitions=<n>]``."""
    if not words:
        raise ProtocolError("DECLARE QUEUE reply without a name")
    kv = kv_words(words[1:])
    parts = kv.get("partitions")
    return QueueInfo(
        to_text(words[0]),
        int(kv.get("messages", "0")),
        int(kv.get("consumers", "0")),
        int(parts) if parts is not None else None,
    )


def parse_count(words: Sequence[bytes], name: str) -> int:
    """``OK <name>=<n>`` (``messages=``) -> n."""
    kv = kv_words(words)
    if name not in kv:
        raise ProtocolError(f"reply without {name}=: {words!r}")
    return int(kv[name])


def parse_redrive(words: Sequence[bytes]) -> RedriveResult:
    kv = kv_words(words)
    return RedriveResult(int(kv.get("moved", "0")), int(kv.get("kept", "0")))


def parse_offsets(words: Sequence[bytes]) -> List[int]:
    """``OK offset=<n>[,<n>...]`` (``SEEK``) -> [n, ...]."""
    kv = kv_words(words)
    if "offset" not in kv:
        raise ProtocolError(f"SEEK reply without offset=: {words!r}")
    return [int(x) for x in kv["offset"].split(",")]


def parse_stats(body: Optional[bytes]) -> Dict[str, str]:
    """``STATS``' literal: ``key value`` lines -> dict (values as text)."""
    out: Dict[str, str] = {}
    for raw in (body or b"").splitlines():
        parts = raw.split(None, 1)
        if len(parts) == 2:
            out[to_text(parts[0])] = to_text(parts[1].strip())
    return out


# --------------------------------------------------------------------------
# Commands


OptionValue = Union[None, bool, int, float, str, bytes, Sequence[Union[int, float]]]


def ms(seconds: Union[int, float]) -> int:
    """Seconds (the Python API's unit) as the protocol's milliseconds."""
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative: {seconds}")
    return int(round(seconds * 1000))


def unix_ms(when: Union[int, float, _dt.datetime]) -> int:
    """A point in time as Unix milliseconds: a ``datetime`` (naive is local time),
    or Unix seconds (``time.time()``)."""
    # Rounded down: "at or after" a time then includes what was published in its millisecond.
    if isinstance(when, _dt.datetime):
        return math.floor(when.timestamp() * 1000)
    return math.floor(when * 1000)


def option(name: str, value: OptionValue) -> bytes:
    """One ``name=value`` word (``b""`` for ``None``; a bare flag for ``True``)."""
    if value is None or value is False:
        return b""
    if value is True:
        return b" " + name.encode("ascii")
    if isinstance(value, (list, tuple)):
        text: Text = ",".join(str(v) for v in value)
    elif isinstance(value, (int, float)):
        text = str(value)
    else:
        text = value  # type: ignore[assignment]
    return b" " + name.encode("ascii") + b"=" + encode_word(text)


def command(verb: str, *positionals: Text, options: Sequence[Tuple[str, OptionValue]] = (),
            body: Optional[bytes] = None) -> bytes:
    """A command: the verb, each positional quoted, the options, then the body as a
    ``{N}`` literal (binary-safe), each line ended by CRLF."""
    parts = [verb.encode("ascii")]
    for p in positionals:
        parts.append(quote(p))
    line = b" ".join(parts) + b"".join(option(k, v) for k, v in options)
    if body is None:
        return line + b"\r\n"
    return line + b" {%d}\r\n" % len(body) + body + b"\r\n"


def body_bytes(body: Body) -> bytes:
    if isinstance(body, str):
        return body.encode("utf-8")
    return bytes(body)


def pub_command(
    exchange: Text,
    routing_key: Text,
    body: Body,
    *,
    persistent: Optional[bool] = None,
    mandatory: bool = False,
    id: Optional[Text] = None,
    ttl: Optional[float] = None,
    delay: Optional[float] = None,
    priority: Optional[int] = None,
    group: Optional[Text] = None,
    headers: Optional[Mapping[str, Text]] = None,
) -> bytes:
    """``PUB <exchange> <key> [options] {N}`` + body. Durations in seconds."""
    data = body_bytes(body)
    line = b"PUB " + quote(exchange) + b" " + quote(routing_key)
    if persistent is not None:
        line += b" persistent" if persistent else b" transient"
    if mandatory:
        line += b" mandatory"
    if id is not None:
        line += b" id=" + encode_word(id)
    if ttl is not None:
        line += b" ttl=%d" % ms(ttl)
    if delay is not None:
        line += b" delay=%d" % ms(delay)
    if priority is not None:
        line += b" priority=%d" % priority
    if group is not None:
        line += b" group=" + encode_word(group)
    if headers:
        for name, value in headers.items():
            line += b" h." + to_bytes(name) + b"=" + encode_word(value)
    return line + b" {%d}\r\n" % len(data) + data + b"\r\n"


def declare_queue_options(
    *,
    durable: bool = False,
    exclusive: bool = False,
    auto_delete: bool = False,
    type: Optional[str] = None,
    max_length: Optional[int] = None,
    max_bytes: Optional[int] = None,
    overflow: Optional[str] = None,
    ttl: Optional[float] = None,
    expires: Optional[float] = None,
    dead_letter: Optional[Text] = None,
    dead_letter_key: Optional[Text] = None,
    delivery_limit: Optional[int] = None,
    ack_timeout: Optional[float] = None,
    max_priority: Optional[int] = None,
    dedup_window: Optional[float] = None,
    retry_delays: Optional[Sequence[float]] = None,
    single_active: bool = False,
    groups: bool = False,
    replicas: Optional[int] = None,
    max_age: Optional[float] = None,
    partitions: Optional[int] = None,
) -> List[Tuple[str, OptionValue]]:
    """``DECLARE QUEUE`` options from keyword arguments (durations in seconds)."""

    def dur(x: Optional[float]) -> Optional[int]:
        return None if x is None else ms(x)

    return [
        ("type", type),
        ("durable", durable),
        ("exclusive", exclusive),
        ("auto-delete", auto_delete),
        ("max-length", max_length),
        ("max-bytes", max_bytes),
        ("overflow", overflow),
        ("ttl", dur(ttl)),
        ("expires", dur(expires)),
        ("dead-letter", dead_letter),
        ("dead-letter-key", dead_letter_key),
        ("delivery-limit", delivery_limit),
        ("ack-timeout", dur(ack_timeout)),
        ("max-priority", max_priority),
        ("dedup-window", dur(dedup_window)),
        ("retry-delays", None if retry_delays is None else [ms(d) for d in retry_delays]),
        ("single-active", single_active),
        ("groups", groups),
        ("replicas", replicas),
        ("max-age", dur(max_age)),
        ("partitions", partitions),
    ]


Offset = Union[str, int]


def offset_option(offset: Optional[Offset], time: Any) -> List[Tuple[str, OptionValue]]:
    """``offset=first|last|next|<n>`` or ``time=<unix-ms>`` (``SUB``, ``SEEK``)."""
    if offset is not None and time is not None:
        raise ValueError("give offset= or time=, not both")
    if time is not None:
        return [("time", unix_ms(time))]
    if offset is not None:
        if isinstance(offset, bool) or not isinstance(offset, (int, str)):
            raise TypeError("offset: 'first', 'last', 'next' or an int")
        return [("offset", offset)]
    return []


#: The largest ``SUB prefetch-bytes=`` the broker takes (1 GiB).
PREFETCH_BYTES_MAX = 1 << 30


def check_prefetch_bytes(n: Optional[int]) -> Optional[int]:
    """``prefetch_bytes`` as ``SUB prefetch-bytes=`` takes it: ``None`` or an int
    in ``1..PREFETCH_BYTES_MAX`` (``TypeError``/``ValueError`` before anything is sent)."""
    if n is None:
        return None
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"prefetch_bytes: expected an int, got {n!r}")
    if not 1 <= n <= PREFETCH_BYTES_MAX:
        raise ValueError(f"prefetch_bytes: must be between 1 and {PREFETCH_BYTES_MAX}, got {n}")
    return n


def sub_command(queue: Text, tag: str, *, prefetch: Optional[int], auto_ack: bool,
                exclusive: bool, offset: Optional[Offset], time: Any,
                group: Optional[Text], prefetch_bytes: Optional[int] = None) -> bytes:
    opts: List[Tuple[str, OptionValue]] = [
        ("tag", tag),
        ("prefetch", prefetch),
        ("prefetch-bytes", check_prefetch_bytes(prefetch_bytes)),
        ("ack", "auto" if auto_ack else None),
        ("exclusive", exclusive),
        ("group", group),
    ]
    opts += offset_option(offset, time)
    return command("SUB", queue, options=opts)


def hello_command(name: Optional[str], heartbeat: Optional[float]) -> bytes:
    opts: List[Tuple[str, OptionValue]] = [("name", name), ("proto", 1)]
    if heartbeat:
        opts.append(("heartbeat", ms(heartbeat)))
    return command("HELLO", options=opts)


def parse_address(address: Union[str, Tuple[str, int]], default_port: int = 5680) -> Tuple[str, int]:
    """``"host:port"``, ``"[::1]:5680"``, ``"host"`` or ``(host, port)`` -> (host, port)."""
    if isinstance(address, tuple):
        return address[0], int(address[1])
    a = address.strip()
    if a.startswith("["):
        host, _, rest = a[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    if a.count(":") == 1:
        host, port = a.split(":")
        return host, int(port)
    return a, default_port
