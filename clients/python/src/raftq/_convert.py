"""Conversions between raftq's protobuf messages and Prefect's queue models.

Timestamps are converted through integer seconds and microseconds, never a
float, so a time survives the round trip exactly to the microsecond.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any
from uuid import UUID

from google.protobuf.timestamp_pb2 import Timestamp
from pydantic_core import to_jsonable_python

from prefect.server.worker_communication.cleanup_queue import (
    CleanupQueueDeadLetter,
    CleanupQueueLeaseExpiryResult,
    CleanupQueueMessage,
    CleanupQueueOperationResult,
    CleanupQueueReservation,
)
from raftq._proto.raftq.v1 import queue_pb2

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def timestamp_from_datetime(moment: datetime) -> Timestamp:
    """Convert an aware datetime to a Timestamp, exact to the microsecond.

    Raises ValueError for a naive datetime, whose zone is unknown.
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"datetime {moment!r} has no time zone; pass an aware datetime")
    delta = moment - _EPOCH
    return Timestamp(
        seconds=delta.days * 86_400 + delta.seconds,
        nanos=delta.microseconds * 1_000,
    )


def datetime_from_timestamp(timestamp: Timestamp) -> datetime:
    """Convert a Timestamp to an aware UTC datetime, truncated to the microsecond."""
    return _EPOCH + timedelta(seconds=timestamp.seconds, microseconds=timestamp.nanos // 1_000)


def json_object_text(value: Mapping[str, Any]) -> str:
    """Serialize a payload mapping as JSON object text.

    Values JSON has no type for (UUID, datetime, ...) are written the way
    pydantic writes them, so a UUID comes back as its string.
    """
    return json.dumps(dict(value), default=to_jsonable_python, separators=(",", ":"))


def message_fields(message: queue_pb2.CleanupMessage) -> dict[str, Any]:
    """Return the fields of a CleanupQueueMessage built from `message`."""
    return {
        "message_id": UUID(message.message_id),
        "idempotency_key": message.idempotency_key,
        "work_pool_id": UUID(message.work_pool_id),
        "work_queue_id": (
            UUID(message.work_queue_id) if message.HasField("work_queue_id") else None
        ),
        "kind": message.kind,
        "target": json.loads(message.target) if message.target else {},
        "data": json.loads(message.data) if message.data else {},
        "created_at": datetime_from_timestamp(message.created_at),
        "updated_at": datetime_from_timestamp(message.updated_at),
        "delivery_count": message.delivery_count,
    }


def message_from_proto(message: queue_pb2.CleanupMessage) -> CleanupQueueMessage:
    return CleanupQueueMessage(**message_fields(message))


def reservation_from_proto(reservation: queue_pb2.Reservation) -> CleanupQueueReservation:
    return CleanupQueueReservation(
        **message_fields(reservation.message),
        reservation_token=reservation.reservation_token,
        lease_expires_at=datetime_from_timestamp(reservation.lease_expires_at),
    )


def dead_letter_from_proto(dead_letter: queue_pb2.DeadLetter) -> CleanupQueueDeadLetter:
    return CleanupQueueDeadLetter(
        message=message_from_proto(dead_letter.message),
        reason=dead_letter.reason,
        final_delivery_count=dead_letter.final_delivery_count,
        moved_at=datetime_from_timestamp(dead_letter.moved_at),
        reservation_token=(
            dead_letter.reservation_token if dead_letter.HasField("reservation_token") else None
        ),
        lease_expires_at=(
            datetime_from_timestamp(dead_letter.lease_expires_at)
            if dead_letter.HasField("lease_expires_at")
            else None
        ),
        release_reason=(
            dead_letter.release_reason if dead_letter.HasField("release_reason") else None
        ),
    )


def operation_result_from_proto(
    result: queue_pb2.OperationResult,
) -> CleanupQueueOperationResult:
    return CleanupQueueOperationResult(
        message_id=UUID(result.message_id),
        operation=result.operation,
        status=result.status,
        lease_expires_at=(
            datetime_from_timestamp(result.lease_expires_at)
            if result.HasField("lease_expires_at")
            else None
        ),
        reason=result.reason if result.HasField("reason") else None,
        dead_letter=(
            dead_letter_from_proto(result.dead_letter) if result.HasField("dead_letter") else None
        ),
    )


def lease_expiry_result_from_proto(
    response: queue_pb2.ExpireLeasesResponse,
) -> CleanupQueueLeaseExpiryResult:
    return CleanupQueueLeaseExpiryResult(
        redelivered=[message_from_proto(message) for message in response.redelivered],
        dead_lettered=[dead_letter_from_proto(entry) for entry in response.dead_lettered],
    )
