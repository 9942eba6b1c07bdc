"""proto_handlers.compression: Content-Encoding with a hard cap on the decompressed size."""

from __future__ import annotations

import struct
import tracemalloc
import zlib

import pytest
import zstandard

from proto_handlers import (
    DecodeError,
    PayloadTooLargeError,
    UnsupportedEncodingError,
    compress,
    decompress,
)

PAYLOAD = b"OTLP payload " * 1000
MIB = 1 << 20
GIB = 1 << 30
ENCODINGS = ["gzip", "zstd", "deflate"]


def gzip_of_zeros(size: int) -> bytes:
    """One valid gzip member that inflates to ``size`` zero bytes (a multiple of 1 MiB), built cheaply.

    After a full flush the deflate stream restarts from an empty window, so compressing the same
    1 MiB again yields the same bytes: the member is those bytes repeated, plus the trailer.
    """
    zeros = bytes(MIB)
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    first = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    again = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    final_block = compressor.flush()[:-8]  # drop the trailer written for 2 MiB
    crc = 0
    for _ in range(size // MIB):
        crc = zlib.crc32(zeros, crc)
    trailer = struct.pack("<II", crc, size & 0xFFFFFFFF)
    return first + again * (size // MIB - 1) + final_block + trailer


def zstd_of_zeros(size: int) -> bytes:
    """One zstd frame (no content size: streamed) that inflates to ``size`` zero bytes."""
    zeros = bytes(MIB)
    compressor = zstandard.ZstdCompressor(level=1).compressobj()
    parts = [compressor.compress(zeros) for _ in range(size // MIB)]
    parts.append(compressor.flush())
    return b"".join(parts)


def refused_with_peak_memory(body: bytes, encoding: str, max_size: int) -> int:
    """Assert ``body`` is refused as too large; return the peak Python heap used meanwhile.

    tracemalloc sees every bytes object the decompressors create, so a body inflated whole would
    peak at its full size; refused at the limit, the peak is a few copies of the limit and the input.
    """
    tracemalloc.start()
    try:
        with pytest.raises(PayloadTooLargeError) as caught:
            decompress(body, encoding, max_size)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert max_size == caught.value.limit
    return peak


@pytest.mark.parametrize("encoding", [None, "", "identity", " Identity "])
def test_identity_returns_the_body_unchanged(encoding: str | None) -> None:
    """No encoding, an empty one or identity mean the body is already plain."""
    assert PAYLOAD == decompress(PAYLOAD, encoding, len(PAYLOAD))


def test_identity_body_over_the_limit_is_refused() -> None:
    """The size limit applies to unencoded bodies too."""
    with pytest.raises(PayloadTooLargeError) as caught:
        decompress(PAYLOAD, None, len(PAYLOAD) - 1)
    assert len(PAYLOAD) - 1 == caught.value.limit


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_compress_then_decompress_gives_the_payload_back(encoding: str) -> None:
    """compress and decompress are inverse for every supported encoding."""
    assert PAYLOAD == decompress(compress(PAYLOAD, encoding), encoding, MIB)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_compress_actually_compresses(encoding: str) -> None:
    """A repetitive payload comes out much smaller than it went in."""
    assert len(compress(PAYLOAD, encoding)) < len(PAYLOAD) // 10


@pytest.mark.parametrize("header", ["GZIP", " gzip ", "x-gzip", "X-Gzip"])
def test_encoding_names_are_case_insensitive_trimmed_and_x_gzip_is_gzip(header: str) -> None:
    """Content-Encoding values are matched case-insensitively, without surrounding spaces."""
    assert PAYLOAD == decompress(compress(PAYLOAD, "gzip"), header, len(PAYLOAD))


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_output_exactly_at_the_limit_is_accepted(encoding: str) -> None:
    """The limit is inclusive: max_size bytes of output are fine."""
    assert PAYLOAD == decompress(compress(PAYLOAD, encoding), encoding, len(PAYLOAD))


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_output_one_byte_over_the_limit_is_refused(encoding: str) -> None:
    """One byte more than max_size raises PayloadTooLargeError carrying the limit."""
    with pytest.raises(PayloadTooLargeError) as caught:
        decompress(compress(PAYLOAD, encoding), encoding, len(PAYLOAD) - 1)
    assert len(PAYLOAD) - 1 == caught.value.limit


def test_gzip_bomb_is_refused_without_inflating_past_the_limit() -> None:
    """1 GiB of zeros in ~1 MiB of gzip is refused after about max_size bytes of output."""
    assert refused_with_peak_memory(gzip_of_zeros(GIB), "gzip", MIB) < 8 * MIB


def test_zstd_bomb_is_refused_without_inflating_past_the_limit() -> None:
    """1 GiB of zeros in ~32 KiB of zstd (no content size in the header) is refused at the limit."""
    assert refused_with_peak_memory(zstd_of_zeros(GIB), "zstd", MIB) < 8 * MIB


def test_concatenated_gzip_members_decompress_to_their_concatenation() -> None:
    """A gzip body may hold several members back to back (RFC 1952 §2.2)."""
    body = compress(b"first,", "gzip") + compress(b"second", "gzip")
    assert b"first,second" == decompress(body, "gzip", 100)


def test_zero_padding_after_the_last_gzip_member_is_tolerated() -> None:
    """Trailing NUL padding (tape-style) is skipped, as Python's gzip module does."""
    assert PAYLOAD == decompress(compress(PAYLOAD, "gzip") + bytes(16), "gzip", len(PAYLOAD))


def test_size_limit_counts_all_gzip_members() -> None:
    """The cap is on the total output, not per member."""
    member = compress(PAYLOAD, "gzip")
    with pytest.raises(PayloadTooLargeError):
        decompress(member + member, "gzip", len(PAYLOAD) * 2 - 1)


def test_zstd_frame_without_content_size_decompresses() -> None:
    """Streaming zstd encoders omit the content size; such frames are read all the same."""
    body = zstandard.ZstdCompressor(write_content_size=False).compress(PAYLOAD)
    assert zstandard.CONTENTSIZE_UNKNOWN == zstandard.get_frame_parameters(body).content_size
    assert PAYLOAD == decompress(body, "zstd", len(PAYLOAD))


def test_concatenated_zstd_frames_decompress_to_their_concatenation() -> None:
    """Every frame of a zstd body is decompressed, with and without checksums."""
    body = zstandard.ZstdCompressor(write_checksum=True).compress(b"first,") + compress(b"second", "zstd")
    assert b"first,second" == decompress(body, "zstd", 100)


def test_zstd_skippable_frames_are_ignored() -> None:
    """Skippable frames (magic 0x184D2A5?) carry metadata, not content."""
    skippable = (0x184D2A53).to_bytes(4, "little") + (3).to_bytes(4, "little") + b"xyz"
    body = skippable + compress(PAYLOAD, "zstd") + skippable
    assert PAYLOAD == decompress(body, "zstd", len(PAYLOAD))


def test_raw_deflate_without_zlib_header_is_accepted() -> None:
    """Some clients send a bare RFC 1951 stream as "deflate"; it is recognised by its missing header."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = compressor.compress(PAYLOAD) + compressor.flush()
    assert PAYLOAD == decompress(body, "deflate", len(PAYLOAD))


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_truncated_body_raises_decode_error(encoding: str) -> None:
    """A body cut short is invalid, however little is missing."""
    body = compress(PAYLOAD, encoding)
    with pytest.raises(DecodeError) as caught:
        decompress(body[:-1], encoding, len(PAYLOAD))
    assert f"invalid {encoding} body: unexpected end of data (truncated?)" == caught.value.reason


def test_truncated_gzip_raises_decode_error_at_any_cut() -> None:
    """Cutting the gzip stream in its header, its data or its trailer is detected."""
    body = compress(PAYLOAD, "gzip")
    for cut in (1, 5, len(body) // 2, len(body) - 4):
        with pytest.raises(DecodeError) as caught:
            decompress(body[:cut], "gzip", len(PAYLOAD))
        assert "invalid gzip body: unexpected end of data (truncated?)" == caught.value.reason


def test_truncated_zstd_frame_header_raises_decode_error() -> None:
    """A zstd body that ends inside the frame header decodes nothing but is still refused."""
    with pytest.raises(DecodeError) as caught:
        decompress(compress(PAYLOAD, "zstd")[:4], "zstd", len(PAYLOAD))
    assert "invalid zstd body: unexpected end of data (truncated?)" == caught.value.reason


def test_gzip_with_a_wrong_checksum_raises_decode_error() -> None:
    """The CRC-32 in the gzip trailer is verified."""
    body = bytearray(compress(PAYLOAD, "gzip"))
    body[-8] ^= 0xFF
    with pytest.raises(DecodeError) as caught:
        decompress(bytes(body), "gzip", len(PAYLOAD))
    assert "invalid gzip body: Error -3 while decompressing data: incorrect data check" == caught.value.reason


def test_data_that_is_not_gzip_raises_decode_error() -> None:
    """A plain body labelled gzip is a client error (400), not an internal one."""
    with pytest.raises(DecodeError) as caught:
        decompress(PAYLOAD, "gzip", len(PAYLOAD))
    assert "invalid gzip body: Error -3 while decompressing data: incorrect header check" == caught.value.reason


def test_garbage_after_a_zstd_frame_raises_decode_error() -> None:
    """Bytes after the last frame must themselves be a frame."""
    with pytest.raises(DecodeError) as caught:
        decompress(compress(PAYLOAD, "zstd") + b"garbage!", "zstd", len(PAYLOAD))
    assert caught.value.reason.startswith("invalid zstd body: ")


def test_garbage_after_a_deflate_stream_raises_decode_error() -> None:
    """A deflate body holds exactly one stream."""
    with pytest.raises(DecodeError) as caught:
        decompress(compress(PAYLOAD, "deflate") + b"garbage!", "deflate", len(PAYLOAD))
    assert "invalid deflate body: unexpected data after the end of the stream" == caught.value.reason


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_empty_compressed_body_raises_decode_error(encoding: str) -> None:
    """An empty body is not a valid gzip, zstd or deflate stream."""
    with pytest.raises(DecodeError):
        decompress(b"", encoding, 100)


def test_unknown_encoding_raises_unsupported_encoding_error_with_the_encoding() -> None:
    """An encoding the gateway does not implement is reported as received (-> 415)."""
    with pytest.raises(UnsupportedEncodingError) as caught:
        decompress(PAYLOAD, "br", len(PAYLOAD))
    assert "br" == caught.value.encoding


def test_compress_with_an_unknown_encoding_raises_unsupported_encoding_error() -> None:
    """compress supports the same encodings as decompress."""
    with pytest.raises(UnsupportedEncodingError) as caught:
        compress(PAYLOAD, "lz4")
    assert "lz4" == caught.value.encoding


@pytest.mark.parametrize("encoding", ["none", "identity", ""])
def test_compress_without_encoding_returns_the_body(encoding: str) -> None:
    """Exporters configured with compression "none" send the body as is."""
    assert PAYLOAD == compress(PAYLOAD, encoding)


def test_negative_limit_is_a_programming_error() -> None:
    """A negative cap would mean "unlimited" to zlib, so it is refused outright."""
    with pytest.raises(ValueError, match="max_size must be >= 0"):
        decompress(compress(PAYLOAD, "gzip"), "gzip", -1)
