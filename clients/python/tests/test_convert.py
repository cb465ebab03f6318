from datetime import datetime, timedelta, timezone
from uuid import UUID, uuid4

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from raftq import _convert
from raftq._proto.raftq.v1 import queue_pb2


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 5, 20, 12, 0, tzinfo=timezone.utc),
        datetime(2026, 5, 20, 12, 0, 0, 999_999, tzinfo=timezone.utc),
        datetime(1969, 12, 31, 23, 59, 59, 1, tzinfo=timezone.utc),
        datetime(2026, 5, 20, 14, 0, 0, 123_456, tzinfo=timezone(timedelta(hours=2))),
    ],
)
def test_timestamp_round_trip_is_exact(moment: datetime) -> None:
    timestamp = _convert.timestamp_from_datetime(moment)

    assert _convert.datetime_from_timestamp(timestamp) == moment


def test_timestamp_of_utc_moment_has_expected_fields() -> None:
    timestamp = _convert.timestamp_from_datetime(
        datetime(1970, 1, 1, 0, 0, 1, 250_000, tzinfo=timezone.utc)
    )

    assert timestamp.seconds == 1
    assert timestamp.nanos == 250_000_000


def test_timestamp_rejects_naive_datetime() -> None:
    with pytest.raises(ValueError, match="no time zone"):
        _convert.timestamp_from_datetime(datetime(2026, 5, 20, 12, 0))


def test_datetime_from_timestamp_truncates_nanoseconds() -> None:
    moment = _convert.datetime_from_timestamp(Timestamp(seconds=0, nanos=1_999))

    assert moment == datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=timezone.utc)


def test_json_object_text_keeps_value_types() -> None:
    identifier = uuid4()

    text = _convert.json_object_text({"count": 3, "id": identifier, "nested": {"ok": True}})

    assert text == f'{{"count":3,"id":"{identifier}","nested":{{"ok":true}}}}'


def _cleanup_message(**overrides: object) -> queue_pb2.CleanupMessage:
    message = queue_pb2.CleanupMessage(
        message_id=str(uuid4()),
        idempotency_key="flow-run-cleanup",
        work_pool_id=str(uuid4()),
        kind="cancelling_timeout_teardown.v1",
        target='{"flow_run_id":"abc","attempt":2}',
        data="{}",
        created_at=Timestamp(seconds=1_780_000_000, nanos=123_456_000),
        updated_at=Timestamp(seconds=1_780_000_005),
        delivery_count=1,
    )
    for name, value in overrides.items():
        setattr(message, name, value)
    return message


def test_message_from_proto_maps_every_field() -> None:
    work_queue_id = uuid4()
    proto = _cleanup_message(work_queue_id=str(work_queue_id))

    message = _convert.message_from_proto(proto)

    assert message.message_id == UUID(proto.message_id)
    assert message.work_pool_id == UUID(proto.work_pool_id)
    assert message.work_queue_id == work_queue_id
    assert message.idempotency_key == "flow-run-cleanup"
    assert message.kind == "cancelling_timeout_teardown.v1"
    assert message.target == {"flow_run_id": "abc", "attempt": 2}
    assert message.data == {}
    assert message.created_at == datetime(2026, 5, 28, 20, 26, 40, 123_456, tzinfo=timezone.utc)
    assert message.updated_at == datetime(2026, 5, 28, 20, 26, 45, tzinfo=timezone.utc)
    assert message.delivery_count == 1


def test_message_from_proto_without_work_queue_is_none() -> None:
    message = _convert.message_from_proto(_cleanup_message())

    assert message.work_queue_id is None


def test_reservation_from_proto_carries_token_and_lease() -> None:
    proto = queue_pb2.Reservation(
        message=_cleanup_message(),
        reservation_token="t" * 43,
        lease_expires_at=Timestamp(seconds=1_780_000_030),
    )

    reservation = _convert.reservation_from_proto(proto)

    assert reservation.reservation_token == "t" * 43
    assert reservation.lease_expires_at == datetime(2026, 5, 28, 20, 27, 10, tzinfo=timezone.utc)
    assert reservation.delivery_count == 1


def test_dead_letter_from_proto_maps_optional_fields() -> None:
    with_reservation = queue_pb2.DeadLetter(
        message=_cleanup_message(),
        reason="max_delivery_attempts_reached",
        final_delivery_count=3,
        moved_at=Timestamp(seconds=1_780_000_100),
        reservation_token="token",
        lease_expires_at=Timestamp(seconds=1_780_000_090),
        release_reason="unsupported_cleanup_kind",
    )
    without_reservation = queue_pb2.DeadLetter(
        message=_cleanup_message(),
        reason="max_delivery_attempts_reached",
        final_delivery_count=3,
        moved_at=Timestamp(seconds=1_780_000_100),
    )

    full = _convert.dead_letter_from_proto(with_reservation)
    bare = _convert.dead_letter_from_proto(without_reservation)

    assert full.reservation_token == "token"
    assert full.lease_expires_at == datetime(2026, 5, 28, 20, 28, 10, tzinfo=timezone.utc)
    assert full.release_reason == "unsupported_cleanup_kind"
    assert full.final_delivery_count == 3
    assert bare.reservation_token is None
    assert bare.lease_expires_at is None
    assert bare.release_reason is None


def test_operation_result_from_proto_leaves_unset_fields_none() -> None:
    accepted = _convert.operation_result_from_proto(
        queue_pb2.OperationResult(message_id=str(uuid4()), operation="ack", status="accepted")
    )
    rejected = _convert.operation_result_from_proto(
        queue_pb2.OperationResult(
            message_id=str(uuid4()),
            operation="renew",
            status="invalid_token",
            reason="reservation_token_mismatch",
        )
    )

    assert accepted.lease_expires_at is None
    assert accepted.reason is None
    assert accepted.dead_letter is None
    assert rejected.status == "invalid_token"
    assert rejected.reason == "reservation_token_mismatch"
