import pytest

from raftq.config import (
    ClientSettings,
    caller_clock_enabled,
    parse_endpoints,
)
from raftq.errors import ConfigurationError


def test_parse_endpoints_keeps_order_and_drops_scheme() -> None:
    endpoints = parse_endpoints(" 127.0.0.1:7000, http://127.0.0.1:7010/ ,127.0.0.1:7000,")

    assert endpoints == ("127.0.0.1:7000", "127.0.0.1:7010")


@pytest.mark.parametrize("text", ["127.0.0.1", "127.0.0.1:", ":7000", "host:port", ",,"])
def test_parse_endpoints_rejects_malformed(text: str) -> None:
    with pytest.raises(ConfigurationError):
        parse_endpoints(text)


def test_settings_from_environment_reads_every_option() -> None:
    settings = ClientSettings.from_environment(
        {
            "RAFTQ_ENDPOINTS": "127.0.0.1:7000,127.0.0.1:7010",
            "RAFTQ_CALL_TIMEOUT_SECONDS": "2.5",
            "RAFTQ_MAX_ATTEMPTS": "3",
            "RAFTQ_RETRY_INITIAL_BACKOFF_SECONDS": "0.01",
            "RAFTQ_RETRY_MAX_BACKOFF_SECONDS": "0.2",
        }
    )

    assert settings.endpoints == ("127.0.0.1:7000", "127.0.0.1:7010")
    assert settings.call_timeout_seconds == 2.5
    assert settings.max_attempts == 3
    assert settings.initial_backoff_seconds == 0.01
    assert settings.max_backoff_seconds == 0.2


def test_settings_from_environment_requires_endpoints() -> None:
    with pytest.raises(ConfigurationError, match="RAFTQ_ENDPOINTS is not set"):
        ClientSettings.from_environment({})


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("RAFTQ_CALL_TIMEOUT_SECONDS", "soon"),
        ("RAFTQ_CALL_TIMEOUT_SECONDS", "0"),
        ("RAFTQ_MAX_ATTEMPTS", "1.5"),
        ("RAFTQ_MAX_ATTEMPTS", "0"),
        ("RAFTQ_RETRY_INITIAL_BACKOFF_SECONDS", "-1"),
    ],
)
def test_settings_reject_invalid_option(variable: str, value: str) -> None:
    with pytest.raises(ConfigurationError):
        ClientSettings.from_environment({"RAFTQ_ENDPOINTS": "127.0.0.1:7000", variable: value})


@pytest.mark.parametrize(
    ("value", "expected"),
    [("", False), ("0", False), ("off", False), ("1", True), ("TRUE", True), ("yes", True)],
)
def test_caller_clock_flag_values(value: str, expected: bool) -> None:
    assert caller_clock_enabled({"RAFTQ_PREFECT_CALLER_CLOCK": value}) is expected


def test_caller_clock_flag_rejects_unknown_value() -> None:
    with pytest.raises(ConfigurationError):
        caller_clock_enabled({"RAFTQ_PREFECT_CALLER_CLOCK": "sometimes"})
