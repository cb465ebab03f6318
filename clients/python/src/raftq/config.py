"""Client settings, read from environment variables once per process."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

from raftq.errors import ConfigurationError

ENDPOINTS_VARIABLE = "RAFTQ_ENDPOINTS"
CALL_TIMEOUT_VARIABLE = "RAFTQ_CALL_TIMEOUT_SECONDS"
MAX_ATTEMPTS_VARIABLE = "RAFTQ_MAX_ATTEMPTS"
INITIAL_BACKOFF_VARIABLE = "RAFTQ_RETRY_INITIAL_BACKOFF_SECONDS"
MAX_BACKOFF_VARIABLE = "RAFTQ_RETRY_MAX_BACKOFF_SECONDS"
CALLER_CLOCK_VARIABLE = "RAFTQ_PREFECT_CALLER_CLOCK"


@dataclass(frozen=True)
class ClientSettings:
    """Endpoints of the cluster and the retry policy of the client.

    `endpoints` are `host:port` client addresses of the nodes. Each attempt of
    a unary call has `call_timeout_seconds` as its gRPC deadline. A call makes
    at most `max_attempts` attempts across the endpoints. The pause before
    attempt n+1 is `initial_backoff_seconds * 2**(n-1)`, capped at
    `max_backoff_seconds`, less a random jitter of up to half of it.
    """

    endpoints: tuple[str, ...]
    call_timeout_seconds: float = 10.0
    max_attempts: int = 12
    initial_backoff_seconds: float = 0.05
    max_backoff_seconds: float = 1.0

    def __post_init__(self) -> None:
        if not self.endpoints:
            raise ConfigurationError("at least one raftq endpoint is required")
        if self.call_timeout_seconds <= 0:
            raise ConfigurationError(
                f"call_timeout_seconds must be > 0, got {self.call_timeout_seconds}"
            )
        if self.max_attempts < 1:
            raise ConfigurationError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.initial_backoff_seconds < 0 or self.max_backoff_seconds < 0:
            raise ConfigurationError("retry backoff seconds must be >= 0")

    @classmethod
    def from_environment(cls, environment: dict[str, str] | None = None) -> "ClientSettings":
        """Build settings from RAFTQ_* variables of `environment` (default: os.environ)."""
        source = os.environ if environment is None else environment
        raw_endpoints = source.get(ENDPOINTS_VARIABLE, "")
        if not raw_endpoints.strip():
            raise ConfigurationError(
                f"{ENDPOINTS_VARIABLE} is not set; set it to the nodes' client "
                "addresses, e.g. 127.0.0.1:7000,127.0.0.1:7010,127.0.0.1:7020"
            )
        return cls(
            endpoints=parse_endpoints(raw_endpoints),
            call_timeout_seconds=_read_float(source, CALL_TIMEOUT_VARIABLE, 10.0),
            max_attempts=_read_int(source, MAX_ATTEMPTS_VARIABLE, 12),
            initial_backoff_seconds=_read_float(source, INITIAL_BACKOFF_VARIABLE, 0.05),
            max_backoff_seconds=_read_float(source, MAX_BACKOFF_VARIABLE, 1.0),
        )


def parse_endpoints(text: str) -> tuple[str, ...]:
    """Parse a comma-separated list of `host:port` addresses.

    An `http://` prefix is accepted and dropped, because `raftq` command lines
    and leader hints write addresses that way. Duplicates keep their first
    position.
    """
    endpoints: list[str] = []
    for item in text.split(","):
        endpoint = normalize_endpoint(item)
        if not endpoint:
            continue
        host, separator, port = endpoint.rpartition(":")
        if not separator or not host or not port.isdigit():
            raise ConfigurationError(
                f"invalid raftq endpoint {item.strip()!r}: expected host:port, "
                "e.g. 127.0.0.1:7000"
            )
        if endpoint not in endpoints:
            endpoints.append(endpoint)
    if not endpoints:
        raise ConfigurationError(f"no endpoint in {text!r}: expected host:port[,host:port...]")
    return tuple(endpoints)


def normalize_endpoint(text: str) -> str:
    """Strip blanks, an `http://` scheme and a trailing slash from an address."""
    endpoint = text.strip()
    if endpoint.startswith("http://"):
        endpoint = endpoint[len("http://") :]
    return endpoint.rstrip("/")


def caller_clock_enabled(environment: dict[str, str] | None = None) -> bool:
    """Return whether RAFTQ_PREFECT_CALLER_CLOCK turns on Prefect's clock as `now`."""
    source = os.environ if environment is None else environment
    value = source.get(CALLER_CLOCK_VARIABLE, "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise ConfigurationError(
        f"invalid {CALLER_CLOCK_VARIABLE}={value!r}: expected 1/true/yes/on or 0/false/no/off"
    )


@functools.cache
def load_settings() -> ClientSettings:
    """Return the process's settings, read from the environment on first use."""
    return ClientSettings.from_environment()


def _read_float(source: dict[str, str] | os._Environ[str], name: str, default: float) -> float:
    text = source.get(name, "").strip()
    if not text:
        return default
    try:
        return float(text)
    except ValueError:
        raise ConfigurationError(f"invalid {name}={text!r}: expected a number of seconds") from None


def _read_int(source: dict[str, str] | os._Environ[str], name: str, default: int) -> int:
    text = source.get(name, "").strip()
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise ConfigurationError(f"invalid {name}={text!r}: expected an integer") from None
