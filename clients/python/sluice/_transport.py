"""Blocking transports for :class:`sluice.Client`: plain TCP, and TLS.

The blocking client reads on one thread while other threads write, so
a transport must allow one ``recv`` and one ``send`` at the same time.
A plain socket does. An ``ssl.SSLSocket`` does not promise it (OpenSSL
forbids using one SSL object from two threads at once), so TLS runs
through an ``ssl.SSLObject`` over memory BIOs: the TLS state is touched
only under a lock and never during a blocking socket call, and the bytes
it produces go to the socket in the order they were produced.
"""

from __future__ import annotations

import socket
import ssl
import threading
from typing import Optional, Tuple


def _connect(address: Tuple[str, int], timeout: Optional[float]) -> socket.socket:
    sock = socket.create_connection(address, timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    return sock


class PlainTransport:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    @classmethod
    def open(cls, address: Tuple[str, int], timeout: Optional[float]) -> "PlainTransport":
        return cls(_connect(address, timeout))

    def settimeout(self, timeout: Optional[float]) -> None:
        self.sock.settimeout(timeout)

    def recv(self) -> bytes:
        """Up to 256 KiB; ``b""`` at the end of the stream. ``socket.timeout`` on a timeout."""
        return self.sock.recv(262144)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def flush_pending(self) -> None:
        pass

    def shutdown(self) -> None:
        """Wake up a blocked ``recv``/``send`` (they fail or see the end)."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def close(self) -> None:
        self.shutdown()
        try:
            self.sock.close()
        except OSError:
            pass


class TLSTransport:
    def __init__(self, sock: socket.socket, context: ssl.SSLContext, server_hostname: Optional[str]) -> None:
        self.sock = sock
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._ssl = context.wrap_bio(self._in, self._out, server_side=False, server_hostname=server_hostname)
        # _tls guards the SSLObject and the BIOs (never held across a socket call);
        # _send serializes "take what the SSLObject wrote, send it" so records
        # reach the socket in the order they were made.
        self._tls = threading.Lock()
        self._send = threading.Lock()
        self._eof = False

    @classmethod
    def open(cls, address: Tuple[str, int], timeout: Optional[float], context: ssl.SSLContext,
             server_hostname: Optional[str]) -> "TLSTransport":
        sock = _connect(address, timeout)
        t = cls(sock, context, server_hostname)
        try:
            t._handshake()
        except BaseException:
            t.close()
            raise
        return t

    def _handshake(self) -> None:
        while True:
            try:
                with self._tls:
                    self._ssl.do_handshake()
                self.flush_pending()
                return
            except ssl.SSLWantReadError:
                self.flush_pending()
                data = self.sock.recv(65536)
                with self._tls:
                    if data:
                        self._in.write(data)
                    else:
                        self._in.write_eof()
                if not data:
                    raise ConnectionResetError("the server closed the connection during the TLS handshake")

    def settimeout(self, timeout: Optional[float]) -> None:
        self.sock.settimeout(timeout)

    def recv(self) -> bytes:
        while True:
            if self._eof:
                return b""
            with self._tls:
                try:
                    data = self._ssl.read(262144)
                    if not data:
                        self._eof = True
                except ssl.SSLWantReadError:
                    data = None
                except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                    self._eof = True
                    data = b""
                produced = self._out.pending > 0
            if produced:
                # The read made TLS output (a post-handshake message to answer):
                # send it now unless a writer is at it, which then sends it too.
                if self._send.acquire(blocking=False):
                    try:
                        self._flush_locked()
                    finally:
                        self._send.release()
            if data is not None:
                return data
            raw = self.sock.recv(262144)
            with self._tls:
                if raw:
                    self._in.write(raw)
                else:
                    self._in.write_eof()

    def _flush_locked(self) -> None:
        with self._tls:
            out = self._out.read()
        if out:
            self.sock.sendall(out)

    def flush_pending(self) -> None:
        with self._send:
            self._flush_locked()

    def send(self, data: bytes) -> None:
        with self._send:
            with self._tls:
                view = memoryview(data)
                while view:
                    n = self._ssl.write(view[:1 << 20])
                    view = view[n:]
                out = self._out.read()
            self.sock.sendall(out)

    def shutdown(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def close(self) -> None:
        self.shutdown()
        try:
            self.sock.close()
        except OSError:
            pass


Transport = object  # PlainTransport | TLSTransport (duck-typed)
