"""Prefect cleanup-queue storage backed by a raftq cluster.

Point a Prefect server (3.9 or later) at it with

    PREFECT_SERVER_WORKER_CHANNEL_CLEANUP_QUEUE_STORAGE=raftq.prefect_storage
    RAFTQ_ENDPOINTS=127.0.0.1:7000,127.0.0.1:7010,127.0.0.1:7020

Each interface call is one RPC. Writes carry Prefect's cleanup policy
settings, read once per call, as the request's policy overrides, so the
cluster applies the same lease, retry and retention policy as Prefect's own
backends. With RAFTQ_PREFECT_CALLER_CLOCK=1 every write also carries
Prefect's clock as the time of the operation; the nodes must then run with
`--accept-caller-clock`.
"""

from __future__ import annotations

import logging
import typing
from collections.abc import Iterable, Mapping
from typing import Any, NoReturn
from uuid import UUID

import grpc

from prefect.client.schemas.worker_channel import CleanupKind
from prefect.server.worker_communication.cleanup_queue import (
    CleanupQueueDeadLetter,
    CleanupQueueLeaseExpiryResult,
    CleanupQueueMessage,
    CleanupQueueOperation,
    CleanupQueueOperationResult,
    CleanupQueueReservation,
    CleanupQueueWakeup,
    record_cleanup_queue_dead_letter,
    record_cleanup_queue_lease_expiry_result,
    record_cleanup_queue_operation,
)
from prefect.server.worker_communication.cleanup_queue import (
    WorkerCleanupQueue as _WorkerCleanupQueue,
)
from prefect.settings.context import get_current_settings
from prefect.types._datetime import now
from raftq import _convert
from raftq._proto.raftq.v1 import queue_pb2
from raftq.client import RaftqClient
from raftq.config import caller_clock_enabled
from raftq.errors import RaftqRpcError

logger = logging.getLogger(__name__)

# The `source` label of this backend's dead-letter log lines.
DEAD_LETTER_SOURCE = "raftq_cleanup_queue"

DEFAULT_EXPIRE_LEASE_LIMIT = 100

_SUPPORTED_KINDS = frozenset(typing.get_args(CleanupKind))

_default_client: RaftqClient | None = None
_default_caller_clock: bool | None = None


def _shared_client() -> RaftqClient:
    # One client per process, so that every queue instance Prefect builds
    # starts at the endpoint of the last successful call.
    global _default_client
    if _default_client is None:
        _default_client = RaftqClient()
    return _default_client


def _shared_caller_clock() -> bool:
    global _default_caller_clock
    if _default_caller_clock is None:
        _default_caller_clock = caller_clock_enabled()
    return _default_caller_clock


class WorkerCleanupQueue(_WorkerCleanupQueue):
    """Cleanup-queue storage on a raftq cluster, for any number of Prefect servers.

    Built with no arguments, as Prefect builds it, the queue uses the process's
    client (endpoints and retry options from RAFTQ_* variables) and takes the
    caller-clock mode from RAFTQ_PREFECT_CALLER_CLOCK. Tests and embedding
    code may pass their own client and mode.
    """

    def __init__(
        self, client: RaftqClient | None = None, *, caller_clock: bool | None = None
    ) -> None:
        self._client = client if client is not None else _shared_client()
        self._caller_clock = caller_clock if caller_clock is not None else _shared_caller_clock()

    async def enqueue(
        self,
        *,
        message_id: UUID,
        idempotency_key: str,
        work_pool_id: UUID,
        kind: CleanupKind,
        target: Mapping[str, Any],
        data: Mapping[str, Any] | None = None,
        work_queue_id: UUID | None = None,
    ) -> CleanupQueueMessage:
        if not idempotency_key:
            raise ValueError("idempotency_key must be non-empty")
        if kind not in _SUPPORTED_KINDS:
            raise ValueError(
                f"unsupported cleanup kind {kind!r}; expected one of {sorted(_SUPPORTED_KINDS)}"
            )

        request = queue_pb2.EnqueueRequest(
            options=self._write_options(),
            message_id=str(message_id),
            idempotency_key=idempotency_key,
            work_pool_id=str(work_pool_id),
            kind=str(kind),
            target=_convert.json_object_text(target),
        )
        if work_queue_id is not None:
            request.work_queue_id = str(work_queue_id)
        if data is not None:
            request.data = _convert.json_object_text(data)

        try:
            response = await self._client.enqueue(request)
        except RaftqRpcError as error:
            if error.code == grpc.StatusCode.ALREADY_EXISTS:
                raise ValueError(
                    "message_id is already associated with a different cleanup message: "
                    f"{error.details}"
                ) from error
            _reraise(error)

        record_cleanup_queue_operation(
            "enqueue",
            status="duplicate" if response.duplicate else "accepted",
            work_pool_id=work_pool_id,
            message_id=message_id,
            cleanup_kind=str(kind),
        )
        return _convert.message_from_proto(response.message)

    async def reserve(
        self,
        *,
        work_pool_id: UUID,
        cleanup_kinds: Iterable[CleanupKind] | None = None,
        preferred_work_queue_ids: Iterable[UUID] | None = None,
        allow_fallback_to_any_queue: bool = True,
    ) -> CleanupQueueReservation | None:
        request = queue_pb2.ReserveRequest(
            options=self._write_options(),
            work_pool_id=str(work_pool_id),
            allow_fallback_to_any_queue=allow_fallback_to_any_queue,
        )
        if cleanup_kinds is not None:
            # An empty filter is sent as set-but-empty: it matches nothing.
            request.cleanup_kinds.SetInParent()
            request.cleanup_kinds.kinds.extend(str(kind) for kind in cleanup_kinds)
        if preferred_work_queue_ids is not None:
            request.preferred_work_queue_ids.SetInParent()
            request.preferred_work_queue_ids.work_queue_ids.extend(
                str(work_queue_id) for work_queue_id in preferred_work_queue_ids
            )

        try:
            response = await self._client.reserve(request)
        except RaftqRpcError as error:
            _reraise(error)

        self._record_reserve_side_effects(response)

        if not response.HasField("reservation"):
            return None
        reservation = _convert.reservation_from_proto(response.reservation)
        record_cleanup_queue_operation(
            "reserve",
            status="accepted",
            work_pool_id=work_pool_id,
            message_id=reservation.message_id,
            cleanup_kind=str(reservation.kind),
        )
        return reservation

    async def ack(
        self,
        *,
        work_pool_id: UUID,
        message_id: UUID,
        reservation_token: str,
    ) -> CleanupQueueOperationResult:
        request = queue_pb2.ReservationRequest(
            options=self._write_options(),
            work_pool_id=str(work_pool_id),
            message_id=str(message_id),
            reservation_token=reservation_token,
        )
        return await self._reservation_operation("ack", work_pool_id, message_id, request)

    async def release(
        self,
        *,
        work_pool_id: UUID,
        message_id: UUID,
        reservation_token: str,
        reason: str,
    ) -> CleanupQueueOperationResult:
        if not reason:
            raise ValueError("release reason must be non-empty")

        request = queue_pb2.ReleaseRequest(
            options=self._write_options(),
            work_pool_id=str(work_pool_id),
            message_id=str(message_id),
            reservation_token=reservation_token,
            reason=reason,
        )
        return await self._reservation_operation("release", work_pool_id, message_id, request)

    async def renew(
        self,
        *,
        work_pool_id: UUID,
        message_id: UUID,
        reservation_token: str,
    ) -> CleanupQueueOperationResult:
        request = queue_pb2.ReservationRequest(
            options=self._write_options(),
            work_pool_id=str(work_pool_id),
            message_id=str(message_id),
            reservation_token=reservation_token,
        )
        return await self._reservation_operation("renew", work_pool_id, message_id, request)

    async def expire_leases(
        self,
        *,
        limit: int = DEFAULT_EXPIRE_LEASE_LIMIT,
        work_pool_id: UUID | None = None,
    ) -> CleanupQueueLeaseExpiryResult:
        if limit < 1:
            raise ValueError("limit must be at least 1")

        request = queue_pb2.ExpireLeasesRequest(options=self._write_options(), limit=limit)
        if work_pool_id is not None:
            request.work_pool_id = str(work_pool_id)

        try:
            response = await self._client.expire_leases(request)
        except RaftqRpcError as error:
            _reraise(error)

        result = _convert.lease_expiry_result_from_proto(response)
        for dead_letter in result.dead_lettered:
            record_cleanup_queue_dead_letter(dead_letter, source=DEAD_LETTER_SOURCE)
        record_cleanup_queue_lease_expiry_result(result)
        return result

    async def read_message(
        self, *, work_pool_id: UUID, message_id: UUID
    ) -> CleanupQueueMessage | None:
        response = await self._client.read_message(
            queue_pb2.ReadMessageRequest(work_pool_id=str(work_pool_id), message_id=str(message_id))
        )
        if not response.HasField("message"):
            return None
        return _convert.message_from_proto(response.message)

    async def read_dead_letter(
        self, *, work_pool_id: UUID, message_id: UUID
    ) -> CleanupQueueDeadLetter | None:
        response = await self._client.read_dead_letter(
            queue_pb2.ReadDeadLetterRequest(
                work_pool_id=str(work_pool_id), message_id=str(message_id)
            )
        )
        if not response.HasField("dead_letter"):
            return None
        return _convert.dead_letter_from_proto(response.dead_letter)

    async def wake_dispatchers(self, work_pool_id: UUID) -> CleanupQueueWakeup:
        response = await self._client.wake_dispatchers(
            queue_pb2.WakeDispatchersRequest(
                options=self._write_options(), work_pool_id=str(work_pool_id)
            )
        )
        return CleanupQueueWakeup(work_pool_id=work_pool_id, sequence=response.sequence)

    async def read_wakeup_sequence(self, work_pool_id: UUID) -> int:
        response = await self._client.read_wakeup_sequence(
            queue_pb2.ReadWakeupSequenceRequest(work_pool_id=str(work_pool_id))
        )
        return response.sequence

    async def wait_for_wakeup(
        self,
        work_pool_id: UUID,
        *,
        after: int = 0,
        timeout: float | None = None,
    ) -> CleanupQueueWakeup | None:
        request = queue_pb2.WaitForWakeupRequest(work_pool_id=str(work_pool_id), after=after)
        if timeout is not None:
            request.timeout_seconds = max(0.0, float(timeout))

        response = await self._client.wait_for_wakeup(request)
        if not response.woken:
            return None
        return CleanupQueueWakeup(work_pool_id=work_pool_id, sequence=response.sequence)

    async def _reservation_operation(
        self,
        operation: CleanupQueueOperation,
        work_pool_id: UUID,
        message_id: UUID,
        request: queue_pb2.ReservationRequest | queue_pb2.ReleaseRequest,
    ) -> CleanupQueueOperationResult:
        call = {
            "ack": self._client.ack,
            "release": self._client.release,
            "renew": self._client.renew,
        }[operation]
        try:
            response = await call(request)
        except RaftqRpcError as error:
            _reraise(error)

        result = _convert.operation_result_from_proto(response.result)
        if result.dead_letter is not None:
            record_cleanup_queue_dead_letter(result.dead_letter, source=DEAD_LETTER_SOURCE)
        record_cleanup_queue_operation(
            operation,
            status=result.status,
            work_pool_id=work_pool_id,
            message_id=message_id,
        )
        return result

    def _record_reserve_side_effects(self, response: queue_pb2.ReserveResponse) -> None:
        for entry in response.dead_lettered:
            dead_letter = _convert.dead_letter_from_proto(entry)
            record_cleanup_queue_dead_letter(dead_letter, source=DEAD_LETTER_SOURCE)

        # Only the expired leases count as lease expirations; a candidate
        # skipped at the maximum delivery attempts is not one.
        record_cleanup_queue_lease_expiry_result(
            CleanupQueueLeaseExpiryResult(
                redelivered=[
                    _convert.message_from_proto(message) for message in response.redelivered
                ],
                dead_lettered=[
                    _convert.dead_letter_from_proto(entry)
                    for entry in response.lease_expiry_dead_lettered
                ],
            )
        )

    def _write_options(self) -> queue_pb2.WriteOptions:
        options = queue_pb2.WriteOptions(policy=_policy_overrides())
        if self._caller_clock:
            # `now` is looked up in this module at call time so that tests can
            # replace it with a controllable clock.
            options.now.CopyFrom(_convert.timestamp_from_datetime(now("UTC")))
        return options


def _policy_overrides() -> queue_pb2.PolicyOverrides:
    worker_channel = get_current_settings().server.worker_channel
    policy = queue_pb2.PolicyOverrides(
        lease_seconds=worker_channel.cleanup_lease_seconds,
        max_delivery_attempts=worker_channel.cleanup_max_delivery_attempts,
    )
    retention_seconds = worker_channel.cleanup_completed_idempotency_retention_seconds
    if retention_seconds is None:
        policy.completed_idempotency_retention.keep = True
    else:
        policy.completed_idempotency_retention.seconds = retention_seconds
    return policy


def _reraise(error: RaftqRpcError) -> NoReturn:
    # Prefect's backends raise ValueError for invalid input; every other
    # status stays a RaftqRpcError.
    if error.code == grpc.StatusCode.INVALID_ARGUMENT:
        raise ValueError(error.details) from error
    raise error
