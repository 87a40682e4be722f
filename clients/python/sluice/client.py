"""The blocking client: :class:`Client`, :class:`Subscription`, :class:`Message`.

One reader thread per client reads every frame the server sends and
hands it on: ``OK``/``ERR`` replies to the commands waiting for them, in
order (protocol.md, section 4); ``MSG -`` lines to the oldest ``GET``
waiting, ``MSG *`` to the oldest ``PEEK``, other ``MSG`` lines to their
subscription's buffer; ``NOTICE`` lines to the subscription they name (and
to ``on_notice``). So pushes that arrive between a command and its reply
are never lost. Any number of threads may call the client at once.

When the connection breaks, the commands waiting for a reply fail with
:class:`~sluice.errors.ConnectionLostError`, and the reader thread
connects again with back-off, trying the next address of the list, logs
in, and subscribes again every subscription that was open (same tag and
options). Deliveries the old connection held are the broker's again: it
delivers them anew, flagged ``redelivered``; settling an old one raises
:class:`~sluice.errors.DeliveryLostError`. Commands issued while
reconnecting wait for the new connection.
"""

from __future__ import annotations

import collections
import itertools
import logging
import random
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import (
    Any,
    Callable,
    Deque,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
)

from . import _protocol as P
from ._protocol import Body, Confirm, Delivery, Offset, QueueInfo, RedriveResult, Text
from ._transport import PlainTransport, TLSTransport
from .errors import (
    BatchPublishError,
    ClientClosedError,
    ConnectionLostError,
    DeliveryLostError,
    ForbiddenError,
    NoAuthError,
    ProtocolError,
    SluiceConnectionError,
    SluiceError,
    SluiceTimeoutError,
)

__all__ = ["Client", "Subscription", "Message", "Pipeline"]

log = logging.getLogger("sluice")

Address = Union[str, Tuple[str, int]]

_CONNECTING, _OPEN, _CLOSED, _FAILED = "connecting", "open", "closed", "failed"
_REPLY, _MSG, _PEEKED, _NOTICE = range(4)
_FLUSH_AT = 1 << 16  # queued bytes written at once past this

_tags = itertools.count(1)


def _addresses(addresses: Union[Address, Sequence[Address]]) -> List[Tuple[str, int]]:
    if isinstance(addresses, str):
        out = [P.parse_address(a) for a in addresses.split(",") if a.strip()]
    elif isinstance(addresses, tuple) and len(addresses) == 2 and isinstance(addresses[1], int):
        out = [P.parse_address(addresses)]
    else:
        out = [P.parse_address(a) for a in addresses]
    if not out:
        raise ValueError("no address given")
    return out


def make_ssl_context(tls: Union[bool, ssl.SSLContext, None], ca_file: Optional[str]) -> Optional[ssl.SSLContext]:
    """The TLS context for ``tls=``/``ca_file=``: the system's trust store, or ``ca_file``."""
    if isinstance(tls, ssl.SSLContext):
        return tls
    if not tls and ca_file is None:
        return None
    ctx = ssl.create_default_context(cafile=ca_file)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


class _Pending:
    """A command waiting for its reply."""

    __slots__ = ("verb", "gen", "done", "line", "body", "error", "msgs", "callback")

    def __init__(self, verb: str, gen: int, callback: Optional[Callable[["_Pending"], None]] = None) -> None:
        self.verb = verb
        self.gen = gen
        self.done = False
        self.line = b""
        self.body: Optional[bytes] = None
        self.error: Optional[SluiceError] = None
        self.msgs: Optional[List[Any]] = [] if verb in ("GET", "PEEK") else None
        self.callback = callback

    def result(self) -> Tuple[List[bytes], Optional[bytes]]:
        """The words after ``OK`` and the literal; raises the ``ERR``'s typed error."""
        if self.error is not None:
            raise self.error
        ok, words = P.split_reply(self.line)
        if not ok:
            raise P.error_from_reply(words[0], words[1])
        if self.body is not None and words:
            words = words[:-1]  # the {N} mark of the literal
        return words, self.body


@dataclass
class Message(Delivery):
    """A delivery (from :meth:`Client.subscribe` or :meth:`Client.get`) that can be settled.

    Settle it once: :meth:`ack` (done), :meth:`nack` (give it back, or
    dead-letter it with ``requeue=False``) or :meth:`reject`. A message of
    an ``auto_ack`` subscription or get needs none (the methods do nothing).
    """

    _client: Optional["Client"] = field(default=None, repr=False, compare=False)
    _gen: int = field(default=0, repr=False, compare=False)
    _auto: bool = field(default=False, repr=False, compare=False)

    def ack(self, multiple: bool = False, wait: bool = True) -> None:
        """``ACK``: the message is done with (removed; on a stream, the group's position
        moves). ``multiple``: every outstanding delivery of this connection up to this
        one. ``wait=False`` does not wait for the ``OK`` (an error is only logged)."""
        if self._auto or self._client is None:
            return
        self._client._settle(self, b"ACK %d%s\r\n" % (self.delivery_tag, b" multiple" if multiple else b""), wait)

    def nack(self, requeue: bool = True, delay: Optional[float] = None, multiple: bool = False,
             wait: bool = True) -> None:
        """``NACK``: back to its queue at its position, flagged ``redelivered`` (after
        ``delay`` seconds, if given); with ``requeue=False``, dead-lettered or dropped."""
        if self._auto or self._client is None:
            return
        line = b"NACK %d" % self.delivery_tag
        if multiple:
            line += b" multiple"
        if not requeue:
            line += b" requeue=false"
        if delay is not None:
            line += b" delay=%d" % P.ms(delay)
        self._client._settle(self, line + b"\r\n", wait)

    def reject(self, wait: bool = True) -> None:
        """``REJECT``: dead-lettered (reason ``rejected``), or dropped without ``dead-letter=``."""
        if self._auto or self._client is None:
            return
        self._client._settle(self, b"REJECT %d\r\n" % self.delivery_tag, wait)

    def touch(self) -> None:
        """``TOUCH``: restart the delivery's ``ack-timeout=``."""
        if self._auto or self._client is None:
            return
        self._client._settle(self, b"TOUCH %d\r\n" % self.delivery_tag, True)


class Subscription:
    """A subscription (``SUB``): iterate it for :class:`Message` objects.

    ``for msg in sub`` blocks for the next delivery and ends when the
    subscription ends (:meth:`cancel`, the client closed, or its queue was
    deleted: ``cancel_reason`` then says ``queue-deleted``). If subscribing
    again after a reconnect failed, iterating raises that error.
    """

    def __init__(self, client: "Client", queue: Text, tag: str, prefetch: Optional[int], auto_ack: bool,
                 exclusive: bool, offset: Optional[Offset], time_: Any, group: Optional[Text],
                 prefetch_bytes: Optional[int] = None) -> None:
        self._client = client
        self.queue = P.to_text(P.to_bytes(queue))
        self.tag = tag
        self.prefetch = prefetch
        #: The ``SUB prefetch-bytes=`` budget; kept, like ``prefetch``, for the SUB after a reconnect.
        self.prefetch_bytes = prefetch_bytes
        self.auto_ack = auto_ack
        self.exclusive = exclusive
        self.group = group
        self._offset = offset
        self._time = time_
        self._last_offset: Optional[int] = None
        self._partitioned = False
        self._buf: Deque[Message] = collections.deque()
        self._cv = threading.Condition(client._lock)
        self._state = "open"  # open | cancelled | closed | failed
        self._error: Optional[BaseException] = None
        #: Why the server ended it (``queue-deleted``, ...), if it did.
        self.cancel_reason: Optional[str] = None
        #: For a single-active queue or a stream group: whether this one receives now.
        self.active: Optional[bool] = None

    def _command(self) -> bytes:
        offset, when = self._offset, self._time
        if self._last_offset is not None and self.group is None and not self._partitioned:
            # A plain stream reader goes on after what it has seen, not from its start.
            offset, when = self._last_offset + 1, None
        return P.sub_command(self.queue, self.tag, prefetch=self.prefetch, auto_ack=self.auto_ack,
                             exclusive=self.exclusive, offset=offset, time=when, group=self.group,
                             prefetch_bytes=self.prefetch_bytes)

    # -- called with the client's lock held
    def _push(self, m: Message) -> None:
        self._buf.append(m)
        self._cv.notify()

    def _end(self, state: str, error: Optional[BaseException] = None) -> None:
        if self._state == "open":
            self._state = state
            self._error = error
        self._cv.notify_all()

    # -- public
    @property
    def closed(self) -> bool:
        """True once the subscription has ended (nothing more will arrive)."""
        return self._state != "open"

    @property
    def buffered(self) -> int:
        """Deliveries received and not yet taken from this subscription."""
        with self._client._lock:
            return len(self._buf)

    def next(self, timeout: Optional[float] = None) -> Optional[Message]:
        """The next delivery; ``None`` after ``timeout`` seconds without one, or once the
        subscription has ended and its buffer is empty (see :attr:`closed`). Raises the
        error that ended it, if one did."""
        deadline = None if timeout is None else time.monotonic() + timeout
        client = self._client
        if not self._buf and client._outbuf:
            client._flush()  # acks queued by ack(wait=False) go out before we wait
        with client._lock:
            while not self._buf:
                if self._state != "open":
                    if self._error is not None:
                        raise self._error
                    return None
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cv.wait(remaining)
            m = self._buf.popleft()
            if m.offset is not None:
                if m.partition is not None:
                    self._partitioned = True
                if self._last_offset is None or m.offset > self._last_offset:
                    self._last_offset = m.offset
            return m

    def __iter__(self) -> Iterator[Message]:
        return self

    def __next__(self) -> Message:
        m = self.next()
        if m is None:
            raise StopIteration
        return m

    def cancel(self) -> None:
        """``UNSUB``, and give back (``NACK``) the deliveries received but not taken."""
        self._client._unsubscribe(self)

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self.cancel()
        except SluiceError:
            pass


class Pipeline:
    """Publishes with up to ``window`` confirms outstanding (see :meth:`Client.pipeline`).

    :meth:`publish` sends at once and blocks only when ``window`` publishes
    are unconfirmed. :meth:`wait` waits for all and returns the results in
    order: a :class:`Confirm`, or the exception of a publish that failed.
    """

    def __init__(self, client: "Client", window: int) -> None:
        if window < 1:
            raise ValueError("window must be at least 1")
        self._client = client
        self.window = window
        self._unsent: List[bytes] = []
        self._inflight: Deque[_Pending] = collections.deque()
        self.results: List[Union[Confirm, SluiceError]] = []
        self._batch = max(1, min(64, window // 4))

    def publish(self, exchange: Text, routing_key: Text, body: Body, **options: Any) -> None:
        self._unsent.append(P.pub_command(exchange, routing_key, body, **options))
        if len(self._inflight) + len(self._unsent) >= self.window:
            self.flush()
            self._collect(len(self._inflight) - self.window + 1)
        elif len(self._unsent) >= self._batch:
            self.flush()

    def flush(self) -> None:
        """Send what is buffered (publishes go out in batches of a few dozen)."""
        if self._unsent:
            items = [("PUB", d) for d in self._unsent]
            self._unsent = []
            self._inflight.extend(self._client._send_batch(items))

    def _collect(self, at_least: int) -> None:
        c = self._client
        for _ in range(max(0, at_least)):
            p = self._inflight.popleft()
            c._wait(p, None)
            self._record(p)
        # Take whatever else is already answered, without waiting.
        while self._inflight and self._inflight[0].done:
            self._record(self._inflight.popleft())

    def _record(self, p: _Pending) -> None:
        try:
            words, _ = p.result()
            self.results.append(P.parse_confirm(words))
        except SluiceError as e:
            self.results.append(e)

    def wait(self) -> List[Union[Confirm, SluiceError]]:
        """Send the rest, wait for every confirm; the results in publish order."""
        self.flush()
        self._collect(len(self._inflight))
        return self.results

    def __enter__(self) -> "Pipeline":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.wait()


class Client:
    """A blocking connection to a sluice broker (thread-safe).

    ``addresses``: ``"host:port"``, a comma-separated list, or a list of
    them (a cluster's nodes); the client connects to the first that
    answers, and after a lost connection to the next one.

    ``tls=True`` speaks TLS (to the server's ``--tls-addr`` port), trusting
    ``ca_file`` (PEM) or the system's store; ``tls`` may also be an
    ``ssl.SSLContext``. ``user``/``password`` log in (``AUTH``) on every
    connection. ``heartbeat`` (seconds) asks the server for heartbeats:
    the client sends an empty line when it has sent nothing for half of it,
    and takes the connection for dead after two intervals of silence.

    ``timeout`` bounds every wait for a reply (and for a connection while
    reconnecting); ``None`` waits as long as it takes. ``reconnect=False``
    turns reconnecting off; ``reconnect_timeout`` gives up (the client then
    fails every call) after that many seconds without a connection.
    Durations are in seconds throughout the API.
    """

    def __init__(
        self,
        addresses: Union[Address, Sequence[Address]] = "127.0.0.1:5680",
        *,
        user: Optional[str] = None,
        password: Optional[str] = None,
        tls: Union[bool, ssl.SSLContext] = False,
        ca_file: Optional[str] = None,
        server_hostname: Optional[str] = None,
        name: Optional[str] = "sluice-python",
        heartbeat: Optional[float] = None,
        connect_timeout: float = 10.0,
        timeout: Optional[float] = None,
        reconnect: bool = True,
        reconnect_delay: float = 0.1,
        reconnect_max_delay: float = 5.0,
        reconnect_timeout: Optional[float] = None,
        on_notice: Optional[Callable[[str], None]] = None,
    ) -> None:
        self.addresses = _addresses(addresses)
        self.user = user
        self._password = password
        self._ssl = make_ssl_context(tls, ca_file)
        self._server_hostname = server_hostname
        self.name = name
        self.heartbeat = heartbeat
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self._reconnect_enabled = reconnect
        self.reconnect_delay = reconnect_delay
        self.reconnect_max_delay = reconnect_max_delay
        self.reconnect_timeout = reconnect_timeout
        self.on_notice = on_notice

        self._lock = threading.Lock()
        self._cv = threading.Condition(self._lock)
        self._wlock = threading.Lock()
        self._state = _CONNECTING
        self._closing = False
        self._failure: Optional[SluiceError] = None
        self._gen = 0
        self._pending: Deque[_Pending] = collections.deque()
        self._subs: Dict[str, Subscription] = {}
        self._outbuf: List[bytes] = []  # queued commands (their _Pending registered already)
        self._outsize = 0
        self._wake = threading.Event()
        self._closed_event = threading.Event()
        self._last_send = time.monotonic()
        #: The server's greeting (``HELLO sluice <version> proto=1``).
        self.greeting = ""
        #: The address connected to now.
        self.address: Tuple[str, int] = self.addresses[0]
        #: How many times the client has connected again after a lost connection.
        self.reconnects = 0

        last: Optional[BaseException] = None
        for i, addr in enumerate(self.addresses):
            try:
                transport, frames = self._open(addr)
            except (NoAuthError, ForbiddenError):
                raise
            except (OSError, SluiceError) as e:
                last = e
                continue
            self._transport: Any = transport
            self._frames = frames
            self._addr_index = i
            self.address = addr
            self._state = _OPEN
            break
        else:
            raise SluiceConnectionError(
                f"could not connect to {', '.join('%s:%d' % a for a in self.addresses)}: {last}")
        self._reader = threading.Thread(target=self._reader_main, name="sluice-reader", daemon=True)
        self._keeper = threading.Thread(target=self._keeper_main, name="sluice-keeper", daemon=True)
        self._reader.start()
        self._keeper.start()

    # ------------------------------------------------------------------
    # connecting

    def _open(self, addr: Tuple[str, int]) -> Tuple[Any, P.FrameReader]:
        """Connect, read the greeting, HELLO (and AUTH): a ready connection."""
        if self._ssl is not None:
            transport: Any = TLSTransport.open(addr, self.connect_timeout, self._ssl,
                                               self._server_hostname or addr[0])
        else:
            transport = PlainTransport.open(addr, self.connect_timeout)
        try:
            transport.settimeout(self.connect_timeout)
            frames = P.FrameReader()

            def frame() -> Tuple[bytes, Optional[bytes]]:
                while True:
                    f = frames.next_frame()
                    if f is not None:
                        if f[0].startswith(b"NOTICE"):
                            continue
                        return f
                    data = transport.recv()
                    if not data:
                        raise ConnectionResetError("the server closed the connection")
                    frames.feed(data)

            greeting, _ = frame()
            if greeting.startswith(b"ERR"):
                _, w = P.split_reply(greeting)
                raise P.error_from_reply(w[0], w[1])
            if not greeting.startswith(b"HELLO sluice") or b"proto=1" not in greeting.split():
                raise ProtocolError(f"unexpected greeting {greeting[:200]!r}")
            self.greeting = greeting.decode("utf-8", "replace")
            out = P.hello_command(self.name, self.heartbeat)
            expect = 1
            if self.user is not None:
                out += P.command("AUTH", self.user, self._password or "")
                expect += 1
            transport.send(out)
            for _ in range(expect):
                line, _ = frame()
                ok, w = P.split_reply(line)
                if not ok:
                    raise P.error_from_reply(w[0], w[1])
            transport.settimeout(2 * self.heartbeat + 1.0 if self.heartbeat else None)
            return transport, frames
        except BaseException:
            transport.close()
            raise

    def _reconnect(self) -> bool:
        """In the reader thread, after a loss: connect again (back-off, next address),
        subscribe again. False when the client is closed or gave up."""
        if not self._reconnect_enabled:
            self._fail(SluiceConnectionError(f"connection to {self._addr_text()} lost (reconnect=False)"))
            return False
        delay = self.reconnect_delay
        start = time.monotonic()
        idx = self._addr_index
        last: Optional[BaseException] = None
        while True:
            for _ in range(len(self.addresses)):
                if self._closing:
                    return False
                idx = (idx + 1) % len(self.addresses)
                addr = self.addresses[idx]
                try:
                    transport, frames = self._open(addr)
                except (NoAuthError, ForbiddenError) as e:
                    self._fail(e)
                    return False
                except (OSError, SluiceError) as e:
                    last = e
                    log.debug("sluice: reconnecting to %s:%d failed: %s", addr[0], addr[1], e)
                    continue
                self._install(transport, frames, idx, addr)
                return True
            if self.reconnect_timeout is not None and time.monotonic() - start >= self.reconnect_timeout:
                self._fail(SluiceConnectionError(
                    f"gave up reconnecting after {self.reconnect_timeout} s: {last}"))
                return False
            # Back-off with jitter; close() interrupts it.
            self._closed_event.wait(delay * (0.5 + random.random() / 2))
            if self._closing:
                return False
            delay = min(delay * 2, self.reconnect_max_delay)

    def _install(self, transport: Any, frames: P.FrameReader, idx: int, addr: Tuple[str, int]) -> None:
        with self._wlock:
            with self._lock:
                if self._closing:
                    transport.close()
                    return
                self._transport = transport
                self._frames = frames
                self._addr_index = idx
                self.address = addr
                self.reconnects += 1
                gen = self._gen
                out = []
                for sub in self._subs.values():
                    if sub._state != "open":
                        continue
                    self._pending.append(_Pending("SUB", gen, callback=self._resubscribed(sub)))
                    out.append(sub._command())
                self._state = _OPEN
                self._cv.notify_all()
            if out:
                try:
                    transport.send(b"".join(out))
                    self._last_send = time.monotonic()
                except OSError as e:
                    self._connection_lost(gen, e)
        log.info("sluice: connected again to %s:%d", addr[0], addr[1])

    def _resubscribed(self, sub: Subscription) -> Callable[[_Pending], None]:
        def done(p: _Pending) -> None:
            try:
                p.result()
            except SluiceError as e:
                if isinstance(e, ConnectionLostError):
                    return  # lost again: the next connection subscribes again
                log.warning("sluice: subscribing %s again failed: %s", sub.queue, e)
                with self._lock:
                    self._subs.pop(sub.tag, None)
                    sub._end("failed", e)
        return done

    def _fail(self, error: SluiceError) -> None:
        with self._lock:
            if self._state == _CLOSED:
                return
            self._state = _FAILED
            self._failure = error
            for sub in self._subs.values():
                sub._end("failed", error)
            self._cv.notify_all()

    def _addr_text(self) -> str:
        return "%s:%d" % self.address

    def _connection_lost(self, gen: int, exc: BaseException) -> None:
        with self._lock:
            if gen != self._gen or self._state != _OPEN:
                return
            self._gen += 1
            self._state = _CLOSED if self._closing else _CONNECTING
            if self._closing:
                err: SluiceError = ClientClosedError("the client is closed")
            else:
                err = ConnectionLostError(f"connection to {self._addr_text()} lost: {exc}")
                log.warning("sluice: %s", err)
                if not self._reconnect_enabled:
                    self._state = _FAILED
                    self._failure = SluiceConnectionError(
                        f"connection to {self._addr_text()} lost (reconnect=False): {exc}")
            pending = list(self._pending)
            self._pending.clear()
            self._outbuf.clear()
            self._outsize = 0
            for p in pending:
                p.error = err
                p.done = True
            for sub in self._subs.values():
                # Deliveries of the old connection cannot be settled any more;
                # the broker delivers them again.
                sub._buf.clear()
                if self._closing:
                    sub._end("closed")
                elif self._failure is not None:
                    sub._end("failed", self._failure)
            self._cv.notify_all()
            transport = self._transport
        transport.shutdown()
        for p in pending:
            if p.callback is not None:
                p.callback(p)

    # ------------------------------------------------------------------
    # the reader thread

    def _reader_main(self) -> None:
        while True:
            with self._lock:
                if self._state in (_CLOSED, _FAILED):
                    return
                gen, transport, frames = self._gen, self._transport, self._frames
            exc: BaseException
            try:
                self._read_loop(gen, transport, frames)
                exc = ConnectionResetError("closed by the server")
            except Exception as e:  # noqa: BLE001 - any failure ends this connection
                exc = e
                if isinstance(e, ProtocolError):
                    log.error("sluice: %s", e)
            self._connection_lost(gen, exc)
            transport.close()
            with self._lock:
                if self._state in (_CLOSED, _FAILED):
                    return
            if not self._reconnect():
                return

    def _read_loop(self, gen: int, transport: Any, frames: P.FrameReader) -> None:
        while True:
            data = transport.recv()
            if not data:
                return
            frames.feed(data)
            batch = []
            while True:
                f = frames.next_frame()
                if f is None:
                    break
                batch.append(f)
            if batch:
                self._dispatch(batch, gen)

    def _dispatch(self, batch: List[Tuple[bytes, Optional[bytes]]], gen: int) -> None:
        """Hand on every frame of one read, in order, under one hold of the lock."""
        # Parse outside the lock.
        work: List[Tuple[int, Any, Any]] = []
        for line, body in batch:
            if line.startswith(b"MSG "):
                try:
                    words = P.tokenize(line)
                except ValueError as e:
                    raise ProtocolError(str(e)) from None
                kw = P.parse_delivery(words, body)
                if words[1] == b"*":
                    work.append((_PEEKED, Delivery(**kw), None))
                else:
                    work.append((_MSG, Message(**kw, _client=self, _gen=gen), words[1]))
            elif line.startswith(b"OK") or line.startswith(b"ERR"):
                work.append((_REPLY, line, body))
            elif line.startswith(b"NOTICE"):
                work.append((_NOTICE, line, None))
            elif line.startswith(b"HELLO") or not line.strip():
                pass
            else:
                raise ProtocolError(f"unexpected line from the server: {line[:200]!r}")
        done: List[_Pending] = []
        notices: List[bytes] = []
        woken = set()
        replied = False
        with self._lock:
            if gen != self._gen:
                return
            pending = self._pending
            for kind, a, b in work:
                if kind == _REPLY:
                    if not pending:
                        raise ProtocolError(f"a reply with no command waiting: {a[:200]!r}")
                    p = pending.popleft()
                    p.line = a
                    p.body = b
                    p.done = True
                    replied = True
                    if p.callback is not None:
                        done.append(p)
                elif kind == _MSG:
                    if b == b"-":
                        # A GET's delivery: the oldest GET still waiting.
                        self._attach("GET", a)
                        continue
                    sub = self._subs.get(a.consumer_tag)
                    if sub is not None and sub._state == "open":
                        a._auto = sub.auto_ack
                        sub._buf.append(a)
                        woken.add(sub)
                    elif not (sub is not None and sub.auto_ack):
                        # For a subscription being cancelled (or unknown): give it back.
                        self._enqueue_locked([("NACK", b"NACK %d\r\n" % a.delivery_tag)], _log_error)
                elif kind == _PEEKED:
                    self._attach("PEEK", a)
                else:
                    notices.append(a)
            if replied:
                self._cv.notify_all()
            for sub in woken:
                sub._cv.notify_all()
        for p in done:
            p.callback(p)  # type: ignore[misc]
        for line in notices:
            self._on_notice(line, gen)

    def _attach(self, verb: str, d: Any) -> None:
        # called with the lock held
        for p in self._pending:
            if p.verb == verb:
                p.msgs.append(d)  # type: ignore[union-attr]
                return
        raise ProtocolError(f"MSG {'-' if verb == 'GET' else '*'} with no {verb} waiting")

    def _on_notice(self, line: bytes, gen: int) -> None:
        try:
            words = P.tokenize(line)
        except ValueError:
            words = line.split()
        kind = words[1] if len(words) > 1 else b""
        if kind == b"cancelled" and len(words) > 2:
            kv = P.kv_words(words[3:])
            reason = kv.get("reason", "")
            tag = P.to_text(words[2])
            with self._lock:
                sub = self._subs.get(tag)
                if sub is not None and gen == self._gen:
                    if reason == "leader-moved" and sub._state == "open":
                        # A cluster's queue got a new leader: subscribe again.
                        self._enqueue_locked([("SUB", sub._command())], self._resubscribed(sub))
                    else:
                        self._subs.pop(tag, None)
                        sub.cancel_reason = reason or "cancelled"
                        sub._end("cancelled")
        elif kind in (b"active", b"inactive") and len(words) > 2:
            with self._lock:
                sub = self._subs.get(P.to_text(words[2]))
                if sub is not None:
                    sub.active = kind == b"active"
        if self.on_notice is not None:
            try:
                self.on_notice(line.decode("utf-8", "replace")[7:])
            except Exception:  # noqa: BLE001 - a user callback must not kill the reader
                log.exception("sluice: on_notice raised")

    # ------------------------------------------------------------------
    # the keeper thread: writes what was queued, and heartbeats

    def _keeper_main(self) -> None:
        hb = self.heartbeat
        period = hb / 2 if hb else None
        while True:
            self._wake.wait(period)
            self._wake.clear()
            if self._closing:
                return
            with self._lock:
                if self._state in (_CLOSED, _FAILED):
                    return
            beat = bool(hb) and time.monotonic() - self._last_send >= hb / 2  # type: ignore[operator]
            if self._outbuf or beat:
                self._flush(b"\r\n" if beat else b"")

    # ------------------------------------------------------------------
    # sending and waiting
    #
    # Every write registers its commands in _pending and takes the bytes queued
    # before it in _outbuf, both under _lock, and writes under _wlock: so the
    # replies' order is the commands' order on the wire, whoever writes.

    def _enqueue_locked(self, items: Sequence[Tuple[str, bytes]],
                        callback: Optional[Callable[[_Pending], None]] = None) -> None:
        """Queue commands without waiting (with the lock held, the connection open):
        the next write, or the keeper thread, sends them."""
        gen = self._gen
        was_empty = not self._outbuf
        for verb, data in items:
            self._pending.append(_Pending(verb, gen, callback))
            self._outbuf.append(data)
            self._outsize += len(data)
        if was_empty:
            self._wake.set()

    def _flush(self, extra: bytes = b"") -> None:
        """Write what is queued (and ``extra``, which wants no reply)."""
        with self._wlock:
            with self._lock:
                if self._state != _OPEN:
                    return
                data = b"".join(self._outbuf) + extra
                self._outbuf.clear()
                self._outsize = 0
                transport, gen = self._transport, self._gen
            if data:
                try:
                    transport.send(data)
                    self._last_send = time.monotonic()
                except OSError as e:
                    self._connection_lost(gen, e)

    def _send_batch(self, items: Sequence[Tuple[str, bytes]], gen_required: Optional[int] = None,
                    timeout: Optional[float] = None, callback: Optional[Callable[[_Pending], None]] = None,
                    nowait: bool = False) -> List[_Pending]:
        """Register and send commands (in one write, after what is queued); wait for a
        connection first. ``nowait``: queue them instead (written soon, in order)."""
        timeout = self.timeout if timeout is None else timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                while True:
                    if gen_required is not None and gen_required != self._gen:
                        raise DeliveryLostError(
                            "this delivery's connection was lost; the broker delivers it again")
                    if self._state == _OPEN:
                        break
                    self._raise_if_down()
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise SluiceTimeoutError("no connection to the broker within the timeout")
                    self._cv.wait(remaining)
                if nowait:
                    self._enqueue_locked(items, callback)
                    if self._outsize <= _FLUSH_AT:
                        return []
                gen = self._gen
            if nowait:
                self._flush()
                return []
            with self._wlock:
                with self._lock:
                    if self._state != _OPEN or self._gen != gen:
                        continue
                    transport = self._transport
                    ps = [_Pending(verb, gen, callback) for verb, _ in items]
                    self._pending.extend(ps)
                    if self._outbuf:
                        data = b"".join(self._outbuf) + b"".join(d for _, d in items)
                        self._outbuf.clear()
                        self._outsize = 0
                    else:
                        data = items[0][1] if len(items) == 1 else b"".join(d for _, d in items)
                try:
                    transport.send(data)
                    self._last_send = time.monotonic()
                except OSError as e:
                    self._connection_lost(gen, e)
            return ps

    def _raise_if_down(self) -> None:
        if self._state == _CLOSED or self._closing:
            raise ClientClosedError("the client is closed")
        if self._state == _FAILED:
            assert self._failure is not None
            raise self._failure

    def _wait(self, p: _Pending, timeout: Optional[float]) -> None:
        if p.done:
            return
        timeout = self.timeout if timeout is None else timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while not p.done:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise SluiceTimeoutError(f"no reply to {p.verb} within {timeout} s")
                self._cv.wait(remaining)

    def _call(self, verb: str, data: bytes, timeout: Optional[float] = None,
              gen_required: Optional[int] = None) -> Tuple[List[bytes], Optional[bytes], _Pending]:
        p = self._send_batch([(verb, data)], gen_required, timeout)[0]
        self._wait(p, timeout)
        words, body = p.result()
        return words, body, p

    def _settle(self, m: Message, data: bytes, wait: bool) -> None:
        if not wait:
            self._send_batch([("ACK", data)], gen_required=m._gen, callback=_log_error, nowait=True)
            return
        try:
            self._call("ACK", data, gen_required=m._gen)
        except ConnectionLostError as e:
            if isinstance(e, DeliveryLostError):
                raise
            raise DeliveryLostError(
                f"the connection was lost before the reply ({e}); the broker delivers it again") from None

    # ------------------------------------------------------------------
    # the API

    @property
    def connected(self) -> bool:
        """True while a connection is up (False while reconnecting, closed or failed)."""
        return self._state == _OPEN

    def wait_connected(self, timeout: Optional[float] = None) -> bool:
        """Wait until a connection is up; False after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while self._state != _OPEN:
                self._raise_if_down()
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cv.wait(remaining)
        return True

    def ping(self) -> None:
        """``PING``: a round trip, and a barrier (every earlier command is answered)."""
        self._call("PING", b"PING\r\n")

    def publish(
        self,
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
    ) -> Confirm:
        """``PUB``: publish one message and wait for its confirm (after the fsync for a
        persistent message). ``exchange`` ``""`` is the default exchange (the routing key
        names the queue). ``body``: bytes (binary-safe) or str (UTF-8).

        ``mandatory=True`` raises :class:`~sluice.errors.NoRouteError` when no queue
        takes it; otherwise such a message is dropped and ``Confirm.routed`` is 0.
        ``ttl`` and ``delay`` are in seconds."""
        data = P.pub_command(exchange, routing_key, body, persistent=persistent, mandatory=mandatory, id=id,
                             ttl=ttl, delay=delay, priority=priority, group=group, headers=headers)
        words, _, _ = self._call("PUB", data)
        return P.parse_confirm(words)

    def pipeline(self, window: int = 1000) -> Pipeline:
        """A :class:`Pipeline` that keeps up to ``window`` publishes unconfirmed::

            with client.pipeline(window=500) as pipe:
                for body in bodies:
                    pipe.publish("", "jobs", body)
            confirms = pipe.results
        """
        return Pipeline(self, window)

    def publish_many(
        self,
        messages: Iterable[Union[Tuple[Text, Text, Body], Tuple[Text, Text, Body, Mapping[str, Any]]]],
        window: int = 1000,
    ) -> List[Confirm]:
        """Publish ``(exchange, routing_key, body[, options])`` tuples with up to ``window``
        unconfirmed at a time (the replies are matched in order). Returns the confirms in
        order; if any failed, raises :class:`~sluice.errors.BatchPublishError` (after
        waiting for the rest) whose ``results`` holds each confirm or error."""
        pipe = Pipeline(self, window)
        for m in messages:
            if len(m) == 4:
                pipe.publish(m[0], m[1], m[2], **m[3])
            else:
                pipe.publish(m[0], m[1], m[2])
        results = pipe.wait()
        for r in results:
            if isinstance(r, SluiceError):
                raise BatchPublishError(results, r)
        return results  # type: ignore[return-value]

    def subscribe(
        self,
        queue: Text,
        *,
        prefetch: Optional[int] = None,
        prefetch_bytes: Optional[int] = None,
        auto_ack: bool = False,
        tag: Optional[str] = None,
        exclusive: bool = False,
        offset: Optional[Offset] = None,
        time: Any = None,
        group: Optional[Text] = None,
    ) -> Subscription:
        """``SUB``: a :class:`Subscription` to iterate. At most ``prefetch`` deliveries are
        unacknowledged at a time (server default 100); with ``prefetch_bytes``
        (1 to 1073741824), at most that many body bytes as well, though a larger
        body still comes, alone.

        Streams: ``offset`` (``"first"``, ``"last"``, ``"next"`` or a number) or ``time``
        (a ``datetime`` or Unix seconds) says where to start; ``group`` reads as a member
        of a consumer group, whose acks commit its position."""
        tag = tag or "py-%d" % next(_tags)
        sub = Subscription(self, queue, tag, prefetch, auto_ack, exclusive, offset, time, group,
                            prefetch_bytes)
        data = sub._command()
        with self._lock:
            if tag in self._subs:
                raise ValueError(f"consumer tag {tag!r} is in use on this client")
            self._subs[tag] = sub  # MSG lines may come right behind the OK
        try:
            self._call("SUB", data)
        except BaseException:
            with self._lock:
                if self._subs.get(tag) is sub:
                    del self._subs[tag]
                sub._end("failed")
            raise
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            if sub._state != "open":
                self._subs.pop(sub.tag, None)
                return
            sub._state = "cancelled"
            gen = self._gen
            held = [m for m in sub._buf if m._gen == gen and not m._auto]
            sub._buf.clear()
            sub._cv.notify_all()
        try:
            items = [("UNSUB", P.command("UNSUB", sub.tag))]
            items += [("NACK", b"NACK %d\r\n" % m.delivery_tag) for m in held]
            ps = self._send_batch(items, gen_required=gen)
            for p in ps:
                self._wait(p, None)
            try:
                ps[0].result()
            except SluiceError as e:
                if e.code != "NOT_FOUND":
                    raise
        except DeliveryLostError:
            pass  # the connection it was on is gone, and the subscription with it
        finally:
            with self._lock:
                if self._subs.get(sub.tag) is sub:
                    del self._subs[sub.tag]

    def get(self, queue: Text, count: int = 1, *, wait: Optional[float] = None,
            auto_ack: bool = False) -> List[Message]:
        """``GET``: up to ``count`` ready messages (an empty list when none). ``wait``
        (seconds) long-polls for the first one; meanwhile this connection's later
        commands wait too."""
        opts: List[Tuple[str, P.OptionValue]] = [("count", count if count != 1 else None),
                                                 ("ack", "auto" if auto_ack else None)]
        if wait is not None:
            opts.append(("wait", P.ms(wait)))
        timeout = None
        if wait is not None and self.timeout is not None:
            timeout = self.timeout + wait
        words, _, p = self._call("GET", P.command("GET", queue, options=opts), timeout=timeout)
        msgs: List[Message] = p.msgs or []
        if auto_ack:
            for m in msgs:
                m._auto = True
        return msgs

    def peek(self, queue: Text, count: int = 1, *, start: Optional[int] = None) -> List[Delivery]:
        """``PEEK``: up to ``count`` waiting messages from position ``start`` (a stream: from
        that offset) without changing anything. ``Delivery.position`` is each one's position."""
        opts = [("count", count if count != 1 else None), ("from", start)]
        _, _, p = self._call("PEEK", P.command("PEEK", queue, options=opts))
        return list(p.msgs or [])

    def declare_queue(self, name: Text = "", **options: Any) -> QueueInfo:
        """``DECLARE QUEUE``: create the queue, or check that it exists with these options.
        ``""`` asks for a generated name (``QueueInfo.name``). Options are keyword
        arguments: ``durable``, ``exclusive``, ``auto_delete``, ``max_length``,
        ``max_bytes``, ``overflow``, ``ttl``, ``expires``, ``dead_letter``,
        ``dead_letter_key``, ``delivery_limit``, ``ack_timeout``, ``max_priority``,
        ``dedup_window``, ``retry_delays``, ``single_active``, ``groups``,
        ``replicas``; for a stream ``type="stream"``, ``max_age``, ``max_bytes``,
        ``partitions``. Durations in seconds."""
        opts = P.declare_queue_options(**options)
        words, _, _ = self._call("DECLARE", P.command("DECLARE QUEUE", name, options=opts))
        return P.parse_queue_info(words)

    def declare_stream(self, name: Text, *, max_age: Optional[float] = None, max_bytes: Optional[int] = None,
                       partitions: Optional[int] = None) -> QueueInfo:
        """``DECLARE QUEUE <name> type=stream``: an append-only log read by offset."""
        return self.declare_queue(name, type="stream", max_age=max_age, max_bytes=max_bytes,
                                  partitions=partitions)

    def declare_exchange(self, name: Text, type: str, *, durable: bool = False, auto_delete: bool = False,
                         alternate: Optional[Text] = None, hash_header: Optional[str] = None) -> None:
        """``DECLARE EXCHANGE``: ``type`` is direct, fanout, topic, headers or hash."""
        opts = [("durable", durable), ("auto-delete", auto_delete), ("alternate", alternate),
                ("hash-header", hash_header)]
        self._call("DECLARE", P.command("DECLARE EXCHANGE", name, type, options=opts))

    def delete_queue(self, name: Text, *, if_unused: bool = False, if_empty: bool = False) -> int:
        """``DELETE QUEUE``: returns how many waiting messages were dropped."""
        words, _, _ = self._call("DELETE", P.command("DELETE QUEUE", name,
                                                     options=[("if-unused", if_unused), ("if-empty", if_empty)]))
        return P.parse_count(words, "messages")

    def delete_exchange(self, name: Text, *, if_unused: bool = False) -> None:
        """``DELETE EXCHANGE``."""
        self._call("DELETE", P.command("DELETE EXCHANGE", name, options=[("if-unused", if_unused)]))

    def bind(self, queue: Text, exchange: Text, routing_key: Text = "", *,
             headers: Optional[Mapping[str, Text]] = None, match: Optional[str] = None) -> None:
        """``BIND``: ``exchange`` routes messages with this key (or these headers, on a
        headers exchange; ``match`` ``"all"``/``"any"``) to ``queue``."""
        self._call("BIND", _bind_line("BIND", queue, exchange, routing_key, headers, match))

    def unbind(self, queue: Text, exchange: Text, routing_key: Text = "", *,
               headers: Optional[Mapping[str, Text]] = None, match: Optional[str] = None) -> None:
        """``UNBIND``: remove exactly that binding."""
        self._call("UNBIND", _bind_line("UNBIND", queue, exchange, routing_key, headers, match))

    def purge(self, queue: Text) -> int:
        """``PURGE``: drop the waiting messages; returns how many."""
        words, _, _ = self._call("PURGE", P.command("PURGE", queue))
        return P.parse_count(words, "messages")

    def redrive(self, queue: Text, count: Optional[int] = None) -> RedriveResult:
        """``REDRIVE``: send dead letters back where they were first published."""
        words, _, _ = self._call("REDRIVE", P.command("REDRIVE", queue, options=[("count", count)]))
        return P.parse_redrive(words)

    def seek(self, stream: Text, group: Text, *, offset: Optional[Offset] = None, time: Any = None) -> List[int]:
        """``SEEK``: move a stream's consumer group to ``offset`` (``"first"``, ``"last"``,
        ``"next"``, a number) or ``time`` (``datetime`` or Unix seconds). Returns the
        offset it reads next (one per partition)."""
        if offset is None and time is None:
            raise ValueError("seek needs offset= or time=")
        words, _, _ = self._call("SEEK", P.command("SEEK", stream, group, options=P.offset_option(offset, time)))
        return P.parse_offsets(words)

    def stats(self, queue: Optional[Text] = None) -> Dict[str, str]:
        """``STATS`` (or ``STATS QUEUE <queue>``) as a dict of text values."""
        line = P.command("STATS QUEUE", queue) if queue is not None else b"STATS\r\n"
        _, body, _ = self._call("STATS", line)
        return P.parse_stats(body)

    def send_command(self, line: Union[str, bytes], body: Optional[bytes] = None) -> Tuple[List[str], Optional[bytes]]:
        """Any other command (``LIST QUEUES``, ``USER ADD ...``): the words after ``OK``
        and the reply's literal. ``ERR`` raises its typed error."""
        data = P.to_bytes(line).rstrip(b"\r\n")
        if body is not None:
            data += b" {%d}\r\n" % len(body) + body
        verb = data.split(None, 1)[0].upper().decode("ascii", "replace") if data.strip() else ""
        if verb in ("GET", "PEEK", "SUB", "QUIT", "EXIT"):
            raise ValueError(f"use the client's own method for {verb}")
        words, lit, _ = self._call(verb, data + b"\r\n")
        return [P.to_text(w) for w in words], lit

    # ------------------------------------------------------------------
    # closing

    def close(self) -> None:
        """Say ``QUIT`` and close. Unacknowledged deliveries go back to their queues."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            state = self._state
        if state == _OPEN:
            try:
                p = self._send_batch([("QUIT", b"QUIT\r\n")], timeout=2.0)[0]
                self._wait(p, 2.0)
            except SluiceError:
                pass
        with self._lock:
            self._state = _CLOSED
            self._gen += 1
            err = ClientClosedError("the client is closed")
            for p in self._pending:
                p.error = err
                p.done = True
            self._pending.clear()
            for sub in self._subs.values():
                sub._end("closed")
            self._cv.notify_all()
            transport = self._transport
        transport.close()
        self._closed_event.set()
        self._wake.set()
        for t in (self._reader, self._keeper):
            if t is not threading.current_thread():
                t.join(5)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # For tests: break the connection as a network failure would.
    def _drop_connection(self) -> None:
        with self._lock:
            transport = self._transport
        transport.shutdown()


def _bind_line(verb: str, queue: Text, exchange: Text, routing_key: Text,
               headers: Optional[Mapping[str, Text]], match: Optional[str]) -> bytes:
    line = P.command(verb, queue, exchange, routing_key).rstrip(b"\r\n")
    for name, value in (headers or {}).items():
        line += b" h." + P.to_bytes(name) + b"=" + P.encode_word(value)
    if match is not None:
        line += P.option("match", match)
    return line + b"\r\n"


def _log_error(p: _Pending) -> None:
    if p.error is not None and isinstance(p.error, ConnectionLostError):
        return
    if p.done and p.error is None and p.line.startswith(b"ERR"):
        log.warning("sluice: %s answered %s", p.verb, p.line.decode("utf-8", "replace"))
