"""Retry and failover of RaftqClient against scripted nodes on 127.0.0.1."""

import socket
import time
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest

from raftq import ClientSettings, RaftqClient, RaftqRpcError, RaftqUnavailableError
from raftq._proto.raftq.v1 import queue_pb2
from scripted_node import ScriptedNode, enqueued, start_scripted_node, status, unavailable


@pytest.fixture
async def nodes() -> AsyncIterator[list[ScriptedNode]]:
    started = [await start_scripted_node() for _ in range(3)]
    yield started
    for node in started:
        assert node.server is not None
        await node.server.stop(grace=None)


def _closed_port_endpoint() -> str:
    # Bind and release a port so that nothing listens on it during the test.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


def _client(endpoints: list[str], max_attempts: int = 5) -> RaftqClient:
    return RaftqClient(
        ClientSettings(
            endpoints=tuple(endpoints),
            call_timeout_seconds=2.0,
            max_attempts=max_attempts,
            initial_backoff_seconds=0.01,
            max_backoff_seconds=0.05,
        )
    )


def _enqueue_request() -> queue_pb2.EnqueueRequest:
    return queue_pb2.EnqueueRequest(
        message_id=str(uuid.uuid4()),
        idempotency_key="key",
        work_pool_id=str(uuid.uuid4()),
        kind="cancelling_timeout_teardown.v1",
        target="{}",
    )


async def test_write_follows_leader_hint(nodes: list[ScriptedNode]) -> None:
    first, second, leader = nodes
    first.replies.append(unavailable(leader=f"http://{leader.endpoint}"))
    leader.replies.append(enqueued())
    client = _client([first.endpoint, second.endpoint, leader.endpoint])

    response = await client.enqueue(_enqueue_request())

    assert response.message.idempotency_key == "key"
    assert len(first.requests) == 1
    assert second.requests == []
    assert len(leader.requests) == 1


async def test_hint_to_failed_endpoint_is_ignored(nodes: list[ScriptedNode]) -> None:
    stopped_leader, follower, new_leader = nodes
    stopped_leader.replies.append(unavailable())
    follower.replies.append(unavailable(leader=stopped_leader.endpoint))
    new_leader.replies.append(enqueued())
    client = _client([node.endpoint for node in nodes])

    await client.enqueue(_enqueue_request())

    assert len(stopped_leader.requests) == 1
    assert len(follower.requests) == 1
    assert len(new_leader.requests) == 1


async def test_retries_keep_one_request_id(nodes: list[ScriptedNode]) -> None:
    first, second, third = nodes
    first.replies.append(unavailable())
    second.replies.append(status(grpc.StatusCode.DEADLINE_EXCEEDED, "no quorum in time"))
    third.replies.append(enqueued())
    client = _client([node.endpoint for node in nodes])

    await client.enqueue(_enqueue_request())

    request_ids = [
        request.options.request_id for node in nodes for _, request in node.requests
    ]
    assert len(request_ids) == 3
    assert len(set(request_ids)) == 1
    assert uuid.UUID(request_ids[0]).version == 4


async def test_each_write_gets_fresh_request_id(nodes: list[ScriptedNode]) -> None:
    node = nodes[0]
    node.replies.extend([enqueued(), enqueued()])
    client = _client([node.endpoint])

    await client.enqueue(_enqueue_request())
    await client.enqueue(_enqueue_request())

    first_id = node.requests[0][1].options.request_id
    second_id = node.requests[1][1].options.request_id
    assert first_id
    assert second_id
    assert first_id != second_id


async def test_unreachable_endpoint_fails_over(nodes: list[ScriptedNode]) -> None:
    live = nodes[0]
    live.replies.append(enqueued())
    client = _client([_closed_port_endpoint(), live.endpoint])

    response = await client.enqueue(_enqueue_request())

    assert response.message.kind == "cancelling_timeout_teardown.v1"
    assert len(live.requests) == 1


async def test_client_sticks_to_endpoint_that_answered(nodes: list[ScriptedNode]) -> None:
    first, second, _ = nodes
    first.replies.append(unavailable())
    second.replies.extend([enqueued(), enqueued()])
    client = _client([first.endpoint, second.endpoint])

    await client.enqueue(_enqueue_request())
    await client.enqueue(_enqueue_request())

    assert len(first.requests) == 1
    assert len(second.requests) == 2


async def test_non_retryable_status_raises_at_once(nodes: list[ScriptedNode]) -> None:
    first, second, _ = nodes
    first.replies.append(status(grpc.StatusCode.INVALID_ARGUMENT, "kind: must be non-empty"))
    client = _client([first.endpoint, second.endpoint])

    with pytest.raises(RaftqRpcError) as raised:
        await client.enqueue(_enqueue_request())

    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details == "kind: must be non-empty"
    assert raised.value.endpoint == first.endpoint
    assert second.requests == []


async def test_attempts_are_bounded(nodes: list[ScriptedNode]) -> None:
    for node in nodes:
        node.replies.extend(unavailable() for _ in range(3))
    client = _client([node.endpoint for node in nodes], max_attempts=4)

    with pytest.raises(RaftqUnavailableError) as raised:
        await client.enqueue(_enqueue_request())

    assert raised.value.attempts == 4
    assert raised.value.code == grpc.StatusCode.UNAVAILABLE
    assert sum(len(node.requests) for node in nodes) == 4


async def test_wait_retry_sends_remaining_timeout(nodes: list[ScriptedNode]) -> None:
    first, second, _ = nodes
    first.replies.append(unavailable())

    async def woken(request, context):
        return queue_pb2.WaitForWakeupResponse(
            woken=True, work_pool_id=request.work_pool_id, sequence=request.after + 1
        )

    second.replies.append(woken)
    client = _client([first.endpoint, second.endpoint])
    request = queue_pb2.WaitForWakeupRequest(work_pool_id=str(uuid.uuid4()), after=4)
    request.timeout_seconds = 30.0

    started = time.monotonic()
    response = await client.wait_for_wakeup(request)

    assert response.woken
    assert response.sequence == 5
    first_timeout = first.requests[0][1].timeout_seconds
    second_timeout = second.requests[0][1].timeout_seconds
    assert 29.0 < first_timeout <= 30.0
    assert second_timeout < first_timeout
    assert second_timeout >= 30.0 - (time.monotonic() - started) - 0.001
