"""What the Prefect storage module sends, checked on a scripted node.

The contract behaviour itself is tested against a real cluster in
test_standard_suite.py. These tests cover the checks made before any RPC and
the fields of the requests.
"""

from collections.abc import AsyncIterator
from datetime import datetime, timezone
from uuid import uuid4

import grpc
import pytest

from prefect.client.schemas.worker_channel import CANCELLING_TIMEOUT_TEARDOWN
from prefect.settings import (
    PREFECT_SERVER_WORKER_CHANNEL_CLEANUP_COMPLETED_IDEMPOTENCY_RETENTION_SECONDS,
    PREFECT_SERVER_WORKER_CHANNEL_CLEANUP_LEASE_SECONDS,
    PREFECT_SERVER_WORKER_CHANNEL_CLEANUP_MAX_DELIVERY_ATTEMPTS,
    temporary_settings,
)
from raftq import ClientSettings, RaftqClient, prefect_storage
from raftq._convert import datetime_from_timestamp
from scripted_node import ScriptedNode, enqueued, start_scripted_node, status


@pytest.fixture
async def node() -> AsyncIterator[ScriptedNode]:
    started = await start_scripted_node()
    yield started
    assert started.server is not None
    await started.server.stop(grace=None)


def _queue(node: ScriptedNode, caller_clock: bool = False) -> prefect_storage.WorkerCleanupQueue:
    client = RaftqClient(
        ClientSettings(endpoints=(node.endpoint,), max_attempts=1, call_timeout_seconds=2.0)
    )
    return prefect_storage.WorkerCleanupQueue(client, caller_clock=caller_clock)


async def _enqueue(queue: prefect_storage.WorkerCleanupQueue, **overrides):
    arguments = {
        "message_id": uuid4(),
        "idempotency_key": "flow-run-cleanup",
        "work_pool_id": uuid4(),
        "kind": CANCELLING_TIMEOUT_TEARDOWN,
        "target": {"flow_run_id": str(uuid4())},
    }
    arguments.update(overrides)
    return await queue.enqueue(**arguments)


async def test_empty_idempotency_key_rejected_before_rpc(node: ScriptedNode) -> None:
    with pytest.raises(ValueError, match="idempotency_key must be non-empty"):
        await _enqueue(_queue(node), idempotency_key="")

    assert node.requests == []


async def test_unknown_kind_rejected_before_rpc(node: ScriptedNode) -> None:
    with pytest.raises(ValueError, match="unsupported cleanup kind"):
        await _enqueue(_queue(node), kind="not_a_kind.v1")

    assert node.requests == []


async def test_empty_release_reason_rejected_before_rpc(node: ScriptedNode) -> None:
    with pytest.raises(ValueError, match="release reason must be non-empty"):
        await _queue(node).release(
            work_pool_id=uuid4(), message_id=uuid4(), reservation_token="token", reason=""
        )

    assert node.requests == []


@pytest.mark.parametrize("limit", [0, -1])
async def test_expire_limit_below_one_rejected_before_rpc(node: ScriptedNode, limit: int) -> None:
    with pytest.raises(ValueError, match="limit must be at least 1"):
        await _queue(node).expire_leases(limit=limit)

    assert node.requests == []


async def test_enqueue_already_exists_raises_value_error(node: ScriptedNode) -> None:
    node.replies.append(status(grpc.StatusCode.ALREADY_EXISTS, "message_id is taken"))

    with pytest.raises(ValueError, match="already associated with a different cleanup message"):
        await _enqueue(_queue(node))


async def test_enqueue_invalid_argument_raises_value_error(node: ScriptedNode) -> None:
    node.replies.append(status(grpc.StatusCode.INVALID_ARGUMENT, "target: must be an object"))

    with pytest.raises(ValueError, match="target: must be an object"):
        await _enqueue(_queue(node))


async def test_enqueue_sends_prefect_policy_settings(node: ScriptedNode) -> None:
    node.replies.append(enqueued())

    with temporary_settings(
        {
            PREFECT_SERVER_WORKER_CHANNEL_CLEANUP_LEASE_SECONDS: 12.5,
            PREFECT_SERVER_WORKER_CHANNEL_CLEANUP_MAX_DELIVERY_ATTEMPTS: 4,
            PREFECT_SERVER_WORKER_CHANNEL_CLEANUP_COMPLETED_IDEMPOTENCY_RETENTION_SECONDS: 60.0,
        }
    ):
        await _enqueue(_queue(node))

    policy = node.requests[0][1].options.policy
    assert policy.lease_seconds == 12.5
    assert policy.max_delivery_attempts == 4
    assert policy.completed_idempotency_retention.WhichOneof("retention") == "seconds"
    assert policy.completed_idempotency_retention.seconds == 60.0


async def test_unset_retention_is_sent_as_keep(node: ScriptedNode) -> None:
    node.replies.append(enqueued())

    await _enqueue(_queue(node))

    retention = node.requests[0][1].options.policy.completed_idempotency_retention
    assert retention.WhichOneof("retention") == "keep"
    assert retention.keep is True


async def test_enqueue_request_fields(node: ScriptedNode) -> None:
    node.replies.append(enqueued())
    message_id = uuid4()
    work_pool_id = uuid4()
    work_queue_id = uuid4()

    message = await _enqueue(
        _queue(node),
        message_id=message_id,
        work_pool_id=work_pool_id,
        work_queue_id=work_queue_id,
        target={"flow_run_id": "abc", "attempt": 2},
        data={"resources": [1, 2]},
    )

    request = node.requests[0][1]
    assert request.message_id == str(message_id)
    assert request.work_pool_id == str(work_pool_id)
    assert request.work_queue_id == str(work_queue_id)
    assert request.kind == CANCELLING_TIMEOUT_TEARDOWN
    assert request.target == '{"flow_run_id":"abc","attempt":2}'
    assert request.data == '{"resources":[1,2]}'
    assert not request.options.HasField("now")
    assert message.target == {"flow_run_id": "abc", "attempt": 2}


async def test_enqueue_without_data_leaves_it_unset(node: ScriptedNode) -> None:
    node.replies.append(enqueued())

    message = await _enqueue(_queue(node))

    assert not node.requests[0][1].HasField("data")
    assert message.data == {}


async def test_caller_clock_stamps_patched_now(
    node: ScriptedNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    moment = datetime(2026, 5, 20, 12, 0, 0, 123_456, tzinfo=timezone.utc)
    monkeypatch.setattr(prefect_storage, "now", lambda zone: moment)
    node.replies.append(enqueued())

    await _enqueue(_queue(node, caller_clock=True))

    options = node.requests[0][1].options
    assert options.HasField("now")
    assert datetime_from_timestamp(options.now) == moment
