"""The Go version a binary was built with, from its ``.go.buildinfo`` blob.

Format (``debug/buildinfo``): 14-byte magic ``\\xff Go buildinf:``, pointer
size, flags; with flag bit 2 (Go 1.18+) the version follows at offset 32 as a
varint-length-prefixed string.
"""

from __future__ import annotations

from ..varint import VarintError, uvarint

BUILDINFO_MAGIC = b"\xff Go buildinf:"


def parse_go_version(blob) -> str | None:
    """``"go1.26.8"`` from the bytes of ``.go.buildinfo`` (or a scan hit), else None."""
    if blob is None or len(blob) < 33 or bytes(blob[:14]) != BUILDINFO_MAGIC:
        return None
    flags = blob[15]
    if not flags & 2:
        return None  # pre-1.18 pointer format: version lives behind a data pointer
    try:
        n, pos = uvarint(blob, 32)
    except VarintError:
        return None
    if n > 64 or pos + n > len(blob):
        return None
    v = bytes(blob[pos:pos + n]).decode("ascii", "replace")
    return v if v.startswith("go") or v.startswith("devel") else None
