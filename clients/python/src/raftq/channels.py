"""The process's gRPC channels, one per endpoint, shared by every client.

A `grpc.aio` channel belongs to the event loop that created it, so the
registry keys channels by endpoint and loop. A server process runs one loop,
so it has one channel per endpoint. Channels of a loop that has been closed
are dropped on the next lookup.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass

import grpc

from raftq._proto.raftq.v1 import admin_pb2_grpc, queue_pb2_grpc

logger = logging.getLogger(__name__)

# A restarted node is reached again within about two seconds instead of
# gRPC's default reconnect backoff of up to 120 s.
_CHANNEL_OPTIONS = (
    ("grpc.max_reconnect_backoff_ms", 2000),
    ("grpc.keepalive_time_ms", 30_000),
)


@dataclass(frozen=True)
class Stubs:
    """A channel to one node and the service stubs bound to it."""

    endpoint: str
    channel: grpc.aio.Channel
    queue: queue_pb2_grpc.QueueStub
    admin: admin_pb2_grpc.AdminStub


_lock = threading.Lock()
_stubs: dict[tuple[str, asyncio.AbstractEventLoop], Stubs] = {}


def stubs_for(endpoint: str) -> Stubs:
    """Return the shared stubs for `endpoint` on the running event loop.

    Raises RuntimeError outside a running event loop.
    """
    loop = asyncio.get_running_loop()
    key = (endpoint, loop)
    with _lock:
        existing = _stubs.get(key)
        if existing is not None:
            return existing

        for stale_key in [key for key in _stubs if key[1].is_closed()]:
            del _stubs[stale_key]

        channel = grpc.aio.insecure_channel(endpoint, options=_CHANNEL_OPTIONS)
        created = Stubs(
            endpoint=endpoint,
            channel=channel,
            queue=queue_pb2_grpc.QueueStub(channel),
            admin=admin_pb2_grpc.AdminStub(channel),
        )
        _stubs[key] = created
        logger.debug("opened gRPC channel to raftq endpoint=%s", endpoint)
        return created


async def close_channels() -> None:
    """Close the running loop's channels, e.g. before the loop shuts down."""
    loop = asyncio.get_running_loop()
    with _lock:
        closing = [key for key in _stubs if key[1] is loop]
        channels = [_stubs.pop(key).channel for key in closing]
    for channel in channels:
        await channel.close()
