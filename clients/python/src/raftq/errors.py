"""Exceptions raised by the raftq client."""

from __future__ import annotations

import grpc


class RaftqError(Exception):
    """Base class of every error the raftq client raises."""


class ConfigurationError(RaftqError, ValueError):
    """An invalid or missing client setting, such as RAFTQ_ENDPOINTS."""


class RaftqRpcError(RaftqError):
    """A call that a raftq node rejected with a gRPC status.

    `code` is the gRPC status code, `details` the node's message (it names the
    field and the rule for INVALID_ARGUMENT), and `endpoint` the node called.
    """

    def __init__(self, method: str, code: grpc.StatusCode, details: str, endpoint: str) -> None:
        super().__init__(f"{method} failed on {endpoint}: {code.name}: {details}")
        self.method = method
        self.code = code
        self.details = details
        self.endpoint = endpoint


class RaftqUnavailableError(RaftqRpcError):
    """A call that failed with a retryable status on every attempt.

    The last attempt's status is in `code` and `details`. A write that raised
    this may still have been applied. Calling the client method again sends a
    new request id, so the caller decides whether a second apply is safe.
    """

    def __init__(
        self, method: str, code: grpc.StatusCode, details: str, endpoint: str, attempts: int
    ) -> None:
        super().__init__(method, code, details, endpoint)
        self.attempts = attempts
        self.args = (
            f"{method} failed after {attempts} attempts, last on {endpoint}: "
            f"{code.name}: {details}",
        )
