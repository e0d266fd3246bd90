"""Base-128 varints, the one encoding shared by Go's pclntab, Go's buildinfo
and protobuf (pprof's profile.proto).

Little-endian groups of 7 bits, the high bit set on every byte but the last
(``encoding/binary.Uvarint``, protobuf's wire format). Hand-written because the
node agent ships with only the standard library; a shared reader so the bounds
checks live in one place: input may be a hostile or truncated file.
"""

from __future__ import annotations

#: A uint64 takes at most 10 bytes; anything longer is corrupt.
MAX_VARINT_BYTES = 10


class VarintError(ValueError):
    """Truncated or over-long varint."""


def uvarint(buf, pos: int = 0) -> tuple[int, int]:
    """Decode an unsigned varint at ``buf[pos]`` (bytes, bytearray, memoryview
    or mmap).

    Returns:
        ``(value, position after it)``.

    Raises:
        VarintError: the input ends inside the varint, or it is longer than
            10 bytes.
    """
    result = 0
    shift = 0
    end = len(buf)
    start = pos
    while pos < end:
        b = buf[pos]
        pos += 1
        if b < 0x80:
            return result | (b << shift), pos
        result |= (b & 0x7F) << shift
        shift += 7
        if pos - start >= MAX_VARINT_BYTES:
            raise VarintError(f"varint at offset {start} is longer than {MAX_VARINT_BYTES} bytes")
    raise VarintError(f"truncated varint at offset {start} ({end - start} bytes left)")


def zigzag(u: int) -> int:
    """The signed value of a zigzag-encoded unsigned one (0, -1, 1, -2, ...)."""
    return -(u & 1) ^ (u >> 1)


def encode_uvarint(value: int) -> bytes:
    """The varint bytes of a non-negative int (for tests and writers)."""
    if value < 0:
        raise ValueError("uvarint of a negative number")
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


__all__ = ["MAX_VARINT_BYTES", "VarintError", "encode_uvarint", "uvarint", "zigzag"]
