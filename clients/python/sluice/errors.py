"""Typed errors.

Every error the client raises is a :class:`SluiceError`. An ``ERR <CODE>
<text>`` reply becomes a :class:`ServerError` subclass chosen by its code
(protocol.md, section 12); ``.code`` holds the code and ``.text`` the
server's text. Connection trouble is a :class:`SluiceConnectionError`.
"""

from __future__ import annotations

from typing import Dict, Optional, Type

__all__ = [
    "SluiceError",
    "ServerError",
    "BadSyntaxError",
    "UnknownCommandError",
    "NotFoundError",
    "PreconditionError",
    "NoRouteError",
    "QueueFullError",
    "TooLargeError",
    "LineTooLongError",
    "BadFrameError",
    "UnknownTagError",
    "NoAuthError",
    "ForbiddenError",
    "LockedError",
    "LimitError",
    "InternalError",
    "UnavailableError",
    "SluiceConnectionError",
    "ConnectionLostError",
    "DeliveryLostError",
    "ClientClosedError",
    "ProtocolError",
    "SluiceTimeoutError",
    "BatchPublishError",
    "error_for",
]


class SluiceError(Exception):
    """Base of every error raised by this package.

    ``code`` is the protocol's error code (``"NOT_FOUND"``, ...) for an
    ``ERR`` reply, ``None`` for errors of the client or the connection.
    """

    code: Optional[str] = None

    def __init__(self, text: str = "", code: Optional[str] = None) -> None:
        if code is not None:
            self.code = code
        self.text = text
        super().__init__(f"{self.code} {text}" if self.code else text)


class ServerError(SluiceError):
    """The server answered ``ERR <code> <text>``."""


class BadSyntaxError(ServerError):
    """``SYNTAX``: malformed words, a bad option or value."""

    code = "SYNTAX"


class UnknownCommandError(ServerError):
    """``UNKNOWN_COMMAND``: an unknown verb."""

    code = "UNKNOWN_COMMAND"


class NotFoundError(ServerError):
    """``NOT_FOUND``: no such exchange, queue, consumer tag, user, ..."""

    code = "NOT_FOUND"


class PreconditionError(ServerError):
    """``PRECONDITION``: exists with other options, a condition that does not hold, ..."""

    code = "PRECONDITION"


class NoRouteError(ServerError):
    """``NO_ROUTE``: a ``mandatory`` publish that no queue took (nothing stored)."""

    code = "NO_ROUTE"


class QueueFullError(ServerError):
    """``QUEUE_FULL``: every target queue refused the publish (``overflow=reject-publish``)."""

    code = "QUEUE_FULL"


class TooLargeError(ServerError):
    """``TOO_LARGE``: a body over the server's ``--max-literal``."""

    code = "TOO_LARGE"


class LineTooLongError(ServerError):
    """``LINE_TOO_LONG``: a command line over the server's ``--max-line``."""

    code = "LINE_TOO_LONG"


class BadFrameError(ServerError):
    """``BAD_FRAME``: the server could not read a frame and closes the connection."""

    code = "BAD_FRAME"


class UnknownTagError(ServerError):
    """``UNKNOWN_TAG``: the delivery tag is not outstanding on this connection."""

    code = "UNKNOWN_TAG"


class NoAuthError(ServerError):
    """``NOAUTH``: not logged in, a wrong user or password, too many failed logins."""

    code = "NOAUTH"


class ForbiddenError(ServerError):
    """``FORBIDDEN``: the user's permissions do not allow it."""

    code = "FORBIDDEN"


class LockedError(ServerError):
    """``LOCKED``: another connection's exclusive queue, or an exclusive subscription."""

    code = "LOCKED"


class LimitError(ServerError):
    """``LIMIT``: a server limit (connections, subscriptions, unacked, queues, exchanges)."""

    code = "LIMIT"


class InternalError(ServerError):
    """``INTERNAL`` (and any code this client does not know): the command's effect is not durable."""

    code = "INTERNAL"


class UnavailableError(ServerError):
    """``UNAVAILABLE``: on a cluster node, the cluster could not take the command in time."""

    code = "UNAVAILABLE"


class SluiceConnectionError(SluiceError):
    """No connection could be made (every address failed), or the client gave up reconnecting."""


class ConnectionLostError(SluiceConnectionError):
    """The connection broke while a command waited for its reply.

    The command may or may not have taken effect (a publish may or may not
    be stored): retry it if that is safe. The client reconnects by itself
    (unless ``reconnect=False``).
    """


class DeliveryLostError(ConnectionLostError):
    """Settling (``ack``/``nack``/``reject``/``touch``) a delivery whose connection is gone.

    The broker puts the unacknowledged deliveries of a closed connection back
    in their queue and delivers them again, flagged ``redelivered``.
    """


class ClientClosedError(SluiceError):
    """The client was closed."""


class ProtocolError(SluiceError):
    """The server sent something this client cannot read (the connection is dropped)."""


class SluiceTimeoutError(SluiceError, TimeoutError):
    """No reply (or no connection) within the timeout."""


class BatchPublishError(SluiceError):
    """Some publishes of :meth:`Client.publish_many` failed.

    ``results`` has one entry per message, in order: a ``Confirm`` or the
    exception of that message. ``code`` and the message are the first
    failure's.
    """

    def __init__(self, results: list, first: SluiceError) -> None:  # type: ignore[type-arg]
        self.results = results
        self.first = first
        super().__init__(f"{sum(isinstance(r, BaseException) for r in results)} of "
                         f"{len(results)} publishes failed; first: {first}", first.code)


_BY_CODE: Dict[str, Type[ServerError]] = {
    cls.code: cls
    for cls in (
        BadSyntaxError,
        UnknownCommandError,
        NotFoundError,
        PreconditionError,
        NoRouteError,
        QueueFullError,
        TooLargeError,
        LineTooLongError,
        BadFrameError,
        UnknownTagError,
        NoAuthError,
        ForbiddenError,
        LockedError,
        LimitError,
        InternalError,
        UnavailableError,
    )
}


def error_for(code: str, text: str) -> ServerError:
    """The exception for ``ERR <code> <text>``: an unknown code is an :class:`InternalError`
    (as protocol.md asks) that keeps the code it came with."""
    cls = _BY_CODE.get(code)
    if cls is None:
        return InternalError(text, code=code)
    return cls(text)
