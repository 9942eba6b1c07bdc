"""OTLP/JSON -> protobuf wire bytes in one pass over the parsed JSON, for upb to read in C.

``json_format.ParseDict`` builds a message field by field in Python (about 6 s for a 20 MiB
body, all of it on the event loop), puts the ``repr`` of the offending sub-document in its error
messages (an echo of the payload, and a ``RecursionError`` when that is deeply nested arrays), and
accepts some invalid input (a string where a message belongs, bad base64). This module walks the
tree ``orjson`` returns once, with a table per message type built from the descriptors at import,
writes the protobuf encoding of the same message, and lets ``FromString`` (upb, in C) build the
message from it: about 6x faster, with errors that name the path of the bad field and never echo a
value. tests/unit/test_fuzz_proto_handlers.py checks it against ParseDict.

The mapping is proto3 JSON as OTLP profiles it (the spec's "JSON Protobuf Encoding"):

* keys are lowerCamelCase or the original field names; unknown keys are ignored (the OTLP spec
  says receivers MUST ignore them); the same field twice (``traceId`` and ``trace_id``) or two
  members of one oneof are refused; ``null`` means "not set", but not inside an array;
* ``trace_id``, ``span_id`` and ``parent_span_id`` are hex (empty = no id); other ``bytes`` are
  base64, standard or URL-safe, padded or not, and strictly checked;
* integers are JSON numbers or decimal strings (64-bit ones usually come as strings), in the
  field's range; a number with an exponent or fraction is accepted only if its value is integral;
* doubles are numbers, numeric strings, or the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``;
* enums are integers (OTLP's choice) or value names; an unknown name leaves the field unset, as
  for an unknown field;
* a message is a JSON object, a repeated field an array, a string a string, a bool a bool.

Nesting is limited as upb limits the protobuf encoding: a request and 100 levels of messages
below it, so every body accepted here re-encodes to protobuf that any upb decoder accepts.
"""

from __future__ import annotations

import base64
import binascii
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias

from google.protobuf.descriptor import Descriptor, FieldDescriptor  # type: ignore[import-untyped, unused-ignore]
from opentelemetry.proto.common.v1.common_pb2 import KeyValue

MAX_DEPTH: Final = 100
"""Message levels below the request, as upb's default decode depth limit allows."""

_ID_SIZES: Final = {"trace_id": 16, "span_id": 8, "parent_span_id": 8}
"""The ``bytes`` fields OTLP/JSON writes as hex, and their sizes (a 16-byte trace id, 8-byte span ids)."""

_WIRE_VARINT: Final = 0
_WIRE_I64: Final = 1
_WIRE_LEN: Final = 2
_WIRE_I32: Final = 5

_SMALL_VARINTS: Final = tuple(bytes((n,)) for n in range(128))
_U64: Final = 1 << 64


class JsonFieldError(ValueError):
    """A value that does not fit its field; ``path`` collects the location, innermost first."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path: list[str | int] = []
        self.is_id = False

    def location(self) -> str:
        out: list[str] = []
        for part in reversed(self.path):
            if isinstance(part, int):
                out.append(f"[{part}]")
            else:
                out.append(f".{part}" if out else part)
        return "".join(out)


def _varint(value: int) -> bytes:
    """The base-128 varint of a non-negative integer below 2**64."""
    if value < 128:
        return _SMALL_VARINTS[value]
    out = bytearray()
    while value > 127:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def json_type(value: object) -> str:
    """How an error reason names a JSON value's type (shared with decode.py)."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "null"


# --- scalar values -----------------------------------------------------------------------------

_JSON_NUMBER_CHARS: Final = frozenset("0123456789+-.eE")
_MAX_DIGITS: Final = 100
"""Longer digit strings are refused before ``int()``, whose cost grows with the square of the length."""


def _integer(value: Any, low: int, high: int) -> int:
    """A JSON number or decimal string holding an integer in ``[low, high]``."""
    kind = type(value)
    if kind is int:
        number: int = value
    elif kind is str:
        digits = value[1:] if value[:1] == "-" else value
        if digits.isascii() and digits.isdigit() and len(digits) <= _MAX_DIGITS:
            number = int(value)
        else:
            number = _integral_float(_numeric_string(value, "an integer"))
    elif kind is float:
        number = _integral_float(value)
    else:
        raise JsonFieldError(f"expected an integer, got {json_type(value)}")
    if not low <= number <= high:
        raise JsonFieldError(f"integer out of range [{low}, {high}]")
    return number


def _integral_float(value: float) -> int:
    if not value.is_integer():  # also false for inf and nan
        raise JsonFieldError("expected an integer, got a number with a fraction")
    return int(value)


def _numeric_string(value: str, what: str) -> float:
    """A string holding a JSON number (with exponent or fraction); no other float() spellings."""
    if not value or len(value) > 64 or not _JSON_NUMBER_CHARS.issuperset(value):
        raise JsonFieldError(f"expected {what}, got a string that is not a number")
    try:
        number = float(value)
    except ValueError:
        raise JsonFieldError(f"expected {what}, got a string that is not a number") from None
    if not math.isfinite(number):
        raise JsonFieldError(f"expected {what}, got a number out of range")
    return number


_SPECIAL_DOUBLES: Final = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _double(value: Any) -> float:
    kind = type(value)
    if kind is float:
        return float(value)
    if kind is int:
        try:
            return float(value)
        except OverflowError:  # orjson's integers fit 64 bits, but a dict built in Python may not
            raise JsonFieldError("number out of the range of a double") from None
    if kind is str:
        special = _SPECIAL_DOUBLES.get(value)
        return special if special is not None else _numeric_string(value, "a number")
    raise JsonFieldError(f"expected a number, got {json_type(value)}")


_INT32: Final = (-(1 << 31), (1 << 31) - 1)
_INT64: Final = (-(1 << 63), (1 << 63) - 1)
_UINT32: Final = (0, (1 << 32) - 1)
_UINT64: Final = (0, (1 << 64) - 1)

Encoder: TypeAlias = Callable[[Any, "FieldSpec"], bytes]
"""Encodes one JSON value of a scalar field, without the tag; raises ``JsonFieldError``."""


def _enc_int32(value: Any, spec: FieldSpec) -> bytes:
    number = _integer(value, *_INT32)
    return _varint(number if number >= 0 else number + _U64)


def _enc_int64(value: Any, spec: FieldSpec) -> bytes:
    number = _integer(value, *_INT64)
    return _varint(number if number >= 0 else number + _U64)


def _enc_uint32(value: Any, spec: FieldSpec) -> bytes:
    return _varint(_integer(value, *_UINT32))


def _enc_uint64(value: Any, spec: FieldSpec) -> bytes:
    return _varint(_integer(value, *_UINT64))


def _enc_sint32(value: Any, spec: FieldSpec) -> bytes:
    number = _integer(value, *_INT32)
    return _varint((number << 1) ^ (number >> 31))


def _enc_sint64(value: Any, spec: FieldSpec) -> bytes:
    number = _integer(value, *_INT64)
    return _varint((number << 1) ^ (number >> 63))


_PACK_U32: Final = struct.Struct("<I").pack
_PACK_I32: Final = struct.Struct("<i").pack
_PACK_U64: Final = struct.Struct("<Q").pack
_PACK_I64: Final = struct.Struct("<q").pack
_PACK_DOUBLE: Final = struct.Struct("<d").pack
_PACK_FLOAT: Final = struct.Struct("<f").pack


def _enc_fixed32(value: Any, spec: FieldSpec) -> bytes:
    return _PACK_U32(_integer(value, *_UINT32))


def _enc_sfixed32(value: Any, spec: FieldSpec) -> bytes:
    return _PACK_I32(_integer(value, *_INT32))


def _enc_fixed64(value: Any, spec: FieldSpec) -> bytes:
    return _PACK_U64(_integer(value, *_UINT64))


def _enc_sfixed64(value: Any, spec: FieldSpec) -> bytes:
    return _PACK_I64(_integer(value, *_INT64))


def _enc_double(value: Any, spec: FieldSpec) -> bytes:
    return _PACK_DOUBLE(_double(value))


def _enc_float(value: Any, spec: FieldSpec) -> bytes:
    number = _double(value)
    try:
        return _PACK_FLOAT(number)
    except OverflowError:
        raise JsonFieldError("number out of the range of a float") from None


def _enc_bool(value: Any, spec: FieldSpec) -> bytes:
    if value is True:
        return b"\x01"
    if value is False:
        return b"\x00"
    raise JsonFieldError(f"expected true or false, got {json_type(value)}")


def _enc_enum(value: Any, spec: FieldSpec) -> bytes:
    if type(value) is str:
        number = spec.enum_names.get(value)
        if number is None:
            digits = value[1:] if value[:1] == "-" else value
            if not (digits.isascii() and digits.isdigit()):
                raise _UnknownEnumName
            number = _integer(value, *_INT32)
    else:
        number = _integer(value, *_INT32)
    return _varint(number if number >= 0 else number + _U64)


class _UnknownEnumName(Exception):
    """An enum value name this schema does not know: the field is left unset, like an unknown key."""


_URLSAFE_TO_STANDARD: Final = str.maketrans("-_", "+/")


def _enc_bytes(value: Any, spec: FieldSpec) -> bytes:
    if type(value) is not str:
        raise JsonFieldError(f"expected a base64 string, got {json_type(value)}")
    text = value.translate(_URLSAFE_TO_STANDARD)
    text += "=" * (-len(text) % 4)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise JsonFieldError("expected base64 (standard or URL-safe alphabet)") from None
    return _varint(len(raw)) + raw


def _enc_id(value: Any, spec: FieldSpec) -> bytes:
    """OTLP/JSON id: exactly ``2 * size`` hex digits (any case), or "" for no id."""
    size = spec.id_size
    kind = "trace" if size == _ID_SIZES["trace_id"] else "span"
    if type(value) is not str:
        raise _id_error(f"a {kind} id must be a hex string, not {json_type(value)}")
    if not value:
        return b"\x00"
    if len(value) != 2 * size:
        raise _id_error(
            f"a {kind} id must be {2 * size} hex digits ({size} bytes; OTLP/JSON ids are hex, not base64),"
            f" got {len(value)} characters"
        )
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raw = b""
    if len(raw) != size:  # fromhex skips whitespace, so a right-length string can still be short
        raise _id_error(f"a {kind} id must be {2 * size} hex digits (OTLP/JSON ids are hex, not base64)")
    return _SMALL_VARINTS[size] + raw


def _id_error(reason: str) -> JsonFieldError:
    error = JsonFieldError(reason)
    error.is_id = True
    return error


def _enc_string(value: Any, spec: FieldSpec) -> bytes:
    if type(value) is not str:
        raise JsonFieldError(f"expected a string, got {json_type(value)}")
    try:
        raw = value.encode()
    except UnicodeEncodeError:  # a lone surrogate; orjson never produces one, but a dict could hold it
        raise JsonFieldError("invalid UTF-8 (a lone surrogate)") from None
    return _varint(len(raw)) + raw


_T = FieldDescriptor
_SCALARS: Final[dict[int, tuple[int, Encoder]]] = {
    _T.TYPE_INT32: (_WIRE_VARINT, _enc_int32),
    _T.TYPE_INT64: (_WIRE_VARINT, _enc_int64),
    _T.TYPE_UINT32: (_WIRE_VARINT, _enc_uint32),
    _T.TYPE_UINT64: (_WIRE_VARINT, _enc_uint64),
    _T.TYPE_SINT32: (_WIRE_VARINT, _enc_sint32),
    _T.TYPE_SINT64: (_WIRE_VARINT, _enc_sint64),
    _T.TYPE_BOOL: (_WIRE_VARINT, _enc_bool),
    _T.TYPE_ENUM: (_WIRE_VARINT, _enc_enum),
    _T.TYPE_FIXED64: (_WIRE_I64, _enc_fixed64),
    _T.TYPE_SFIXED64: (_WIRE_I64, _enc_sfixed64),
    _T.TYPE_DOUBLE: (_WIRE_I64, _enc_double),
    _T.TYPE_FIXED32: (_WIRE_I32, _enc_fixed32),
    _T.TYPE_SFIXED32: (_WIRE_I32, _enc_sfixed32),
    _T.TYPE_FLOAT: (_WIRE_I32, _enc_float),
    _T.TYPE_STRING: (_WIRE_LEN, _enc_string),
    _T.TYPE_BYTES: (_WIRE_LEN, _enc_bytes),
}


# --- message tables ----------------------------------------------------------------------------

_KIND_SCALAR: Final = 0
_KIND_MESSAGE: Final = 1
_KIND_REPEATED_SCALAR: Final = 2
_KIND_REPEATED_MESSAGE: Final = 3
_KIND_STRING: Final = 4
"""A singular string field: the commonest scalar, encoded inline by the walk."""


@dataclass(slots=True, eq=False)
class MessageSpec:
    """A message type: its fields by JSON key, under both the lowerCamelCase and the proto name."""

    name: str
    fields: dict[str, FieldSpec] = field(default_factory=dict)


_NOT_A_MESSAGE: Final = MessageSpec("(not a message field)")


def _not_a_scalar(value: Any, spec: FieldSpec) -> bytes:
    raise AssertionError("message fields are encoded by the walk")


@dataclass(slots=True, eq=False)
class FieldSpec:
    """What the walker needs to know about one field, precomputed from its descriptor."""

    kind: int
    tag: bytes
    bit: int
    """The field's bit, plus its oneof's bit for members of a (real) oneof: finds duplicates."""
    field_bit: int
    encode: Encoder = _not_a_scalar
    packed: bool = False
    message: MessageSpec = _NOT_A_MESSAGE
    enum_names: dict[str, int] = field(default_factory=dict)
    id_size: int = 0


_SPECS: Final[dict[str, MessageSpec]] = {}
"""Every table built so far, by full message name: one per message type, so specs can be compared by identity."""


def message_spec(descriptor: Descriptor) -> MessageSpec:
    """The walker's table for ``descriptor`` and every message type reachable from it."""
    cache = _SPECS
    found = cache.get(descriptor.full_name)
    if found is not None:
        return found
    spec = MessageSpec(descriptor.full_name)
    cache[descriptor.full_name] = spec  # before the fields: message types may be recursive
    # One bit per field number, then one per oneof above them, to find duplicates with an int.
    first_oneof_bit = max((fd.number for fd in descriptor.fields), default=0) + 1
    oneof_bits = {oneof.name: 1 << (first_oneof_bit + index) for index, oneof in enumerate(descriptor.oneofs)}
    for fd in descriptor.fields:
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            raise NotImplementedError(f"map field {fd.full_name}: OTLP has none")
        if fd.type == _T.TYPE_GROUP:
            raise NotImplementedError(f"group field {fd.full_name}: OTLP has none")
        field_bit = 1 << fd.number
        bit = field_bit
        oneof = fd.containing_oneof
        if oneof is not None and not _is_synthetic(fd):
            bit |= oneof_bits[oneof.name]
        repeated = bool(fd.is_repeated)
        if fd.type == _T.TYPE_MESSAGE:
            entry = FieldSpec(
                kind=_KIND_REPEATED_MESSAGE if repeated else _KIND_MESSAGE,
                tag=_varint(fd.number << 3 | _WIRE_LEN),
                bit=bit,
                field_bit=field_bit,
                message=message_spec(fd.message_type),
            )
        else:
            wire, encode = _SCALARS[fd.type]
            id_size = _ID_SIZES.get(fd.name, 0) if fd.type == _T.TYPE_BYTES else 0
            if id_size:
                encode = _enc_id
            packed = repeated and wire != _WIRE_LEN
            entry = FieldSpec(
                kind=_KIND_REPEATED_SCALAR if repeated else _KIND_STRING if fd.type == _T.TYPE_STRING else _KIND_SCALAR,
                tag=_varint(fd.number << 3 | (_WIRE_LEN if packed else wire)),
                bit=bit,
                field_bit=field_bit,
                encode=encode,
                packed=packed,
                enum_names={value.name: value.number for value in fd.enum_type.values} if fd.enum_type else {},
                id_size=id_size,
            )
        spec.fields[fd.json_name] = entry
        spec.fields[fd.name] = entry
    return spec


def _is_synthetic(fd: FieldDescriptor) -> bool:
    """Whether ``fd``'s oneof is the synthetic one of a proto3 ``optional`` field (not a real choice)."""
    oneof = fd.containing_oneof
    return len(oneof.fields) == 1 and oneof.name == f"_{fd.name}"


# --- the walk ----------------------------------------------------------------------------------


Writer: TypeAlias = Callable[[bytes], None]
"""Appends a piece of encoded bytes to the message being written (``list.append``, joined at the end)."""

_CHUNK: Final = 1024
"""Array elements encoded per join: ``b"".join`` holds an 80-byte buffer record per piece while it
runs, so joining all the pieces of 1M empty spans at once cost 250 MB; per chunk it is 240 KB."""


def encode_message(obj: Any, spec: MessageSpec, depth: int = 0) -> bytes:
    """The protobuf encoding of the JSON object ``obj`` as the message ``spec`` describes.

    Raises ``JsonFieldError`` with ``path`` naming where the problem is.
    """
    if type(obj) is not dict:
        raise JsonFieldError(f"expected an object, got {json_type(obj)}")
    if depth > MAX_DEPTH:
        raise JsonFieldError(f"messages nested more than {MAX_DEPTH} levels deep")
    fields = spec.fields
    out: list[bytes] = []
    append = out.append
    seen = 0
    for key, value in obj.items():
        entry = fields.get(key)
        if entry is None or value is None:
            continue  # unknown fields are ignored; null means "not set"
        try:
            if seen & entry.bit:
                raise JsonFieldError(
                    "field given twice" if seen & entry.field_bit else "another field of the same oneof is set"
                )
            seen |= entry.bit
            kind = entry.kind
            if kind == _KIND_STRING and type(value) is str:
                raw = value.encode()
                size = len(raw)
                append(entry.tag)
                append(_SMALL_VARINTS[size] if size < 128 else _varint(size))
                append(raw)
            elif kind == _KIND_MESSAGE:
                inner = encode_message(value, entry.message, depth + 1)
                append(entry.tag)
                append(_varint(len(inner)))
                append(inner)
            elif kind in (_KIND_SCALAR, _KIND_STRING):
                try:
                    encoded = entry.encode(value, entry)
                except _UnknownEnumName:
                    seen &= ~entry.bit
                    continue
                append(entry.tag)
                append(encoded)
            elif type(value) is not list:
                raise JsonFieldError(f"expected an array, got {json_type(value)}")
            elif kind == _KIND_REPEATED_MESSAGE:
                if entry.message is _KEY_VALUE:
                    _encode_key_values(value, entry, depth + 1, append)
                else:
                    _encode_repeated_message(value, entry, depth + 1, append)
            else:
                _encode_repeated_scalar(value, entry, append)
        except JsonFieldError as error:
            error.path.append(key)
            raise
        except UnicodeEncodeError:  # a lone surrogate: orjson never makes one, a dict built in Python may
            surrogate = JsonFieldError("invalid UTF-8 (a lone surrogate)")
            surrogate.path.append(key)
            raise surrogate from None
    return b"".join(out)


def _encode_element(item: Any, spec: MessageSpec, depth: int, index: int) -> bytes:
    """One message of a JSON array, its index added to the path of any error inside it."""
    try:
        if item is None:
            raise JsonFieldError("null is not allowed in an array")
        return encode_message(item, spec, depth)
    except JsonFieldError as error:
        error.path.append(index)
        raise


def _encode_repeated_message(items: list[Any], entry: FieldSpec, depth: int, append: Writer) -> None:
    tag = entry.tag
    spec = entry.message
    for start in range(0, len(items), _CHUNK):
        parts: list[bytes] = []
        add = parts.append
        for index, item in enumerate(items[start : start + _CHUNK], start):
            inner = _encode_element(item, spec, depth, index)
            add(tag)
            add(_varint(len(inner)))
            add(inner)
        append(b"".join(parts))


def _encode_repeated_scalar(items: list[Any], entry: FieldSpec, append: Writer) -> None:
    encode = entry.encode
    encoded = bytearray() if entry.packed else None
    for index, item in enumerate(items):
        try:
            if item is None:
                raise JsonFieldError("null is not allowed in an array")
            try:
                value = encode(item, entry)
            except _UnknownEnumName:
                raise JsonFieldError("unknown enum value name") from None
        except JsonFieldError as error:
            error.path.append(index)
            raise
        if encoded is not None:
            encoded += value
        else:
            append(entry.tag)
            append(value)
    if encoded:
        append(entry.tag)
        append(_varint(len(encoded)))
        append(bytes(encoded))


# --- the hot shape: attributes -----------------------------------------------------------------

_KEY_VALUE: Final = message_spec(KeyValue.DESCRIPTOR)
_INT64_MIN, _INT64_MAX = _INT64


def _encode_key_values(items: list[Any], entry: FieldSpec, depth: int, append: Writer) -> None:
    """``repeated KeyValue``, with the common ``{"key": k, "value": {"<scalar>Value": v}}`` done inline.

    Attributes are most of a span's fields, and nearly all of them have this shape; anything else
    (nested values, unusual types, errors) takes the general walk, which gives the same bytes.
    """
    tag = entry.tag
    small = _SMALL_VARINTS
    for start in range(0, len(items), _CHUNK):
        parts: list[bytes] = []
        add = parts.append
        for index, item in enumerate(items[start : start + _CHUNK], start):
            if type(item) is dict and len(item) == 2:
                key = item.get("key")
                value = item.get("value")
                if type(key) is str and type(value) is dict and len(value) == 1 and key.isascii():
                    # ASCII: encode() cannot fail and len() is the size. Sizes are kept under 128 so
                    # that every length is one byte. KeyValue{key = 1, value = 2}: 0a len key 12 len AnyValue.
                    [(name, scalar)] = value.items()
                    size = len(key)
                    if name == "stringValue" and type(scalar) is str and scalar.isascii():
                        value_size = len(scalar)
                        if size + value_size < 120:  # AnyValue{string_value = 1}: 0a len string
                            add(
                                b"".join(
                                    (
                                        tag,
                                        small[size + value_size + 6],
                                        b"\x0a",
                                        small[size],
                                        key.encode(),
                                        b"\x12",
                                        small[value_size + 2],
                                        b"\x0a",
                                        small[value_size],
                                        scalar.encode(),
                                    )
                                )
                            )
                            continue
                    encoded = _scalar_any_value(name, scalar)
                    if encoded is not None:
                        value_size = len(encoded)
                        if size + value_size < 124:
                            add(
                                b"".join(
                                    (
                                        tag,
                                        small[size + value_size + 4],
                                        b"\x0a",
                                        small[size],
                                        key.encode(),
                                        b"\x12",
                                        small[value_size],
                                        encoded,
                                    )
                                )
                            )
                            continue
            inner = _encode_element(item, _KEY_VALUE, depth, index)
            add(tag)
            add(_varint(len(inner)))
            add(inner)
        append(b"".join(parts))


def _scalar_any_value(name: str, value: Any) -> bytes | None:
    """The encoded ``AnyValue`` of one simple, valid scalar member; None for anything else."""
    kind = type(value)
    if name == "stringValue":
        if kind is str:
            try:
                raw: bytes = value.encode()
            except UnicodeEncodeError:
                return None
            return b"\x0a" + _varint(len(raw)) + raw  # string_value = 1
    elif name == "intValue":
        if kind is str and value.isascii() and value.isdigit() and len(value) < 19:
            number = int(value)
        elif kind is int and _INT64_MIN <= value <= _INT64_MAX:
            number = value
        else:
            return None
        return b"\x18" + _varint(number if number >= 0 else number + _U64)  # int_value = 3
    elif name == "boolValue":
        if kind is bool:
            return b"\x10\x01" if value else b"\x10\x00"  # bool_value = 2
    elif name == "doubleValue" and kind is float:
        return b"\x21" + _PACK_DOUBLE(value)  # double_value = 4
    return None
