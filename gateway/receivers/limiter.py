"""The memory limiter: a global budget of in-flight request bytes and concurrent requests.

A request is in flight from the moment its (inflated) body is handed over until every exporter's
queue has it (or refused it). Past either budget, new requests are refused at once as retryable
(429 + Retry-After / RESOURCE_EXHAUSTED with RetryInfo): the senders back off, the requests already
admitted finish, and RSS stays bounded whatever the input rate. Refusing rather than waiting is
deliberate: a waiting request still holds its body in memory.
"""

from __future__ import annotations

from gateway.errors import QueueFullError
from gateway.metrics.store import GaugeFamily


class InflightLimiter:
    def __init__(self, max_bytes: int, max_requests: int, inflight_gauge: GaugeFamily | None = None) -> None:
        self.max_bytes = max_bytes
        self.max_requests = max_requests
        self.bytes = 0
        self.requests = 0
        self._gauge = inflight_gauge

    def acquire(self, size: int) -> None:
        """Take ``size`` bytes of the budget until ``release``, or refuse now.

        One request larger than the whole byte budget is still admitted when nothing else is in
        flight, so a limit below the receivers' size limits cannot refuse a request forever.
        """
        if self.requests >= self.max_requests:
            raise QueueFullError(f"too many concurrent requests (limit {self.max_requests}); retry later", 1.0)
        if self.bytes and self.bytes + size > self.max_bytes:
            raise QueueFullError(
                f"memory limit: {self.bytes} bytes in flight, limit {self.max_bytes}; retry later", 1.0
            )
        self.bytes += size
        self.requests += 1
        self._publish()

    def grow(self, held: int, extra: int) -> None:
        """Take ``extra`` more bytes for an admitted request that holds ``held``, or refuse now.

        For a request found to decode to more than its body: the same rule as ``acquire``, so it is
        still admitted when nothing else holds bytes. On refusal the request keeps ``held``, which
        its ``release`` returns as usual.
        """
        if self.bytes > held and self.bytes + extra > self.max_bytes:
            raise QueueFullError(
                f"memory limit: {self.bytes - held} bytes in flight, and this request decodes to "
                f"about {held + extra}; limit {self.max_bytes}; retry later",
                1.0,
            )
        self.bytes += extra
        self._publish()

    def release(self, size: int) -> None:
        self.bytes -= size
        self.requests -= 1
        self._publish()

    def _publish(self) -> None:
        if self._gauge is not None:
            self._gauge.set((), float(self.bytes))
