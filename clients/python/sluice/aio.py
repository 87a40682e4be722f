"""The asyncio client: :class:`AsyncClient`, :class:`AsyncSubscription`, :class:`AsyncMessage`.

The same design as the blocking client (see :mod:`sluice.client`), on one
event loop: a reader task hands replies to the commands waiting for them
(in order), ``MSG -``/``MSG *`` to the oldest ``GET``/``PEEK``, other
``MSG`` lines to their subscription, ``NOTICE`` lines to their
subscription and ``on_notice``; a keeper task sends heartbeats and
notices a silent server. After a lost connection the reader task connects
again with back-off (the next address of the list) and subscribes again.

    async with AsyncClient("127.0.0.1:5680") as c:
        await c.declare_queue("jobs", durable=True)
        await c.publish("", "jobs", b"hello")
        async for msg in await c.subscribe("jobs", prefetch=10):
            await msg.ack()
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import random
import ssl
import time
from dataclasses import dataclass, field
from typing import (
    Any,
    Callable,
    Deque,
    Dict,
    Iterable,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
)

from . import _protocol as P
from ._protocol import Body, Confirm, Delivery, Offset, QueueInfo, RedriveResult, Text
from .client import Address, _addresses, _bind_line, make_ssl_context
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

__all__ = ["AsyncClient", "AsyncSubscription", "AsyncMessage", "AsyncPipeline"]

log = logging.getLogger("sluice")

_CONNECTING, _OPEN, _CLOSED, _FAILED = "connecting", "open", "closed", "failed"
_tags = itertools.count(1)
_HIGH_WATER = 1 << 20


class _APending:
    __slots__ = ("verb", "gen", "fut", "line", "body", "error", "msgs", "callback")

    def __init__(self, verb: str, gen: int, fut: "asyncio.Future[None]",
                 callback: Optional[Callable[["_APending"], None]] = None) -> None:
        self.verb = verb
        self.gen = gen
        self.fut = fut
        self.line = b""
        self.body: Optional[bytes] = None
        self.error: Optional[SluiceError] = None
        self.msgs: Optional[List[Any]] = [] if verb in ("GET", "PEEK") else None
        self.callback = callback

    def finish(self) -> None:
        if not self.fut.done():
            self.fut.set_result(None)
        if self.callback is not None:
            self.callback(self)

    def result(self) -> Tuple[List[bytes], Optional[bytes]]:
        if self.error is not None:
            raise self.error
        ok, words = P.split_reply(self.line)
        if not ok:
            raise P.error_from_reply(words[0], words[1])
        if self.body is not None and words:
            words = words[:-1]  # the {N} mark of the literal
        return words, self.body


@dataclass
class AsyncMessage(Delivery):
    """A delivery of an :class:`AsyncClient`; settle it once with ``await msg.ack()``,
    ``nack()`` or ``reject()`` (as :class:`sluice.Message`)."""

    _client: Optional["AsyncClient"] = field(default=None, repr=False, compare=False)
    _gen: int = field(default=0, repr=False, compare=False)
    _auto: bool = field(default=False, repr=False, compare=False)

    async def ack(self, multiple: bool = False, wait: bool = True) -> None:
        if self._auto or self._client is None:
            return
        await self._client._settle(self, b"ACK %d%s\r\n" % (self.delivery_tag, b" multiple" if multiple else b""),
                                   wait)

    async def nack(self, requeue: bool = True, delay: Optional[float] = None, multiple: bool = False,
                   wait: bool = True) -> None:
        if self._auto or self._client is None:
            return
        line = b"NACK %d" % self.delivery_tag
        if multiple:
            line += b" multiple"
        if not requeue:
            line += b" requeue=false"
        if delay is not None:
            line += b" delay=%d" % P.ms(delay)
        await self._client._settle(self, line + b"\r\n", wait)

    async def reject(self, wait: bool = True) -> None:
        if self._auto or self._client is None:
            return
        await self._client._settle(self, b"REJECT %d\r\n" % self.delivery_tag, wait)

    async def touch(self) -> None:
        if self._auto or self._client is None:
            return
        await self._client._settle(self, b"TOUCH %d\r\n" % self.delivery_tag, True)


class AsyncSubscription:
    """A subscription of an :class:`AsyncClient`: ``async for msg in sub``."""

    def __init__(self, client: "AsyncClient", queue: Text, tag: str, prefetch: Optional[int], auto_ack: bool,
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
        self._buf: Deque[AsyncMessage] = collections.deque()
        self._event = asyncio.Event()
        self._state = "open"
        self._error: Optional[BaseException] = None
        self.cancel_reason: Optional[str] = None
        self.active: Optional[bool] = None

    def _command(self) -> bytes:
        offset, when = self._offset, self._time
        if self._last_offset is not None and self.group is None and not self._partitioned:
            offset, when = self._last_offset + 1, None
        return P.sub_command(self.queue, self.tag, prefetch=self.prefetch, auto_ack=self.auto_ack,
                             exclusive=self.exclusive, offset=offset, time=when, group=self.group,
                             prefetch_bytes=self.prefetch_bytes)

    def _push(self, m: AsyncMessage) -> None:
        self._buf.append(m)
        self._event.set()

    def _end(self, state: str, error: Optional[BaseException] = None) -> None:
        if self._state == "open":
            self._state = state
            self._error = error
        self._event.set()

    @property
    def closed(self) -> bool:
        return self._state != "open"

    @property
    def buffered(self) -> int:
        return len(self._buf)

    async def next(self, timeout: Optional[float] = None) -> Optional[AsyncMessage]:
        """The next delivery; ``None`` after ``timeout`` seconds, or once the subscription
        has ended (see :attr:`closed`). Raises the error that ended it, if one did."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._buf:
            if self._state != "open":
                if self._error is not None:
                    raise self._error
                return None
            self._event.clear()
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            try:
                await asyncio.wait_for(self._event.wait(), remaining)
            except asyncio.TimeoutError:
                return None
        m = self._buf.popleft()
        if m.offset is not None:
            if m.partition is not None:
                self._partitioned = True
            if self._last_offset is None or m.offset > self._last_offset:
                self._last_offset = m.offset
        return m

    def __aiter__(self) -> "AsyncSubscription":
        return self

    async def __anext__(self) -> AsyncMessage:
        m = await self.next()
        if m is None:
            raise StopAsyncIteration
        return m

    async def cancel(self) -> None:
        """``UNSUB``, and give back (``NACK``) the deliveries received but not taken."""
        await self._client._unsubscribe(self)

    async def __aenter__(self) -> "AsyncSubscription":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        try:
            await self.cancel()
        except SluiceError:
            pass


class AsyncPipeline:
    """Publishes with up to ``window`` confirms outstanding (:meth:`AsyncClient.pipeline`)."""

    def __init__(self, client: "AsyncClient", window: int) -> None:
        if window < 1:
            raise ValueError("window must be at least 1")
        self._client = client
        self.window = window
        self._inflight: Deque[_APending] = collections.deque()
        self.results: List[Union[Confirm, SluiceError]] = []

    async def publish(self, exchange: Text, routing_key: Text, body: Body, **options: Any) -> None:
        while len(self._inflight) >= self.window:
            p = self._inflight.popleft()
            await self._client._wait(p, None)
            self._record(p)
        data = P.pub_command(exchange, routing_key, body, **options)
        self._inflight.extend(await self._client._send_batch([("PUB", data)]))
        while self._inflight and self._inflight[0].fut.done():
            self._record(self._inflight.popleft())

    def _record(self, p: _APending) -> None:
        try:
            words, _ = p.result()
            self.results.append(P.parse_confirm(words))
        except SluiceError as e:
            self.results.append(e)

    async def wait(self) -> List[Union[Confirm, SluiceError]]:
        while self._inflight:
            p = self._inflight.popleft()
            await self._client._wait(p, None)
            self._record(p)
        return self.results

    async def __aenter__(self) -> "AsyncPipeline":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.wait()


class AsyncClient:
    """An asyncio connection to a sluice broker. The options are those of
    :class:`sluice.Client`; connect with ``await client.connect()`` or
    ``async with AsyncClient(...) as client``."""

    def __init__(
        self,
        addresses: Union[Address, Sequence[Address]] = "127.0.0.1:5680",
        *,
        user: Optional[str] = None,
        password: Optional[str] = None,
        tls: Union[bool, ssl.SSLContext] = False,
        ca_file: Optional[str] = None,
        server_hostname: Optional[str] = None,
        name: Optional[str] = "sluice-python-asyncio",
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
        self._state = _CONNECTING
        self._closing = False
        self._failure: Optional[SluiceError] = None
        self._gen = 0
        self._pending: Deque[_APending] = collections.deque()
        self._subs: Dict[str, AsyncSubscription] = {}
        self._writer: Optional[asyncio.StreamWriter] = None
        self._reader: Optional[asyncio.StreamReader] = None
        self._frames = P.FrameReader()
        self._last_send = self._last_recv = time.monotonic()
        self._tasks: List["asyncio.Task[None]"] = []
        self._open_event: Optional[asyncio.Event] = None
        self._closed_event: Optional[asyncio.Event] = None
        self._drain_lock: Optional[asyncio.Lock] = None
        self._wbuf: List[bytes] = []
        self._wsize = 0
        self._flush_scheduled = False
        self.greeting = ""
        self.address: Tuple[str, int] = self.addresses[0]
        self._addr_index = 0
        self.reconnects = 0

    # ------------------------------------------------------------------
    # connecting

    async def connect(self) -> "AsyncClient":
        """Connect to the first address that answers (and log in)."""
        if self._open_event is not None:
            return self
        self._open_event = asyncio.Event()
        self._closed_event = asyncio.Event()
        self._drain_lock = asyncio.Lock()
        last: Optional[BaseException] = None
        for i, addr in enumerate(self.addresses):
            try:
                reader, writer, frames = await self._open(addr)
            except (NoAuthError, ForbiddenError):
                raise
            except (OSError, asyncio.TimeoutError, SluiceError) as e:
                last = e
                continue
            self._set_connection(reader, writer, frames, i, addr)
            break
        else:
            raise SluiceConnectionError(
                f"could not connect to {', '.join('%s:%d' % a for a in self.addresses)}: {last}")
        self._state = _OPEN
        self._open_event.set()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._reader_main()), loop.create_task(self._keeper_main())]
        return self

    async def __aenter__(self) -> "AsyncClient":
        return await self.connect()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def _set_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        frames: P.FrameReader, idx: int, addr: Tuple[str, int]) -> None:
        self._reader, self._writer, self._frames = reader, writer, frames
        self._addr_index = idx
        self.address = addr
        self._last_send = self._last_recv = time.monotonic()

    async def _open(self, addr: Tuple[str, int]) -> Tuple[asyncio.StreamReader, asyncio.StreamWriter, P.FrameReader]:
        kw: Dict[str, Any] = {}
        if self._ssl is not None:
            kw = {"ssl": self._ssl, "server_hostname": self._server_hostname or addr[0]}
        reader, writer = await asyncio.wait_for(asyncio.open_connection(addr[0], addr[1], limit=1 << 20, **kw),
                                                self.connect_timeout)
        try:
            frames = P.FrameReader()

            async def frame() -> Tuple[bytes, Optional[bytes]]:
                while True:
                    f = frames.next_frame()
                    if f is not None:
                        if f[0].startswith(b"NOTICE"):
                            continue
                        return f
                    data = await asyncio.wait_for(reader.read(262144), self.connect_timeout)
                    if not data:
                        raise ConnectionResetError("the server closed the connection")
                    frames.feed(data)

            greeting, _ = await frame()
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
            writer.write(out)
            for _ in range(expect):
                line, _ = await frame()
                ok, w = P.split_reply(line)
                if not ok:
                    raise P.error_from_reply(w[0], w[1])
            return reader, writer, frames
        except BaseException:
            writer.close()
            raise

    async def _reconnect(self) -> bool:
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
                    reader, writer, frames = await self._open(addr)
                except (NoAuthError, ForbiddenError) as e:
                    self._fail(e)
                    return False
                except (OSError, asyncio.TimeoutError, SluiceError) as e:
                    last = e
                    continue
                if self._closing:
                    writer.close()
                    return False
                self._set_connection(reader, writer, frames, idx, addr)
                self.reconnects += 1
                gen = self._gen
                out = []
                for sub in self._subs.values():
                    if sub._state == "open":
                        self._pending.append(self._new_pending("SUB", gen, self._resubscribed(sub)))
                        out.append(sub._command())
                if out:
                    writer.write(b"".join(out))
                self._state = _OPEN
                assert self._open_event is not None
                self._open_event.set()
                log.info("sluice: connected again to %s:%d", addr[0], addr[1])
                return True
            if self.reconnect_timeout is not None and time.monotonic() - start >= self.reconnect_timeout:
                self._fail(SluiceConnectionError(f"gave up reconnecting after {self.reconnect_timeout} s: {last}"))
                return False
            assert self._closed_event is not None
            try:
                await asyncio.wait_for(self._closed_event.wait(), delay * (0.5 + random.random() / 2))
            except asyncio.TimeoutError:
                pass
            delay = min(delay * 2, self.reconnect_max_delay)

    def _resubscribed(self, sub: AsyncSubscription) -> Callable[[_APending], None]:
        def done(p: _APending) -> None:
            try:
                p.result()
            except SluiceError as e:
                if isinstance(e, ConnectionLostError):
                    return
                log.warning("sluice: subscribing %s again failed: %s", sub.queue, e)
                self._subs.pop(sub.tag, None)
                sub._end("failed", e)
        return done

    def _fail(self, error: SluiceError) -> None:
        if self._state == _CLOSED:
            return
        self._state = _FAILED
        self._failure = error
        for sub in self._subs.values():
            sub._end("failed", error)
        assert self._open_event is not None
        self._open_event.set()  # wake the waiters: they raise

    def _addr_text(self) -> str:
        return "%s:%d" % self.address

    def _connection_lost(self, gen: int, exc: BaseException) -> None:
        if gen != self._gen or self._state != _OPEN:
            return
        self._gen += 1
        self._state = _CLOSED if self._closing else _CONNECTING
        assert self._open_event is not None
        self._open_event.clear()
        if self._closing:
            err: SluiceError = ClientClosedError("the client is closed")
        else:
            err = ConnectionLostError(f"connection to {self._addr_text()} lost: {exc}")
            log.warning("sluice: %s", err)
            if not self._reconnect_enabled:
                self._state = _FAILED
                self._failure = SluiceConnectionError(
                    f"connection to {self._addr_text()} lost (reconnect=False): {exc}")
                self._open_event.set()  # wake the waiters: they raise
        pending = list(self._pending)
        self._pending.clear()
        self._wbuf.clear()
        self._wsize = 0
        for sub in self._subs.values():
            sub._buf.clear()
            if self._closing:
                sub._end("closed")
            elif self._failure is not None:
                sub._end("failed", self._failure)
        for p in pending:
            p.error = err
            p.finish()
        if self._writer is not None:
            self._writer.close()

    # ------------------------------------------------------------------
    # the reader and keeper tasks

    async def _reader_main(self) -> None:
        while True:
            if self._state in (_CLOSED, _FAILED):
                return
            gen, reader = self._gen, self._reader
            assert reader is not None
            exc: BaseException
            try:
                while True:
                    data = await reader.read(262144)
                    if not data:
                        exc = ConnectionResetError("closed by the server")
                        break
                    self._last_recv = time.monotonic()
                    frames = self._frames
                    frames.feed(data)
                    while True:
                        f = frames.next_frame()
                        if f is None:
                            break
                        self._dispatch(f[0], f[1], gen)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001
                exc = e
                if isinstance(e, ProtocolError):
                    log.error("sluice: %s", e)
            self._connection_lost(gen, exc)
            if self._state in (_CLOSED, _FAILED):
                return
            if not await self._reconnect():
                return

    async def _keeper_main(self) -> None:
        hb = self.heartbeat
        if not hb:
            return
        while self._state not in (_CLOSED, _FAILED):
            await asyncio.sleep(hb / 2)
            if self._state != _OPEN or self._writer is None:
                continue
            now = time.monotonic()
            if now - self._last_recv > 2 * hb + 1.0:
                # Nothing, not even a heartbeat, for two intervals: the server is gone.
                self._connection_lost(self._gen, TimeoutError("no heartbeat from the server"))
                continue
            if now - self._last_send >= hb / 2:
                self._queue_bytes(b"\r\n")

    def _new_pending(self, verb: str, gen: int,
                     callback: Optional[Callable[[_APending], None]] = None) -> _APending:
        return _APending(verb, gen, asyncio.get_running_loop().create_future(), callback)

    def _dispatch(self, line: bytes, body: Optional[bytes], gen: int) -> None:
        if gen != self._gen:
            return
        if line.startswith(b"OK") or line.startswith(b"ERR"):
            if not self._pending:
                raise ProtocolError(f"a reply with no command waiting: {line[:200]!r}")
            p = self._pending.popleft()
            p.line = line
            p.body = body
            p.finish()
        elif line.startswith(b"MSG "):
            self._on_msg(line, body, gen)
        elif line.startswith(b"NOTICE"):
            self._on_notice(line, gen)
        elif line.startswith(b"HELLO") or not line.strip():
            pass
        else:
            raise ProtocolError(f"unexpected line from the server: {line[:200]!r}")

    def _on_msg(self, line: bytes, body: Optional[bytes], gen: int) -> None:
        try:
            words = P.tokenize(line)
        except ValueError as e:
            raise ProtocolError(str(e)) from None
        kw = P.parse_delivery(words, body)
        ctag = words[1]
        if ctag in (b"-", b"*"):
            target = "GET" if ctag == b"-" else "PEEK"
            for p in self._pending:
                if p.verb == target:
                    if target == "GET":
                        p.msgs.append(AsyncMessage(**kw, _client=self, _gen=gen))  # type: ignore[union-attr]
                    else:
                        p.msgs.append(Delivery(**kw))  # type: ignore[union-attr]
                    return
            raise ProtocolError(f"MSG {ctag.decode()} with no {target} waiting")
        sub = self._subs.get(kw["consumer_tag"])
        if sub is not None and sub._state == "open":
            sub._push(AsyncMessage(**kw, _client=self, _gen=gen, _auto=sub.auto_ack))
            return
        if not (sub is not None and sub.auto_ack):
            # A delivery for a subscription being cancelled (or unknown): give it back.
            self._write_now([("NACK", b"NACK %d\r\n" % kw["delivery_tag"])], _log_error)

    def _on_notice(self, line: bytes, gen: int) -> None:
        try:
            words = P.tokenize(line)
        except ValueError:
            words = line.split()
        kind = words[1] if len(words) > 1 else b""
        if kind == b"cancelled" and len(words) > 2:
            reason = P.kv_words(words[3:]).get("reason", "")
            tag = P.to_text(words[2])
            sub = self._subs.get(tag)
            if sub is not None:
                if reason == "leader-moved" and sub._state == "open":
                    self._write_now([("SUB", sub._command())], self._resubscribed(sub))
                else:
                    self._subs.pop(tag, None)
                    sub.cancel_reason = reason or "cancelled"
                    sub._end("cancelled")
        elif kind in (b"active", b"inactive") and len(words) > 2:
            sub = self._subs.get(P.to_text(words[2]))
            if sub is not None:
                sub.active = kind == b"active"
        if self.on_notice is not None:
            try:
                self.on_notice(line.decode("utf-8", "replace")[7:])
            except Exception:  # noqa: BLE001
                log.exception("sluice: on_notice raised")

    # ------------------------------------------------------------------
    # sending and waiting

    def _write_now(self, items: Sequence[Tuple[str, bytes]],
                   callback: Optional[Callable[[_APending], None]] = None) -> List[_APending]:
        """Register and write at once (the connection must be open)."""
        gen = self._gen
        ps = [self._new_pending(verb, gen, callback) for verb, _ in items]
        self._pending.extend(ps)
        self._queue_bytes(b"".join(d for _, d in items) if len(items) > 1 else items[0][1])
        return ps

    def _queue_bytes(self, data: bytes) -> None:
        """Bytes for the connection, written together once per turn of the event loop
        (in the order they were queued, which is the order of _pending)."""
        self._wbuf.append(data)
        self._wsize += len(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_writes)

    def _flush_writes(self) -> None:
        self._flush_scheduled = False
        if not self._wbuf:
            return
        data = b"".join(self._wbuf)
        self._wbuf.clear()
        self._wsize = 0
        if self._writer is not None and self._state == _OPEN:
            self._writer.write(data)
            self._last_send = time.monotonic()

    async def _send_batch(self, items: Sequence[Tuple[str, bytes]], gen_required: Optional[int] = None,
                          timeout: Optional[float] = None,
                          callback: Optional[Callable[[_APending], None]] = None) -> List[_APending]:
        if self._open_event is None:
            raise SluiceConnectionError("not connected: call (await) connect() first")
        timeout = self.timeout if timeout is None else timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if gen_required is not None and gen_required != self._gen:
                raise DeliveryLostError("this delivery's connection was lost; the broker delivers it again")
            if self._state == _OPEN:
                break
            self._raise_if_down()
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise SluiceTimeoutError("no connection to the broker within the timeout")
            try:
                await asyncio.wait_for(self._open_event.wait(), remaining)
            except asyncio.TimeoutError:
                raise SluiceTimeoutError("no connection to the broker within the timeout") from None
        ps = self._write_now(items, callback)
        writer = self._writer
        assert writer is not None and self._drain_lock is not None
        if self._wsize > _HIGH_WATER:
            self._flush_writes()
        if writer.transport.get_write_buffer_size() > _HIGH_WATER:
            gen = self._gen
            async with self._drain_lock:
                try:
                    await writer.drain()
                except (OSError, RuntimeError) as e:
                    self._connection_lost(gen, e)
        return ps

    def _raise_if_down(self) -> None:
        if self._state == _CLOSED or self._closing:
            raise ClientClosedError("the client is closed")
        if self._state == _FAILED:
            assert self._failure is not None
            raise self._failure

    async def _wait(self, p: _APending, timeout: Optional[float]) -> None:
        if p.fut.done():
            return
        timeout = self.timeout if timeout is None else timeout
        if timeout is None:
            await asyncio.shield(p.fut)
            return
        try:
            await asyncio.wait_for(asyncio.shield(p.fut), timeout)
        except asyncio.TimeoutError:
            raise SluiceTimeoutError(f"no reply to {p.verb} within {timeout} s") from None

    async def _call(self, verb: str, data: bytes, timeout: Optional[float] = None,
                    gen_required: Optional[int] = None) -> Tuple[List[bytes], Optional[bytes], _APending]:
        p = (await self._send_batch([(verb, data)], gen_required, timeout))[0]
        await self._wait(p, timeout)
        words, body = p.result()
        return words, body, p

    async def _settle(self, m: AsyncMessage, data: bytes, wait: bool) -> None:
        if not wait:
            await self._send_batch([("ACK", data)], gen_required=m._gen, callback=_log_error)
            return
        try:
            await self._call("ACK", data, gen_required=m._gen)
        except ConnectionLostError as e:
            if isinstance(e, DeliveryLostError):
                raise
            raise DeliveryLostError(
                f"the connection was lost before the reply ({e}); the broker delivers it again") from None

    # ------------------------------------------------------------------
    # the API (see sluice.Client for each method's documentation)

    @property
    def connected(self) -> bool:
        return self._state == _OPEN

    async def wait_connected(self, timeout: Optional[float] = None) -> bool:
        """Wait until a connection is up; False after ``timeout`` seconds."""
        assert self._open_event is not None
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._state != _OPEN:
            self._raise_if_down()
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._open_event.wait(), remaining)
            except asyncio.TimeoutError:
                return False
        return True

    async def ping(self) -> None:
        await self._call("PING", b"PING\r\n")

    async def publish(
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
        data = P.pub_command(exchange, routing_key, body, persistent=persistent, mandatory=mandatory, id=id,
                             ttl=ttl, delay=delay, priority=priority, group=group, headers=headers)
        words, _, _ = await self._call("PUB", data)
        return P.parse_confirm(words)

    def pipeline(self, window: int = 1000) -> AsyncPipeline:
        return AsyncPipeline(self, window)

    async def publish_many(
        self,
        messages: Iterable[Union[Tuple[Text, Text, Body], Tuple[Text, Text, Body, Mapping[str, Any]]]],
        window: int = 1000,
    ) -> List[Confirm]:
        pipe = AsyncPipeline(self, window)
        for m in messages:
            if len(m) == 4:
                await pipe.publish(m[0], m[1], m[2], **m[3])
            else:
                await pipe.publish(m[0], m[1], m[2])
        results = await pipe.wait()
        for r in results:
            if isinstance(r, SluiceError):
                raise BatchPublishError(results, r)
        return results  # type: ignore[return-value]

    async def subscribe(
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
    ) -> AsyncSubscription:
        tag = tag or "py-a%d" % next(_tags)
        if tag in self._subs:
            raise ValueError(f"consumer tag {tag!r} is in use on this client")
        sub = AsyncSubscription(self, queue, tag, prefetch, auto_ack, exclusive, offset, time, group,
                                prefetch_bytes)
        self._subs[tag] = sub
        try:
            await self._call("SUB", sub._command())
        except BaseException:
            if self._subs.get(tag) is sub:
                del self._subs[tag]
            sub._end("failed")
            raise
        return sub

    async def _unsubscribe(self, sub: AsyncSubscription) -> None:
        if sub._state != "open":
            self._subs.pop(sub.tag, None)
            return
        sub._state = "cancelled"
        gen = self._gen
        held = [m for m in sub._buf if m._gen == gen and not m._auto]
        sub._buf.clear()
        sub._event.set()
        try:
            items = [("UNSUB", P.command("UNSUB", sub.tag))]
            items += [("NACK", b"NACK %d\r\n" % m.delivery_tag) for m in held]
            ps = await self._send_batch(items, gen_required=gen)
            for p in ps:
                await self._wait(p, None)
            try:
                ps[0].result()
            except SluiceError as e:
                if e.code != "NOT_FOUND":
                    raise
        except DeliveryLostError:
            pass
        finally:
            if self._subs.get(sub.tag) is sub:
                del self._subs[sub.tag]

    async def get(self, queue: Text, count: int = 1, *, wait: Optional[float] = None,
                  auto_ack: bool = False) -> List[AsyncMessage]:
        opts: List[Tuple[str, P.OptionValue]] = [("count", count if count != 1 else None),
                                                 ("ack", "auto" if auto_ack else None)]
        if wait is not None:
            opts.append(("wait", P.ms(wait)))
        timeout = None
        if wait is not None and self.timeout is not None:
            timeout = self.timeout + wait
        _, _, p = await self._call("GET", P.command("GET", queue, options=opts), timeout=timeout)
        msgs: List[AsyncMessage] = p.msgs or []
        if auto_ack:
            for m in msgs:
                m._auto = True
        return msgs

    async def peek(self, queue: Text, count: int = 1, *, start: Optional[int] = None) -> List[Delivery]:
        opts = [("count", count if count != 1 else None), ("from", start)]
        _, _, p = await self._call("PEEK", P.command("PEEK", queue, options=opts))
        return list(p.msgs or [])

    async def declare_queue(self, name: Text = "", **options: Any) -> QueueInfo:
        opts = P.declare_queue_options(**options)
        words, _, _ = await self._call("DECLARE", P.command("DECLARE QUEUE", name, options=opts))
        return P.parse_queue_info(words)

    async def declare_stream(self, name: Text, *, max_age: Optional[float] = None,
                             max_bytes: Optional[int] = None, partitions: Optional[int] = None) -> QueueInfo:
        return await self.declare_queue(name, type="stream", max_age=max_age, max_bytes=max_bytes,
                                        partitions=partitions)

    async def declare_exchange(self, name: Text, type: str, *, durable: bool = False, auto_delete: bool = False,
                               alternate: Optional[Text] = None, hash_header: Optional[str] = None) -> None:
        opts = [("durable", durable), ("auto-delete", auto_delete), ("alternate", alternate),
                ("hash-header", hash_header)]
        await self._call("DECLARE", P.command("DECLARE EXCHANGE", name, type, options=opts))

    async def delete_queue(self, name: Text, *, if_unused: bool = False, if_empty: bool = False) -> int:
        words, _, _ = await self._call("DELETE", P.command("DELETE QUEUE", name, options=[
            ("if-unused", if_unused), ("if-empty", if_empty)]))
        return P.parse_count(words, "messages")

    async def delete_exchange(self, name: Text, *, if_unused: bool = False) -> None:
        await self._call("DELETE", P.command("DELETE EXCHANGE", name, options=[("if-unused", if_unused)]))

    async def bind(self, queue: Text, exchange: Text, routing_key: Text = "", *,
                   headers: Optional[Mapping[str, Text]] = None, match: Optional[str] = None) -> None:
        await self._call("BIND", _bind_line("BIND", queue, exchange, routing_key, headers, match))

    async def unbind(self, queue: Text, exchange: Text, routing_key: Text = "", *,
                     headers: Optional[Mapping[str, Text]] = None, match: Optional[str] = None) -> None:
        await self._call("UNBIND", _bind_line("UNBIND", queue, exchange, routing_key, headers, match))

    async def purge(self, queue: Text) -> int:
        words, _, _ = await self._call("PURGE", P.command("PURGE", queue))
        return P.parse_count(words, "messages")

    async def redrive(self, queue: Text, count: Optional[int] = None) -> RedriveResult:
        words, _, _ = await self._call("REDRIVE", P.command("REDRIVE", queue, options=[("count", count)]))
        return P.parse_redrive(words)

    async def seek(self, stream: Text, group: Text, *, offset: Optional[Offset] = None,
                   time: Any = None) -> List[int]:
        if offset is None and time is None:
            raise ValueError("seek needs offset= or time=")
        words, _, _ = await self._call("SEEK", P.command("SEEK", stream, group,
                                                         options=P.offset_option(offset, time)))
        return P.parse_offsets(words)

    async def stats(self, queue: Optional[Text] = None) -> Dict[str, str]:
        line = P.command("STATS QUEUE", queue) if queue is not None else b"STATS\r\n"
        _, body, _ = await self._call("STATS", line)
        return P.parse_stats(body)

    async def send_command(self, line: Union[str, bytes],
                           body: Optional[bytes] = None) -> Tuple[List[str], Optional[bytes]]:
        data = P.to_bytes(line).rstrip(b"\r\n")
        if body is not None:
            data += b" {%d}\r\n" % len(body) + body
        verb = data.split(None, 1)[0].upper().decode("ascii", "replace") if data.strip() else ""
        if verb in ("GET", "PEEK", "SUB", "QUIT", "EXIT"):
            raise ValueError(f"use the client's own method for {verb}")
        words, lit, _ = await self._call(verb, data + b"\r\n")
        return [P.to_text(w) for w in words], lit

    async def close(self) -> None:
        """Say ``QUIT`` and close. Unacknowledged deliveries go back to their queues."""
        if self._closing or self._open_event is None:
            return
        self._closing = True
        if self._state == _OPEN:
            try:
                p = self._write_now([("QUIT", b"QUIT\r\n")])[0]
                await self._wait(p, 2.0)
            except (SluiceError, OSError):
                pass
        self._state = _CLOSED
        self._gen += 1
        err = ClientClosedError("the client is closed")
        pending = list(self._pending)
        self._pending.clear()
        for p in pending:
            p.error = err
            p.finish()
        for sub in self._subs.values():
            sub._end("closed")
        assert self._closed_event is not None
        self._closed_event.set()
        self._open_event.set()
        if self._writer is not None:
            self._writer.close()
            try:
                await asyncio.wait_for(self._writer.wait_closed(), 2.0)
            except (OSError, asyncio.TimeoutError, ssl.SSLError):
                pass
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # For tests: break the connection as a network failure would.
    def _drop_connection(self) -> None:
        if self._writer is not None:
            self._writer.transport.abort()


def _log_error(p: _APending) -> None:
    if p.error is not None:
        return
    if p.line.startswith(b"ERR"):
        log.warning("sluice: %s answered %s", p.verb, p.line.decode("utf-8", "replace"))
