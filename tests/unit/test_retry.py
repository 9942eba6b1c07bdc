"""Retry rules: which failures are retried, how long the waits are, and how server hints are read."""

from __future__ import annotations

import email.utils

import grpc
import pytest

from gateway.exporters.retry import (
    RETRY_INFO_KEY,
    STATUS_DETAILS_KEY,
    Backoff,
    RetryConfig,
    grpc_is_retryable,
    grpc_retry_delay,
    http_is_retryable,
    parse_retry_after,
    retry_info_trailers,
)
from gateway.validation import ConfigError

RETRYABLE_CODES = [
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DATA_LOSS,
]
PERMANENT_CODES = [
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.UNIMPLEMENTED,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNAUTHENTICATED,
]


@pytest.mark.parametrize("code", RETRYABLE_CODES)
def test_grpc_codes_the_collector_retries_are_retryable(code: grpc.StatusCode) -> None:
    """The collector's retryable gRPC codes are retried with or without RetryInfo."""
    assert grpc_is_retryable(code, None)


@pytest.mark.parametrize("code", PERMANENT_CODES)
def test_other_grpc_codes_are_permanent(code: grpc.StatusCode) -> None:
    """Codes outside the table are permanent, even with a RetryInfo attached."""
    assert not grpc_is_retryable(code, 1.0)


def test_resource_exhausted_is_retryable_only_with_retry_info() -> None:
    """RESOURCE_EXHAUSTED means 'later' only when the server said when (RetryInfo)."""
    assert (False, True) == (
        grpc_is_retryable(grpc.StatusCode.RESOURCE_EXHAUSTED, None),
        grpc_is_retryable(grpc.StatusCode.RESOURCE_EXHAUSTED, 0.0),
    )


@pytest.mark.parametrize(("status", "retryable"), [(429, True), (502, True), (503, True), (504, True)])
def test_retryable_http_statuses(status: int, retryable: bool) -> None:
    """429, 502, 503 and 504 are retried."""
    assert retryable == http_is_retryable(status)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 413, 415, 500, 501])
def test_other_http_statuses_are_permanent(status: int) -> None:
    """Every other error status drops the batch (the collector's otlphttp rule)."""
    assert not http_is_retryable(status)


def test_backoff_without_jitter_grows_by_the_multiplier_up_to_the_cap() -> None:
    """rng 0.5 is the midpoint: initial, x1.5, x1.5^2, ... capped at max_interval."""
    backoff = Backoff(RetryConfig(initial_interval=1.0, max_interval=3.0, multiplier=1.5), rng=lambda: 0.5)
    assert [1.0, 1.5, 2.25, 3.0, 3.0] == [round(backoff.next_delay(), 6) for _ in range(5)]


def test_backoff_jitter_stays_within_the_randomization_factor() -> None:
    """With randomization_factor 0.5 a wait is between half and one and a half times the interval."""
    config = RetryConfig(initial_interval=2.0, randomization_factor=0.5)
    assert (1.0, 3.0) == (Backoff(config, rng=lambda: 0.0).next_delay(), Backoff(config, rng=lambda: 1.0).next_delay())


def test_a_server_hint_longer_than_the_backoff_is_honoured() -> None:
    """Retry-After / RetryInfo raise the wait to the hint, never shorten it."""
    backoff = Backoff(RetryConfig(initial_interval=1.0), rng=lambda: 0.5)
    assert (7.0, 1.5) == (backoff.next_delay(hint=7.0), backoff.next_delay(hint=0.1))


def test_retry_after_in_seconds() -> None:
    assert 3.0 == parse_retry_after("3")


def test_retry_after_as_an_http_date() -> None:
    """An HTTP-date is read relative to now."""
    now = 1_700_000_000.0
    value = email.utils.formatdate(now + 42, usegmt=True)
    assert 42.0 == parse_retry_after(value, now=now)


@pytest.mark.parametrize("value", [None, "", "soon", "-3", "1.5.2"])
def test_unreadable_retry_after_is_no_hint(value: str | None) -> None:
    assert parse_retry_after(value) is None


def test_retry_info_round_trips_through_trailers() -> None:
    """What the receiver sends back (both keys) is what the exporter reads."""
    trailers = retry_info_trailers(0.25, grpc.StatusCode.RESOURCE_EXHAUSTED.value[0], "queue full")
    assert 0.25 == grpc_retry_delay(trailers)


def test_retry_info_in_status_details_alone_is_read() -> None:
    """Go and Java servers send only grpc-status-details-bin."""
    trailers = [t for t in retry_info_trailers(2.5, 8, "later") if t[0] == STATUS_DETAILS_KEY]
    assert 2.5 == grpc_retry_delay(trailers)


def test_bare_retry_info_key_alone_is_read() -> None:
    """The OTel Python SDK's key, google.rpc.retryinfo-bin, is accepted too."""
    trailers = [t for t in retry_info_trailers(1.0, 8, "later") if t[0] == RETRY_INFO_KEY]
    assert 1.0 == grpc_retry_delay(trailers)


def test_garbage_trailers_carry_no_retry_info() -> None:
    """An undecodable detail never turns a permanent error into a retry."""
    assert grpc_retry_delay([(STATUS_DETAILS_KEY, b"\xff\xff\xff"), ("other", "x")]) is None


def test_retry_config_reads_durations_and_numbers() -> None:
    config = RetryConfig.from_mapping(
        {"initial_interval": "50ms", "max_interval": "2s", "max_elapsed_time": "1m", "multiplier": 2}, "r"
    )
    assert RetryConfig(True, 0.05, 2.0, 60.0, 2.0, 0.5) == config


@pytest.mark.parametrize(
    ("options", "path"),
    [
        ({"initial_interval": "2s", "max_interval": "1s"}, "r.max_interval"),
        ({"multiplier": 0.5}, "r.multiplier"),
        ({"randomization_factor": 2}, "r.randomization_factor"),
        ({"initial_interval": "0s"}, "r.initial_interval"),
        ({"max_elapsed": "1s"}, "r.max_elapsed"),
    ],
)
def test_bad_retry_config_names_the_key(options: dict[str, object], path: str) -> None:
    with pytest.raises(ConfigError) as caught:
        RetryConfig.from_mapping(options, "r")
    assert path == caught.value.path
