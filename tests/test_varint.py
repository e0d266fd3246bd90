"""bpf.varint against references we did not write: the protobuf library's own
varint encoder (the ``protobuf`` package the console depends on) and Go's
``encoding/binary`` test vectors; truncated and over-long input."""

from __future__ import annotations

import ast
import mmap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bpf.varint import MAX_VARINT_BYTES, VarintError, encode_uvarint, uvarint, zigzag

ROOT = Path(__file__).resolve().parent.parent

# From Go's encoding/binary varint_test.go (testUvarint's table and their encodings).
GO_VECTORS = [
    (0, b"\x00"),
    (1, b"\x01"),
    (2, b"\x02"),
    (127, b"\x7f"),
    (128, b"\x80\x01"),
    (255, b"\xff\x01"),
    (256, b"\x80\x02"),
    (300, b"\xac\x02"),
    (16384, b"\x80\x80\x01"),
    ((1 << 63) - 1, b"\xff\xff\xff\xff\xff\xff\xff\xff\x7f"),
    ((1 << 64) - 1, b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"),
]


@pytest.mark.parametrize(("value", "raw"), GO_VECTORS)
def test_known_encodings(value: int, raw: bytes) -> None:
    assert uvarint(raw) == (value, len(raw))
    assert encode_uvarint(value) == raw
    # At an offset, inside a larger buffer, and from every buffer type we read.
    buf = b"\xaa\xbb" + raw + b"\xcc"
    for b in (buf, bytearray(buf), memoryview(buf)):
        assert uvarint(b, 2) == (value, 2 + len(raw))


def _protobuf_encoder():
    enc = pytest.importorskip("google.protobuf.internal.encoder")
    return enc._VarintBytes


@given(st.integers(min_value=0, max_value=(1 << 64) - 1))
def test_agrees_with_protobuf(value: int) -> None:
    raw = _protobuf_encoder()(value)
    assert uvarint(raw) == (value, len(raw))
    assert encode_uvarint(value) == raw


@given(st.integers(min_value=0, max_value=(1 << 64) - 1))
def test_every_truncation_raises(value: int) -> None:
    raw = encode_uvarint(value)
    for cut in range(len(raw)):
        with pytest.raises(VarintError, match="truncated"):
            uvarint(raw[:cut])


def test_truncated_and_over_long_input() -> None:
    with pytest.raises(VarintError, match="truncated varint at offset 0"):
        uvarint(b"")
    with pytest.raises(VarintError, match="offset 3"):
        uvarint(b"\x01\x02\x03\x80\x80", 3)
    with pytest.raises(VarintError, match="longer than 10 bytes"):
        uvarint(b"\x80" * MAX_VARINT_BYTES + b"\x01")
    with pytest.raises(ValueError):  # VarintError is a ValueError: old callers still catch it
        uvarint(b"\xff")
    with pytest.raises(ValueError):
        encode_uvarint(-1)


def test_reads_an_mmap(tmp_path: Path) -> None:
    p = tmp_path / "blob"
    p.write_bytes(b"\x00\xac\x02")
    with open(p, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        assert uvarint(m, 1) == (300, 3)
        with pytest.raises(VarintError):
            uvarint(m, 3)


def test_zigzag_matches_the_protobuf_and_go_mapping() -> None:
    # 0, -1, 1, -2, 2, ...: sint64 in protobuf, pcvalue deltas in Go's pclntab.
    assert [zigzag(u) for u in range(6)] == [0, -1, 1, -2, 2, -3]
    assert zigzag((1 << 64) - 1) == -(1 << 63)
    assert zigzag((1 << 64) - 2) == (1 << 63) - 1


def test_one_reader_in_the_agent() -> None:
    """No module under bpf/ keeps its own varint loop, and the shared one is
    Python 3.9 syntax (the node's python3 may be that old)."""
    src = (ROOT / "bpf" / "varint.py").read_text()
    ast.parse(src, feature_version=(3, 9))
    for f in (ROOT / "bpf").rglob("*.py"):
        if f.name == "varint.py":
            continue
        tree = ast.parse(f.read_text())
        defs = [n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)
                and "varint" in n.name.lower()]
        assert not defs, f"{f}: {defs}: use bpf.varint"
