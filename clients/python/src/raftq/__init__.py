"""Asyncio gRPC client for raftq, a delivery queue replicated with Raft.

`raftq.prefect_storage` is a Prefect cleanup-queue storage module built on it.
"""

from raftq.client import RaftqClient
from raftq.config import ClientSettings, load_settings
from raftq.errors import ConfigurationError, RaftqError, RaftqRpcError, RaftqUnavailableError

__all__ = [
    "ClientSettings",
    "ConfigurationError",
    "RaftqClient",
    "RaftqError",
    "RaftqRpcError",
    "RaftqUnavailableError",
    "load_settings",
]
