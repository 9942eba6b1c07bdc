"""``ExportTraceServiceRequest`` whose span attributes stay serialized: the schema derivation reads.

Why a second schema of the same wire format: reading a span attribute through opentelemetry-proto
costs a Python wrapper for its KeyValue and another for its AnyValue (about 0.4 µs each, 5 µs for a
span of a dozen attributes: four times upb's whole decode of the span). Here ``Span.attributes``
is declared ``repeated bytes``: a repeated message and a repeated bytes field are encoded alike
(tag, length, payload), so upb hands each attribute over as the bytes of its serialized
``KeyValue``, without building anything. Derivation looks those bytes up in a dict of attributes it
has already read (``gateway.derive.attributes``): an instrumentation sends the same model, provider,
operation and tenant attributes span after span, so most attributes cost one hash lookup, and only
a new one is parsed (``KeyValue.FromString``). Decoding also gets about three times cheaper.

``Span.status`` is bytes too (see ``status_code``). Everything else (resource, scope, events,
links, ids, times) is the real schema, renamed
into a private descriptor pool (built once at import from the real descriptors: nothing generated,
nothing to keep in sync by hand). Serializing a request of this schema gives back the same bytes.

Attribute bytes are not validated by this schema: ``decode_request`` validates the request with
the real schema first.
"""

from __future__ import annotations

from typing import Final

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory  # type: ignore[import-untyped, unused-ignore]
from google.protobuf.message import Message  # type: ignore[import-untyped, unused-ignore]
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.proto.trace.v1.trace_pb2 import Status

_PREFIX: Final = "otel_ai_gateway.raw_attributes"
_FieldProto = descriptor_pb2.FieldDescriptorProto


def _renamed_files() -> list[descriptor_pb2.FileDescriptorProto]:
    """Copies of the four .proto files a trace request needs, moved under ``_PREFIX``."""
    files = []
    for module in (common_pb2, resource_pb2, trace_pb2, trace_service_pb2):
        proto = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(proto)
        files.append(proto)
    renamed = {proto.name: f"{_PREFIX.replace('.', '/')}/{proto.name}" for proto in files}
    for proto in files:
        proto.name = renamed[proto.name]
        proto.package = f"{_PREFIX}.{proto.package}"
        proto.dependency[:] = [renamed.get(name, name) for name in proto.dependency]
        proto.ClearField("service")  # only messages are needed; a service would pull in more
        for message in proto.message_type:
            _rename_types(message)
            if message.name == "Span":
                _raw_attributes(message)
    return files


def _rename_types(message: descriptor_pb2.DescriptorProto) -> None:
    for field in message.field:
        if field.type_name.startswith(".opentelemetry."):
            field.type_name = f".{_PREFIX}{field.type_name}"
    for nested in message.nested_type:
        _rename_types(nested)


def _raw_attributes(span: descriptor_pb2.DescriptorProto) -> None:
    for field in span.field:
        if field.name in ("attributes", "status"):
            field.type = _FieldProto.TYPE_BYTES
            field.ClearField("type_name")


_STATUS_CODE_TAG: Final = 0x18  # Status.code: field 3, varint


def status_code(raw: bytes) -> int:
    """The code of a span's serialized ``Status`` (``Span.status`` of this schema): 0 unset, 1 ok, 2 error.

    ``status`` is bytes here too: reading ``span.status.code`` through a message wrapper costs more
    than the rest of a span's span metrics. A status without a message is 0 or 2 bytes (what SDKs
    send for unset, ok and error) and is read off the bytes; anything else is parsed.
    """
    if not raw:
        return 0
    if len(raw) == 2 and raw[0] == _STATUS_CODE_TAG and raw[1] < 0x80:
        return raw[1]
    code: int = Status.FromString(raw).code
    return code


def _build() -> tuple[type[Message], type[Message]]:
    pool = descriptor_pool.DescriptorPool()
    for proto in _renamed_files():
        pool.Add(proto)
    request = pool.FindMessageTypeByName(f"{_PREFIX}.opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest")
    span = pool.FindMessageTypeByName(f"{_PREFIX}.opentelemetry.proto.trace.v1.Span")
    return message_factory.GetMessageClass(request), message_factory.GetMessageClass(span)


RawAttributesTraceRequest, RawAttributesSpan = _build()
"""Parse the bytes of an ``ExportTraceServiceRequest`` / ``Span``; span attributes are ``KeyValue`` bytes."""
