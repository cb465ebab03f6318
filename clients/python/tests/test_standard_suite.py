"""Prefect's standard test suite for cleanup-queue storage, on real clusters."""

from __future__ import annotations

import pytest

from cluster import Cluster
from prefect.testing.standard_test_suites.worker_cleanup_queue import (
    WorkerCleanupQueueStandardTestSuite,
)
from raftq import ClientSettings, RaftqClient
from raftq.prefect_storage import WorkerCleanupQueue


def _queue_for(endpoints: list[str]) -> WorkerCleanupQueue:
    client = RaftqClient(ClientSettings(endpoints=tuple(endpoints)))
    return WorkerCleanupQueue(client, caller_clock=True)


class TestRaftqCleanupQueue(WorkerCleanupQueueStandardTestSuite):
    @pytest.fixture
    def queue(
        self, caller_clock_cluster: Cluster, close_channels_after_test: None
    ) -> WorkerCleanupQueue:
        return _queue_for(caller_clock_cluster.endpoints)


class TestRaftqCleanupQueueWithFollowerStopped(WorkerCleanupQueueStandardTestSuite):
    """The same suite while one follower is down.

    The stopped node comes first in the client's endpoint list, so every test
    also goes through a failover.
    """

    @pytest.fixture
    def queue(
        self, caller_clock_cluster: Cluster, close_channels_after_test: None
    ) -> WorkerCleanupQueue:
        stopped = caller_clock_cluster.stop_follower()
        assert not stopped.running
        endpoints = [stopped.endpoint] + [
            endpoint for endpoint in caller_clock_cluster.endpoints if endpoint != stopped.endpoint
        ]
        return _queue_for(endpoints)
