"""A Prefect server whose cleanup-queue storage is a raftq cluster.

The cluster runs on the server's clock with its lease sweeper off, so a lease
that comes back can only have been expired by Prefect's cleanup reconciler.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from typing import Any
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID, uuid4

import httpx
import pytest

from cluster import Cluster, free_ports
from prefect.client.schemas.worker_channel import CANCELLING_TIMEOUT_TEARDOWN
from prefect.server.worker_communication.cleanup_queue import get_worker_cleanup_queue
from prefect.settings import (
    PREFECT_SERVER_WORKER_CHANNEL_CLEANUP_LEASE_SECONDS,
    PREFECT_SERVER_WORKER_CHANNEL_CLEANUP_QUEUE_STORAGE,
    temporary_settings,
)
from raftq import ClientSettings, RaftqClient, channels, config, prefect_storage
from raftq._proto.raftq.v1 import admin_pb2

SERVER_START_TIMEOUT_SECONDS = 180.0
SERVICE_TIMEOUT_SECONDS = 60.0
POLL_SECONDS = 0.2
# Attempts of one Prefect API call that the server rejects with 503.
POST_ATTEMPTS = 10
# Prefect's console log format is "time | LEVEL | logger - message".
ERROR_LOG_LINE = re.compile(r"\|\s*(ERROR|CRITICAL)\s*\|")


def test_get_worker_cleanup_queue_builds_raftq_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAFTQ_ENDPOINTS", "127.0.0.1:7000,127.0.0.1:7010")
    monkeypatch.setattr(prefect_storage, "_default_client", None)
    config.load_settings.cache_clear()

    try:
        with temporary_settings({PREFECT_SERVER_WORKER_CHANNEL_CLEANUP_QUEUE_STORAGE: "raftq.prefect_storage"}):
            queue = get_worker_cleanup_queue()
    finally:
        config.load_settings.cache_clear()

    assert type(queue) is prefect_storage.WorkerCleanupQueue
    assert queue._client.settings.endpoints == ("127.0.0.1:7000", "127.0.0.1:7010")


@dataclass
class PrefectServer:
    url: str
    log_path: Path
    process: subprocess.Popen[bytes]

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def server_clock_cluster(tmp_path: Path) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path / "raftq", sweep_interval_ms=0)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def prefect_server(tmp_path: Path, server_clock_cluster: Cluster) -> Iterator[PrefectServer]:
    home = tmp_path / "prefect-home"
    home.mkdir()
    (port,) = free_ports(1)
    environment = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_UI_ENABLED": "false",
        "PREFECT_LOGGING_SERVER_LEVEL": "INFO",
        "PREFECT_SERVER_WORKER_CHANNEL_CLEANUP_QUEUE_STORAGE": "raftq.prefect_storage",
        "PREFECT_SERVER_SERVICES_CLEANUP_RECONCILER_LOOP_SECONDS": "1",
        "PREFECT_SERVER_SERVICES_CANCELLATION_CLEANUP_LOOP_SECONDS": "1",
        "PREFECT_SERVER_SERVICES_CANCELLATION_CLEANUP_CANCELLING_TIMEOUT_SECONDS": "1",
        "RAFTQ_ENDPOINTS": ",".join(server_clock_cluster.endpoints),
    }
    environment.pop("RAFTQ_PREFECT_CALLER_CLOCK", None)
    prefect_command = Path(sys.executable).with_name("prefect")
    log_path = tmp_path / "prefect-server.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [str(prefect_command), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=tmp_path,
        )
    server = PrefectServer(url=f"http://127.0.0.1:{port}/api", log_path=log_path, process=process)
    try:
        _wait_until_healthy(server)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


def _wait_until_healthy(server: PrefectServer) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"prefect server exited at start:\n{server.log_text()[-4000:]}")
        try:
            if httpx.get(f"{server.url}/health", timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(POLL_SECONDS)
    raise AssertionError(
        f"prefect server not healthy within {SERVER_START_TIMEOUT_SECONDS} s:\n"
        f"{server.log_text()[-4000:]}"
    )


@pytest.fixture
async def raftq_client(server_clock_cluster: Cluster) -> AsyncIterator[RaftqClient]:
    yield RaftqClient(ClientSettings(endpoints=tuple(server_clock_cluster.endpoints)))
    await channels.close_channels()


async def _pool_stats(client: RaftqClient, work_pool_id: UUID) -> admin_pb2.PoolStatsResponse:
    return await client.pool_stats(admin_pb2.PoolStatsRequest(work_pool_id=str(work_pool_id)))


async def test_reconciler_expires_leases_on_cluster(
    prefect_server: PrefectServer, raftq_client: RaftqClient
) -> None:
    queue = prefect_storage.WorkerCleanupQueue(raftq_client, caller_clock=False)
    work_pool_id = uuid4()
    await queue.enqueue(
        message_id=uuid4(),
        idempotency_key="reconciler-check",
        work_pool_id=work_pool_id,
        kind=CANCELLING_TIMEOUT_TEARDOWN,
        target={"flow_run_id": str(uuid4())},
    )
    with temporary_settings({PREFECT_SERVER_WORKER_CHANNEL_CLEANUP_LEASE_SECONDS: 1.0}):
        reservation = await queue.reserve(work_pool_id=work_pool_id)
    assert reservation is not None

    deadline = time.monotonic() + SERVICE_TIMEOUT_SECONDS
    stats = await _pool_stats(raftq_client, work_pool_id)
    while stats.reserved and time.monotonic() < deadline:
        await asyncio.sleep(POLL_SECONDS)
        stats = await _pool_stats(raftq_client, work_pool_id)

    assert stats.reserved == 0, prefect_server.log_text()[-4000:]
    assert stats.active == 1
    assert "Expired worker cleanup leases: redelivered=1" in prefect_server.log_text()
    assert not ERROR_LOG_LINE.findall(prefect_server.log_text()), prefect_server.log_text()
    assert "Traceback" not in prefect_server.log_text()


async def _post(api: httpx.AsyncClient, path: str, payload: dict[str, Any]) -> httpx.Response:
    """Post to the Prefect API, retrying 503 responses as Prefect's own client does.

    A Prefect server on SQLite responds with 503 while the database is locked by its
    background services, which happens on a loaded machine right after start.
    """
    for attempt in range(POST_ATTEMPTS):
        response = await api.post(path, json=payload)
        if response.status_code != 503:
            return response
        await asyncio.sleep(0.2 * (attempt + 1))
    return response


async def test_cancelling_timeout_enqueues_on_cluster(
    prefect_server: PrefectServer, raftq_client: RaftqClient
) -> None:
    async with httpx.AsyncClient(base_url=prefect_server.url, timeout=30.0) as api:
        pool = await _post(api, "/work_pools/", {"name": "raftq-pool", "type": "process"})
        assert pool.status_code == 201, pool.text
        work_pool_id = UUID(pool.json()["id"])
        flow = await _post(api, "/flows/", {"name": "raftq-cleanup-check"})
        assert flow.status_code in (200, 201), flow.text
        flow_run = await _post(
            api,
            "/flow_runs/",
            {
                "flow_id": flow.json()["id"],
                "work_pool_name": "raftq-pool",
                "state": {"type": "RUNNING", "name": "Running"},
            },
        )
        assert flow_run.status_code == 201, flow_run.text
        flow_run_id = flow_run.json()["id"]
        cancelling = await _post(
            api,
            f"/flow_runs/{flow_run_id}/set_state",
            {"state": {"type": "CANCELLING", "name": "Cancelling"}, "force": True},
        )
        assert cancelling.status_code in (200, 201), cancelling.text
        assert cancelling.json()["status"] == "ACCEPT", cancelling.text

    deadline = time.monotonic() + SERVICE_TIMEOUT_SECONDS
    stats = await _pool_stats(raftq_client, work_pool_id)
    while not stats.active and time.monotonic() < deadline:
        await asyncio.sleep(POLL_SECONDS)
        stats = await _pool_stats(raftq_client, work_pool_id)
    assert stats.active == 1, prefect_server.log_text()[-4000:]

    queue = prefect_storage.WorkerCleanupQueue(raftq_client, caller_clock=False)
    reservation = await queue.reserve(work_pool_id=work_pool_id)
    assert reservation is not None
    assert reservation.kind == CANCELLING_TIMEOUT_TEARDOWN
    assert reservation.target["flow_run_id"] == flow_run_id
    acked = await queue.ack(
        work_pool_id=work_pool_id,
        message_id=reservation.message_id,
        reservation_token=reservation.reservation_token,
    )
    assert acked.status == "accepted"
    assert not ERROR_LOG_LINE.findall(prefect_server.log_text()), prefect_server.log_text()
    assert "Traceback" not in prefect_server.log_text()
