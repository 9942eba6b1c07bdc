"""Coverage-guided fuzzing of proto_handlers with atheris: optional, and not part of the test run.

The hypothesis properties in tests/unit/test_fuzz_proto_handlers.py run with every ``make test``;
this harness is for longer hunts, guided by coverage of proto_handlers. It checks the same
property: any input decodes, or raises DecodeError / PayloadTooLargeError / UnsupportedEncodingError.

    .venv/bin/pip install atheris
    .venv/bin/python tests/fuzz/atheris_proto_handlers.py -atheris_runs=500000 -max_len=65536 \
        /tmp/fuzz-corpus tests/data/hostile/pb tests/data/hostile/json tests/data/hostile/enc

libFuzzer writes new interesting inputs to the first directory (seeded by the others) and a
``crash-*`` file with the input of any failure.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from proto_handlers import (
        DecodeError,
        PayloadTooLargeError,
        UnsupportedEncodingError,
        decode_request,
        decompress,
        split_request,
    )

WIRE_ERRORS = (DecodeError, PayloadTooLargeError, UnsupportedEncodingError)
SIGNALS = ("traces", "metrics", "logs")
ENCODINGS = (None, "gzip", "zstd", "deflate")
LIMIT = 1 << 20


def test_one_input(data: bytes) -> None:
    """The first byte picks signal, wire format and Content-Encoding; the rest is the body."""
    if not data:
        return
    choice, body = data[0], data[1:]
    signal = SIGNALS[choice % 3]
    fmt = "json" if choice & 0x04 else "protobuf"
    encoding = ENCODINGS[(choice >> 3) % 4]
    try:
        payload = decompress(body, encoding, LIMIT)
        assert len(payload) <= LIMIT
        decode_request(signal, payload, fmt)  # type: ignore[call-overload]
        if fmt == "protobuf":
            split_request(signal, payload, 64)  # type: ignore[arg-type]
    except WIRE_ERRORS:
        pass


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
