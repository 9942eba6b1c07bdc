"""When to retry an export and how long to wait: the collector's rules, in one place.

Retryable, as the OpenTelemetry Collector's OTLP exporters decide (and the OTLP spec asks):

* gRPC: CANCELLED, DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE, UNAVAILABLE, DATA_LOSS, and
  RESOURCE_EXHAUSTED *only* when the server attached a ``google.rpc.RetryInfo`` (the server says
  "later"; without it the request itself is too big or over a quota and a retry cannot help);
* HTTP: 429, 502, 503, 504, and connection errors and timeouts on either transport.

Everything else is permanent: the batch is dropped and counted. The wait is exponential backoff
with jitter (``initial_interval * multiplier**n``, capped at ``max_interval``, each randomised by
``randomization_factor``); a server hint (``Retry-After``, RetryInfo's ``retry_delay``) raises the
wait to at least the hint, as the collector does. A batch is given up once the next wait would end
past ``max_elapsed_time`` after its first attempt (0 means never give up).
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import grpc
from google.rpc.error_details_pb2 import RetryInfo  # type: ignore[import-untyped, unused-ignore]
from google.rpc.status_pb2 import Status  # type: ignore[import-untyped, unused-ignore]

from gateway.validation import ConfigError, expect_mapping, read_bool, read_duration, reject_unknown

RETRYABLE_GRPC_CODES: Final = frozenset(
    {
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)
"""Always retryable. RESOURCE_EXHAUSTED is retryable only with RetryInfo (see ``grpc_is_retryable``)."""

RETRYABLE_HTTP_STATUSES: Final = frozenset({429, 502, 503, 504})

STATUS_DETAILS_KEY: Final = "grpc-status-details-bin"
"""Trailing metadata holding a serialized ``google.rpc.Status`` whose details may carry RetryInfo."""
RETRY_INFO_KEY: Final = "google.rpc.retryinfo-bin"
"""A bare serialized ``RetryInfo``, the key the OTel Python SDK reads; accepted as a fallback."""

_RETRY_KEYS: Final = (
    "enabled",
    "initial_interval",
    "max_interval",
    "max_elapsed_time",
    "multiplier",
    "randomization_factor",
)


@dataclass(frozen=True, slots=True)
class RetryConfig:
    """``retry:`` of an exporter; defaults are the collector's ``retry_on_failure`` defaults."""

    enabled: bool = True
    initial_interval: float = 5.0
    max_interval: float = 30.0
    max_elapsed_time: float = 300.0
    multiplier: float = 1.5
    randomization_factor: float = 0.5

    @staticmethod
    def from_mapping(options: Mapping[str, Any], path: str) -> RetryConfig:
        reject_unknown(options, _RETRY_KEYS, path)
        base = RetryConfig()
        config = RetryConfig(
            enabled=read_bool(options["enabled"], f"{path}.enabled") if "enabled" in options else base.enabled,
            initial_interval=_duration(options, "initial_interval", path, base.initial_interval),
            max_interval=_duration(options, "max_interval", path, base.max_interval),
            max_elapsed_time=_duration(options, "max_elapsed_time", path, base.max_elapsed_time),
            multiplier=_number(options, "multiplier", path, base.multiplier),
            randomization_factor=_number(options, "randomization_factor", path, base.randomization_factor),
        )
        config.validate(path)
        return config

    def validate(self, path: str) -> None:
        if self.initial_interval <= 0:
            raise ConfigError(f"{path}.initial_interval", "must be > 0")
        if self.max_interval < self.initial_interval:
            raise ConfigError(f"{path}.max_interval", "must be >= initial_interval")
        if self.multiplier < 1:
            raise ConfigError(f"{path}.multiplier", f"must be >= 1, got {self.multiplier}")
        if not 0 <= self.randomization_factor <= 1:
            raise ConfigError(
                f"{path}.randomization_factor", f"must be between 0 and 1, got {self.randomization_factor}"
            )


def retry_config(value: Any, path: str) -> RetryConfig:
    return RetryConfig.from_mapping(expect_mapping(value, path), path)


def _duration(options: Mapping[str, Any], key: str, path: str, default: float) -> float:
    return read_duration(options[key], f"{path}.{key}") if key in options else default


def _number(options: Mapping[str, Any], key: str, path: str, default: float) -> float:
    if key not in options:
        return default
    value = options[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{path}.{key}", f"expected a number, got {value!r}")
    return float(value)


class Backoff:
    """The waits of one batch's retries: exponential, jittered, raised to a server's hint.

    ``rng`` returns a float in [0, 1); tests pass a fixed one to get an exact schedule.
    """

    __slots__ = ("_config", "_interval", "_rng")

    def __init__(self, config: RetryConfig, rng: Callable[[], float] = random.random) -> None:
        self._config = config
        self._interval = config.initial_interval
        self._rng = rng

    def next_delay(self, hint: float | None = None) -> float:
        """The wait before the next attempt; advances the schedule."""
        factor = self._config.randomization_factor
        delay = self._interval * (1.0 - factor + 2.0 * factor * self._rng())
        self._interval = min(self._interval * self._config.multiplier, self._config.max_interval)
        if hint is not None and hint > delay:
            delay = hint
        return delay


def grpc_is_retryable(code: grpc.StatusCode, retry_delay: float | None) -> bool:
    """The collector's rule: the fixed set, plus RESOURCE_EXHAUSTED when the server sent RetryInfo."""
    if code in RETRYABLE_GRPC_CODES:
        return True
    return code == grpc.StatusCode.RESOURCE_EXHAUSTED and retry_delay is not None


def http_is_retryable(status: int) -> bool:
    return status in RETRYABLE_HTTP_STATUSES


def grpc_retry_delay(trailing_metadata: Iterable[tuple[str, str | bytes]] | None) -> float | None:
    """Seconds of the ``google.rpc.RetryInfo`` in a call's trailers, or None when there is none.

    Reads ``grpc-status-details-bin`` (a ``google.rpc.Status`` whose ``details`` hold RetryInfo, what
    Go and Java servers send) and, failing that, ``google.rpc.retryinfo-bin``. Undecodable values
    count as absent: a broken hint must not turn a permanent error into a retry loop.
    """
    if not trailing_metadata:
        return None
    values = {key: value for key, value in trailing_metadata if isinstance(value, bytes)}
    details = values.get(STATUS_DETAILS_KEY)
    if details is not None:
        try:
            status = Status.FromString(details)
        except Exception:  # DecodeError of whatever protobuf runtime is installed
            status = None
        if status is not None:
            for any_detail in status.details:
                if any_detail.Is(RetryInfo.DESCRIPTOR):
                    info = RetryInfo()
                    any_detail.Unpack(info)
                    return _seconds(info)
    bare = values.get(RETRY_INFO_KEY)
    if bare is not None:
        try:
            return _seconds(RetryInfo.FromString(bare))
        except Exception:
            return None
    return None


def retry_info_trailers(delay: float, code: int, message: str) -> tuple[tuple[str, bytes], ...]:
    """Trailing metadata that tells a gRPC client to retry after ``delay`` seconds (both spellings)."""
    info = RetryInfo()
    info.retry_delay.FromNanoseconds(int(max(delay, 0.0) * 1e9))
    status = Status(code=code, message=message)
    status.details.add().Pack(info)
    return ((STATUS_DETAILS_KEY, status.SerializeToString()), (RETRY_INFO_KEY, info.SerializeToString()))


def _seconds(info: Any) -> float:
    return max(0.0, float(info.retry_delay.seconds) + float(info.retry_delay.nanos) / 1e9)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from an HTTP ``Retry-After``: delta-seconds or an HTTP-date; None if absent or invalid."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)
