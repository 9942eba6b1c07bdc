"""Errors raised by the wire layer, one per answer a receiver has to give.

Each error carries the one value its answer needs (the reason, the limit, the encoding) so that
receivers map them to an HTTP status / gRPC code through a single table without parsing messages:

* ``DecodeError`` -> 400 / ``INVALID_ARGUMENT`` (permanent: resending the same bytes cannot help),
* ``PayloadTooLargeError`` -> 413 / ``RESOURCE_EXHAUSTED``,
* ``UnsupportedEncodingError`` -> 415 (HTTP only; gRPC negotiates compression itself).

All three subclass ``ValueError`` because each describes bad input, not a failure of the gateway.
"""

from __future__ import annotations


class DecodeError(ValueError):
    """A body that is not a valid OTLP request: corrupt compression, protobuf or OTLP/JSON.

    ``reason`` is meant for the client: it goes verbatim into the 400 body or the gRPC status
    message, so it names what is wrong (and where, for OTLP/JSON) without echoing the payload.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PayloadTooLargeError(ValueError):
    """A body, or its decompressed form, that is larger than the configured limit of ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"payload exceeds the limit of {limit} bytes")
        self.limit = limit

    def __reduce__(self) -> tuple[type[PayloadTooLargeError], tuple[int]]:
        # args holds the message, not the limit: rebuild from the limit so pickling round-trips.
        return (type(self), (self.limit,))


class UnsupportedEncodingError(ValueError):
    """A ``Content-Encoding`` the gateway does not implement; ``encoding`` is the value as received."""

    def __init__(self, encoding: str) -> None:
        super().__init__(f"unsupported content encoding: {encoding!r}")
        self.encoding = encoding

    def __reduce__(self) -> tuple[type[UnsupportedEncodingError], tuple[str]]:
        return (type(self), (self.encoding,))
