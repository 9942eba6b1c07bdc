"""Errors that cross stage boundaries, and the one table that maps them to gRPC and HTTP answers.

The collector's rule: an error says whether a retry can help. Permanent errors (bad input) are
answered 400 / INVALID_ARGUMENT and never retried; retryable ones (a full queue, a closing gateway)
are answered 429 or 503 with a Retry-After / RESOURCE_EXHAUSTED or UNAVAILABLE so the sender's SDK
backs off and tries again, and nothing is lost.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc


class GatewayError(Exception):
    """Base of the errors a stage raises on purpose."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PermanentError(GatewayError):
    """Retrying the same data cannot succeed (malformed, refused by policy)."""


class TooManyItemsError(PermanentError):
    """A request holding more items than ``limits.max_items_per_request``: answered as the size
    limits are (413 / RESOURCE_EXHAUSTED without RetryInfo, which OTLP senders do not retry)."""


class RetryableError(GatewayError):
    """The same data may succeed later; ``retry_after`` is the hint in seconds, if any."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class QueueFullError(RetryableError):
    """An exporter queue or the in-flight budget is full: push back on the sender."""


class ShuttingDownError(RetryableError):
    """The gateway is stopping and takes no new data."""


@dataclass(frozen=True, slots=True)
class WireStatus:
    http_status: int
    grpc_code: grpc.StatusCode


def wire_status(error: GatewayError) -> WireStatus:
    """The single error -> status table, used by both receivers."""
    if isinstance(error, QueueFullError):
        return WireStatus(429, grpc.StatusCode.RESOURCE_EXHAUSTED)
    if isinstance(error, RetryableError):
        return WireStatus(503, grpc.StatusCode.UNAVAILABLE)
    if isinstance(error, TooManyItemsError):
        return WireStatus(413, grpc.StatusCode.RESOURCE_EXHAUSTED)
    return WireStatus(400, grpc.StatusCode.INVALID_ARGUMENT)
