from __future__ import annotations

import atexit
import os
import tempfile

# Prefect reads PREFECT_HOME when it first builds its settings, so it is set
# before anything imports prefect: the tests never touch the user's ~/.prefect.
if "PREFECT_HOME" not in os.environ:
    _prefect_home = tempfile.TemporaryDirectory(prefix="raftq-prefect-home-")
    # Deleted when the interpreter exits, with the test session.
    atexit.register(_prefect_home.cleanup)
    os.environ["PREFECT_HOME"] = _prefect_home.name

from collections.abc import AsyncIterator, Iterator  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from datetime import datetime, timedelta, timezone  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from cluster import Cluster  # noqa: E402
from raftq import channels, prefect_storage  # noqa: E402


@dataclass
class Clock:
    """The test clock that the caller-clock mode stamps into every write."""

    current: datetime

    def advance(self, duration: timedelta) -> None:
        self.current += duration


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    test_clock = Clock(datetime(2026, 5, 20, 12, 0, tzinfo=timezone.utc))
    monkeypatch.setattr(prefect_storage, "now", lambda zone: test_clock.current)
    return test_clock


@pytest.fixture
def caller_clock_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A fresh cluster that takes the caller's clock and runs no lease sweeper.

    Every test gets its own cluster, as Prefect's memory-backend tests clear
    the queue before each test: an unscoped expire_leases must not see the
    reservations of earlier tests.
    """
    cluster = Cluster(tmp_path / "raftq", caller_clock=True, sweep_interval_ms=0)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
async def close_channels_after_test() -> AsyncIterator[None]:
    # Each test's cluster has new ports, so its channels are closed with it.
    yield
    await channels.close_channels()
