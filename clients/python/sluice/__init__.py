"""A Python client for the sluice message broker: blocking (:class:`Client`) and
asyncio (:class:`AsyncClient`), standard library only.

    from sluice import Client

    with Client("127.0.0.1:5680") as c:
        c.declare_queue("jobs", durable=True)
        confirm = c.publish("", "jobs", b"resize photo 42")   # Confirm(id=..., routed=1)
        for msg in c.subscribe("jobs", prefetch=10):
            print(msg.body)
            msg.ack()
            break

The wire protocol is protocol.md in the sluice repository.
"""

import logging

from ._protocol import Confirm, Delivery, QueueInfo, RedriveResult
from .aio import AsyncClient, AsyncMessage, AsyncPipeline, AsyncSubscription
from .client import Client, Message, Pipeline, Subscription
from .errors import (
    BadFrameError,
    BadSyntaxError,
    BatchPublishError,
    ClientClosedError,
    ConnectionLostError,
    DeliveryLostError,
    ForbiddenError,
    InternalError,
    LimitError,
    LineTooLongError,
    LockedError,
    NoAuthError,
    NoRouteError,
    NotFoundError,
    PreconditionError,
    ProtocolError,
    QueueFullError,
    ServerError,
    SluiceConnectionError,
    SluiceError,
    SluiceTimeoutError,
    TooLargeError,
    UnavailableError,
    UnknownCommandError,
    UnknownTagError,
)

__version__ = "0.1.0"

logging.getLogger("sluice").addHandler(logging.NullHandler())

__all__ = [
    "Client",
    "Subscription",
    "Message",
    "Pipeline",
    "AsyncClient",
    "AsyncSubscription",
    "AsyncMessage",
    "AsyncPipeline",
    "Confirm",
    "Delivery",
    "QueueInfo",
    "RedriveResult",
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
]
