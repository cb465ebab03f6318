"""RaftqClient against a real three-node cluster: retry safety and failover."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from cluster import Cluster
from raftq import ClientSettings, RaftqClient, channels
from raftq._proto.raftq.v1 import queue_pb2


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    started = Cluster(tmp_path / "raftq")
    try:
        started.start()
        yield started
    finally:
        started.stop()


@pytest.fixture
async def client(cluster: Cluster) -> AsyncIterator[RaftqClient]:
    yield RaftqClient(ClientSettings(endpoints=tuple(cluster.endpoints)))
    await channels.close_channels()


def _enqueue_request(work_pool_id: str, idempotency_key: str) -> queue_pb2.EnqueueRequest:
    return queue_pb2.EnqueueRequest(
        message_id=str(uuid.uuid4()),
        idempotency_key=idempotency_key,
        work_pool_id=work_pool_id,
        kind="cancelling_timeout_teardown.v1",
        target='{"flow_run_id":"abc"}',
    )


async def test_repeated_reserve_request_id_returns_same_reservation(client: RaftqClient) -> None:
    work_pool_id = str(uuid.uuid4())
    await client.enqueue(_enqueue_request(work_pool_id, "first"))
    await client.enqueue(_enqueue_request(work_pool_id, "second"))
    request = queue_pb2.ReserveRequest(work_pool_id=work_pool_id)
    request.options.request_id = str(uuid.uuid4())

    first = await client.reserve(request)
    repeated = await client.reserve(request)
    fresh = await client.reserve(queue_pb2.ReserveRequest(work_pool_id=work_pool_id))

    assert first.HasField("reservation")
    assert repeated.reservation == first.reservation
    assert fresh.reservation.message.message_id != first.reservation.message.message_id


async def test_repeated_enqueue_request_id_applies_once(client: RaftqClient) -> None:
    work_pool_id = str(uuid.uuid4())
    request = _enqueue_request(work_pool_id, "once")
    request.options.request_id = str(uuid.uuid4())

    first = await client.enqueue(request)
    repeated = await client.enqueue(request)
    sequence = await client.read_wakeup_sequence(
        queue_pb2.ReadWakeupSequenceRequest(work_pool_id=work_pool_id)
    )

    assert first.duplicate is False
    assert repeated == first
    assert sequence.sequence == 1


async def test_writes_continue_after_leader_stops(cluster: Cluster, client: RaftqClient) -> None:
    work_pool_id = str(uuid.uuid4())
    leader = cluster.wait_for_leader()
    await client.enqueue(_enqueue_request(work_pool_id, "before"))

    cluster.stop_node(leader)
    after = await client.enqueue(_enqueue_request(work_pool_id, "after"))
    reserved = await client.reserve(queue_pb2.ReserveRequest(work_pool_id=work_pool_id))

    assert after.message.idempotency_key == "after"
    assert reserved.reservation.message.idempotency_key == "before"
    assert cluster.wait_for_leader() is not leader
