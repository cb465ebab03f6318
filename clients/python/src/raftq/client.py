"""Asyncio client for the raftq Queue and Admin services, with failover.

Every call goes to the endpoint of the last successful call. When a node returns
UNAVAILABLE or DEADLINE_EXCEEDED, the client tries again with exponential
backoff, up to `max_attempts` attempts. The retry goes to the leader named in
the node's `x-raftq-leader` metadata when that leader is one of the configured
endpoints, and otherwise to the next endpoint in the list. Every other status is
raised at once as RaftqRpcError.

A write carries a request id (a fresh UUID unless the caller set one) that
stays the same across the retries of that call, so a node applies a retried
write once and returns the first outcome.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from raftq._proto.raftq.v1 import admin_pb2, queue_pb2
from raftq.channels import Stubs, stubs_for
from raftq.config import ClientSettings, load_settings, normalize_endpoint
from raftq.errors import RaftqRpcError, RaftqUnavailableError

logger = logging.getLogger(__name__)

LEADER_METADATA_KEY = "x-raftq-leader"

# DEADLINE_EXCEEDED is retried too: a node cut off from the majority can hold
# a write until the deadline, and another node may have a quorum. Retrying a
# write is safe because of its request id.
RETRYABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})

# Extra gRPC deadline of a WaitForWakeup call beyond the wait itself, for the
# network and the node's reply.
WAIT_DEADLINE_MARGIN_SECONDS = 5.0

ResponseT = TypeVar("ResponseT")


class RaftqClient:
    """Calls raftq nodes over the process's shared channels.

    Instances are cheap. The channels live in `raftq.channels`, and the only
    state is the index of the endpoint of the last successful call.
    """

    def __init__(self, settings: ClientSettings | None = None) -> None:
        self._settings = settings if settings is not None else load_settings()
        self._current_index = 0

    @property
    def settings(self) -> ClientSettings:
        return self._settings

    # Queue writes.

    async def enqueue(self, request: queue_pb2.EnqueueRequest) -> queue_pb2.EnqueueResponse:
        return await self._write("Enqueue", request, lambda stubs: stubs.queue.Enqueue)

    async def reserve(self, request: queue_pb2.ReserveRequest) -> queue_pb2.ReserveResponse:
        return await self._write("Reserve", request, lambda stubs: stubs.queue.Reserve)

    async def ack(self, request: queue_pb2.ReservationRequest) -> queue_pb2.OperationResponse:
        return await self._write("Ack", request, lambda stubs: stubs.queue.Ack)

    async def release(self, request: queue_pb2.ReleaseRequest) -> queue_pb2.OperationResponse:
        return await self._write("Release", request, lambda stubs: stubs.queue.Release)

    async def renew(self, request: queue_pb2.ReservationRequest) -> queue_pb2.OperationResponse:
        return await self._write("Renew", request, lambda stubs: stubs.queue.Renew)

    async def expire_leases(
        self, request: queue_pb2.ExpireLeasesRequest
    ) -> queue_pb2.ExpireLeasesResponse:
        return await self._write("ExpireLeases", request, lambda stubs: stubs.queue.ExpireLeases)

    async def wake_dispatchers(
        self, request: queue_pb2.WakeDispatchersRequest
    ) -> queue_pb2.WakeupResponse:
        return await self._write(
            "WakeDispatchers", request, lambda stubs: stubs.queue.WakeDispatchers
        )

    # Queue reads.

    async def read_message(
        self, request: queue_pb2.ReadMessageRequest
    ) -> queue_pb2.ReadMessageResponse:
        return await self._read("ReadMessage", request, lambda stubs: stubs.queue.ReadMessage)

    async def read_dead_letter(
        self, request: queue_pb2.ReadDeadLetterRequest
    ) -> queue_pb2.ReadDeadLetterResponse:
        return await self._read(
            "ReadDeadLetter", request, lambda stubs: stubs.queue.ReadDeadLetter
        )

    async def read_wakeup_sequence(
        self, request: queue_pb2.ReadWakeupSequenceRequest
    ) -> queue_pb2.ReadWakeupSequenceResponse:
        return await self._read(
            "ReadWakeupSequence", request, lambda stubs: stubs.queue.ReadWakeupSequence
        )

    async def wait_for_wakeup(
        self, request: queue_pb2.WaitForWakeupRequest
    ) -> queue_pb2.WaitForWakeupResponse:
        """Wait on one node until the pool's sequence passes `request.after`.

        `request.timeout_seconds`, when set, bounds the whole call. A retry on
        another node waits only for the time left. Once none is left, the retry
        sends a timeout of 0, which returns the current sequence at once.
        Unset waits until the caller cancels.
        """
        if not request.HasField("timeout_seconds"):
            return await self._invoke(
                "WaitForWakeup", lambda stubs: stubs.queue.WaitForWakeup, lambda: request, None
            )

        wait_deadline = time.monotonic() + request.timeout_seconds

        def next_request() -> queue_pb2.WaitForWakeupRequest:
            attempt_request = queue_pb2.WaitForWakeupRequest()
            attempt_request.CopyFrom(request)
            attempt_request.timeout_seconds = max(0.0, wait_deadline - time.monotonic())
            return attempt_request

        return await self._invoke(
            "WaitForWakeup",
            lambda stubs: stubs.queue.WaitForWakeup,
            next_request,
            lambda: max(0.0, wait_deadline - time.monotonic()) + WAIT_DEADLINE_MARGIN_SECONDS,
        )

    # Admin.

    async def cluster_status(
        self, endpoint: str | None = None
    ) -> admin_pb2.ClusterStatusResponse:
        """Return the status of `endpoint`'s node, or of any node when None.

        With an endpoint the call is made once, to that node only.
        """
        request = admin_pb2.ClusterStatusRequest()
        if endpoint is None:
            return await self._read(
                "ClusterStatus", request, lambda stubs: stubs.admin.ClusterStatus
            )
        stubs = stubs_for(normalize_endpoint(endpoint))
        try:
            return await stubs.admin.ClusterStatus(
                request, timeout=self._settings.call_timeout_seconds
            )
        except grpc.aio.AioRpcError as error:
            raise _rpc_error("ClusterStatus", error, stubs.endpoint) from error

    async def pool_stats(self, request: admin_pb2.PoolStatsRequest) -> admin_pb2.PoolStatsResponse:
        return await self._read("PoolStats", request, lambda stubs: stubs.admin.PoolStats)

    async def list_dead_letters(
        self, request: admin_pb2.ListDeadLettersRequest
    ) -> admin_pb2.ListDeadLettersResponse:
        return await self._read(
            "ListDeadLetters", request, lambda stubs: stubs.admin.ListDeadLetters
        )

    async def redrive_dead_letters(
        self, request: admin_pb2.RedriveDeadLettersRequest
    ) -> admin_pb2.RedriveDeadLettersResponse:
        return await self._write(
            "RedriveDeadLetters", request, lambda stubs: stubs.admin.RedriveDeadLetters
        )

    async def purge_dead_letters(
        self, request: admin_pb2.PurgeDeadLettersRequest
    ) -> admin_pb2.PurgeDeadLettersResponse:
        return await self._write(
            "PurgeDeadLetters", request, lambda stubs: stubs.admin.PurgeDeadLetters
        )

    # Failover.

    async def _write(
        self,
        method: str,
        request: Any,
        select: Callable[[Stubs], Callable[..., Awaitable[ResponseT]]],
    ) -> ResponseT:
        if not request.options.request_id:
            request.options.request_id = str(uuid.uuid4())
        timeout = self._settings.call_timeout_seconds
        return await self._invoke(method, select, lambda: request, lambda: timeout)

    async def _read(
        self,
        method: str,
        request: Any,
        select: Callable[[Stubs], Callable[..., Awaitable[ResponseT]]],
    ) -> ResponseT:
        timeout = self._settings.call_timeout_seconds
        return await self._invoke(method, select, lambda: request, lambda: timeout)

    async def _invoke(
        self,
        method: str,
        select: Callable[[Stubs], Callable[..., Awaitable[ResponseT]]],
        request_for_attempt: Callable[[], Any],
        timeout_for_attempt: Callable[[], float] | None,
    ) -> ResponseT:
        endpoints = self._settings.endpoints
        index = self._current_index % len(endpoints)
        failed_endpoints: set[str] = set()

        for attempt in range(1, self._settings.max_attempts + 1):
            endpoint = endpoints[index]
            stubs = stubs_for(endpoint)
            timeout = timeout_for_attempt() if timeout_for_attempt is not None else None
            try:
                response = await select(stubs)(request_for_attempt(), timeout=timeout)
            except grpc.aio.AioRpcError as error:
                if error.code() not in RETRYABLE_CODES:
                    raise _rpc_error(method, error, endpoint) from error

                if attempt == self._settings.max_attempts:
                    logger.warning(
                        "raftq call failed on every attempt: rpc=%s endpoint=%s "
                        "attempts=%d code=%s details=%s",
                        method,
                        endpoint,
                        attempt,
                        error.code().name,
                        error.details(),
                    )
                    raise RaftqUnavailableError(
                        method, error.code(), error.details() or "", endpoint, attempt
                    ) from error

                failed_endpoints.add(endpoint)
                index = self._next_index(index, _leader_hint(error), failed_endpoints)
                backoff = self._backoff_seconds(attempt)
                logger.info(
                    "retrying raftq call: rpc=%s endpoint=%s code=%s attempt=%d "
                    "next_endpoint=%s backoff_seconds=%.3f",
                    method,
                    endpoint,
                    error.code().name,
                    attempt,
                    endpoints[index],
                    backoff,
                )
                await asyncio.sleep(backoff)
                continue

            self._current_index = index
            return response

        raise AssertionError("unreachable: the last attempt returns or raises")

    def _next_index(self, index: int, leader_hint: str | None, failed_endpoints: set[str]) -> int:
        endpoints = self._settings.endpoints
        # A hint naming an address outside the configured endpoints is ignored,
        # so the client only ever connects where the operator pointed it. A
        # hint naming an endpoint that already failed in this call is ignored
        # too: a follower names a stopped leader until a new one is elected.
        if (
            leader_hint is not None
            and leader_hint in endpoints
            and leader_hint not in failed_endpoints
        ):
            return endpoints.index(leader_hint)
        return (index + 1) % len(endpoints)

    def _backoff_seconds(self, attempt: int) -> float:
        settings = self._settings
        ceiling = min(settings.max_backoff_seconds, settings.initial_backoff_seconds * 2 ** (attempt - 1))
        return ceiling * random.uniform(0.5, 1.0)


def _leader_hint(error: grpc.aio.AioRpcError) -> str | None:
    for metadata in (error.trailing_metadata(), error.initial_metadata()):
        if not metadata:
            continue
        for key, value in metadata:
            if key == LEADER_METADATA_KEY and value:
                text = value.decode() if isinstance(value, bytes) else str(value)
                return normalize_endpoint(text)
    return None


def _rpc_error(method: str, error: grpc.aio.AioRpcError, endpoint: str) -> RaftqRpcError:
    return RaftqRpcError(method, error.code(), error.details() or "", endpoint)
