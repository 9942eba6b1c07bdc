"""Content-Encoding for OTLP bodies: inflate with a hard output cap, deflate for exporters.

``decompress`` streams the decompression and stops as soon as the output would pass ``max_size``,
so a zip bomb (a few KiB that inflate to GiBs) costs at most ``max_size`` bytes of memory and the
CPU to produce them, never the full inflation. The input is always complete in memory (HTTP bodies
are read with their own limit before this runs), so "streaming" here means bounded *output*.

Encodings follow what the OpenTelemetry Collector's confighttp accepts: ``gzip`` (also
``x-gzip``), ``zstd`` and ``deflate``; ``identity``, an empty value or no header mean no encoding.
"""

from __future__ import annotations

import re
import zlib
from typing import Final

import zstandard

from proto_handlers.errors import DecodeError, PayloadTooLargeError, UnsupportedEncodingError

_IDENTITY: Final = frozenset({"", "identity"})
_GZIP: Final = frozenset({"gzip", "x-gzip"})

_GZIP_WBITS: Final = 16 + zlib.MAX_WBITS  # gzip header and trailer only (CRC32 and size are checked)
_ZLIB_WBITS: Final = zlib.MAX_WBITS  # RFC 1950 zlib wrapper: what HTTP calls "deflate"
_RAW_DEFLATE_WBITS: Final = -zlib.MAX_WBITS  # bare RFC 1951 stream, sent by some clients as "deflate"

_INFLATE_FIRST_WINDOW: Final = 256
_INFLATE_MAX_WINDOW: Final = 1 << 20
"""Input handed to zlib per call, doubling from the first to the max within a member (see ``_inflate``)."""
_NOT_ZERO: Final = re.compile(rb"[^\x00]")

_MAX_PARTS: Final = 1 << 16
"""Most gzip members, or zstd frames plus blocks, one body may hold.

Each costs a step in Python (a few µs) whatever it holds, so without a bound 20 MiB of empty
members or blocks kept the event loop busy for seconds while producing nothing. Encoders write
one member or frame per body, and zstd blocks hold up to 128 KiB each: real bodies stay far below.
"""

_ZSTD_READ_CHUNK: Final = 1 << 22
"""Output asked of the zstd reader per call: bounds the buffer one read allocates under a large limit."""

_ZSTD_MAGIC: Final = 0xFD2FB528
_ZSTD_SKIPPABLE_MAGIC: Final = 0x184D2A50  # low 4 bits are free: 0x184D2A50..0x184D2A5F
_ZSTD_BLOCK_RLE: Final = 1
_ZSTD_BLOCK_RESERVED: Final = 3


def _normalize(encoding: str | None) -> str:
    return encoding.strip().lower() if encoding else ""


def decompress(body: bytes, encoding: str | None, max_size: int) -> bytes:
    """Undo ``Content-Encoding`` on ``body``, refusing any result larger than ``max_size`` bytes.

    Raises ``PayloadTooLargeError`` as soon as the output passes ``max_size`` (also for an
    unencoded body), ``DecodeError`` for corrupt or truncated data and
    ``UnsupportedEncodingError`` for an encoding other than gzip, zstd, deflate or identity.
    """
    if max_size < 0:
        # zlib reads a max_length of 0 as "unlimited": a negative cap must never get that far.
        raise ValueError(f"max_size must be >= 0, got {max_size}")
    name = _normalize(encoding)
    if name in _IDENTITY:
        if len(body) > max_size:
            raise PayloadTooLargeError(max_size)
        return body
    if name in _GZIP:
        return _inflate(body, _GZIP_WBITS, max_size, "gzip", multi_member=True)
    if name == "zstd":
        return _unzstd(body, max_size)
    if name == "deflate":
        return _inflate(body, _deflate_wbits(body), max_size, "deflate", multi_member=False)
    raise UnsupportedEncodingError(encoding or "")


def compress(body: bytes, encoding: str) -> bytes:
    """Apply ``encoding`` ("gzip", "zstd", "deflate", or "none"/"identity" for none) to ``body``.

    The output of each is what ``decompress`` reads back, so exporters and tests share one table.
    Levels favour speed (gzip 6, zstd 3): a gateway compresses on the hot path of every export.
    """
    name = _normalize(encoding)
    if name in _IDENTITY or name == "none":
        return body
    if name in _GZIP:
        compressor = zlib.compressobj(6, zlib.DEFLATED, _GZIP_WBITS)
        return compressor.compress(body) + compressor.flush()
    if name == "zstd":
        # compress() records the content size in the frame header, which lets receivers
        # (including Go's) size their output buffer once.
        return zstandard.ZstdCompressor(level=3).compress(body)
    if name == "deflate":
        return zlib.compress(body, 6)
    raise UnsupportedEncodingError(encoding)


def _deflate_wbits(body: bytes) -> int:
    """Tell a zlib-wrapped "deflate" body (what RFC 9110 means) from a raw one (what some clients send).

    A zlib header is two bytes: CM=8 in the low nibble of the first, and both together a multiple
    of 31 (RFC 1950 FCHECK). A raw deflate stream practically never starts that way, so sniffing
    accepts both without a retry, like browsers and curl do.
    """
    if len(body) >= 2 and body[0] & 0x0F == 8 and ((body[0] << 8) | body[1]) % 31 == 0:
        return _ZLIB_WBITS
    return _RAW_DEFLATE_WBITS


def _inflate(body: bytes, wbits: int, max_size: int, name: str, *, multi_member: bool) -> bytes:
    """Inflate with zlib, asking each call for at most one byte more than the space left.

    ``max_length`` makes zlib stop producing output so an over-limit body is detected after
    ``max_size + 1`` bytes, never inflated whole. gzip allows several members back to back
    (``cat a.gz b.gz``); zero padding after the last member is tolerated as Python's gzip does.

    Input is fed through a window that starts small and doubles within a member, and the
    position is tracked instead of re-slicing: zlib copies whatever input is left over at the end
    of a member into ``unused_data``, so feeding the whole rest of the body at each member made
    many tiny members quadratic (100k empty members, 2 MB, took minutes). Now that copy is
    bounded by the window, itself at most twice what the member used, so time stays linear.
    """
    chunks: list[bytes] = []
    total = 0
    view = memoryview(body)
    size = len(body)
    pos = 0
    members = 0
    try:
        while True:
            members += 1
            if members > _MAX_PARTS:
                raise DecodeError(f"{name} body refused: more than {_MAX_PARTS} members")
            inflater = zlib.decompressobj(wbits)
            window = _INFLATE_FIRST_WINDOW
            while True:
                chunk = view[pos : pos + window]
                out = inflater.decompress(chunk, max_size + 1 - total)
                if out:
                    total += len(out)
                    if total > max_size:
                        raise PayloadTooLargeError(max_size)
                    chunks.append(out)
                pos += len(chunk) - len(inflater.unconsumed_tail) - len(inflater.unused_data)
                if inflater.eof:
                    break
                if pos >= size:
                    # All input consumed, output not capped, stream not finished: cut short.
                    raise DecodeError(f"invalid {name} body: unexpected end of data (truncated?)")
                window = min(2 * window, _INFLATE_MAX_WINDOW)
            if multi_member and pos < size and body[pos] == 0:
                padding_end = _NOT_ZERO.search(body, pos)
                pos = size if padding_end is None else padding_end.start()
            if pos >= size:
                break
            if not multi_member:
                raise DecodeError(f"invalid {name} body: unexpected data after the end of the stream")
    except zlib.error as exc:
        raise DecodeError(f"invalid {name} body: {exc}") from None
    finally:
        view.release()
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _unzstd(body: bytes, max_size: int) -> bytes:
    """Decompress every zstd frame in ``body`` through a reader asked for at most the space left.

    ``stream_reader`` is used rather than ``ZstdDecompressor.decompress`` because it needs no
    content size in the frame header (streaming encoders omit it) and never produces more than
    it is asked for, so a bomb is refused after ``max_size + 1`` bytes. The reader silently stops
    at a truncated frame, so the frame layout is checked first (see ``_check_zstd_frames``).
    Memory besides the output is the decoder's window, which libzstd caps by default at 128 MiB
    (``ZSTD_WINDOWLOG_LIMIT_DEFAULT``): frames that ask for more are refused as corrupt.
    """
    _check_zstd_frames(body)
    reader = zstandard.ZstdDecompressor().stream_reader(body, read_across_frames=True)
    chunks: list[bytes] = []
    total = 0
    try:
        while True:
            out = reader.read(min(max_size + 1 - total, _ZSTD_READ_CHUNK))
            if not out:
                break
            total += len(out)
            if total > max_size:
                raise PayloadTooLargeError(max_size)
            chunks.append(out)
    except zstandard.ZstdError as exc:
        raise DecodeError(f"invalid zstd body: {exc}") from None
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _check_zstd_frames(body: bytes) -> None:
    """Raise ``DecodeError`` unless ``body`` is a sequence of complete zstd frames (RFC 8878 §3.1).

    Walks only frame headers and 3-byte block headers, one step per block (a block holds up to
    128 KiB of output), so it costs next to nothing next to the decompression that follows (a bomb
    is a few blocks), and it stops after ``_MAX_PARTS`` steps, so empty frames or blocks cannot
    make it, or the decompression after it, slow.
    """
    size = len(body)
    if size == 0:
        raise DecodeError("invalid zstd body: empty (a zstd body holds at least one frame)")
    pos = 0
    steps = 0
    while pos < size:
        steps += 1
        if steps > _MAX_PARTS:
            raise _zstd_too_many_parts()
        if size - pos < 4:
            raise _zstd_truncated()
        magic = int.from_bytes(body[pos : pos + 4], "little")
        pos += 4
        if magic & 0xFFFFFFF0 == _ZSTD_SKIPPABLE_MAGIC:
            if size - pos < 4:
                raise _zstd_truncated()
            pos += 4 + int.from_bytes(body[pos : pos + 4], "little")
            if pos > size:
                raise _zstd_truncated()
            continue
        if magic != _ZSTD_MAGIC:
            raise DecodeError("invalid zstd body: unknown frame magic number")
        if pos >= size:
            raise _zstd_truncated()
        descriptor = body[pos]
        single_segment = bool(descriptor & 0x20)
        pos += (
            1
            + (0 if single_segment else 1)  # Window_Descriptor
            + (0, 1, 2, 4)[descriptor & 0x03]  # Dictionary_ID
            + ((1 if single_segment else 0), 2, 4, 8)[descriptor >> 6]  # Frame_Content_Size
        )
        while True:
            steps += 1
            if steps > _MAX_PARTS:
                raise _zstd_too_many_parts()
            if size - pos < 3:
                raise _zstd_truncated()
            header = int.from_bytes(body[pos : pos + 3], "little")
            block_type = (header >> 1) & 0x03
            if block_type == _ZSTD_BLOCK_RESERVED:
                raise DecodeError("invalid zstd body: reserved block type")
            pos += 3 + (1 if block_type == _ZSTD_BLOCK_RLE else header >> 3)
            if pos > size:
                raise _zstd_truncated()
            if header & 0x01:  # Last_Block
                break
        if descriptor & 0x04:  # Content_Checksum
            pos += 4
            if pos > size:
                raise _zstd_truncated()


def _zstd_too_many_parts() -> DecodeError:
    return DecodeError(f"zstd body refused: more than {_MAX_PARTS} frames and blocks")


def _zstd_truncated() -> DecodeError:
    return DecodeError("invalid zstd body: unexpected end of data (truncated?)")
