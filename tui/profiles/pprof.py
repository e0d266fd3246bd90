"""Read Go pprof profiles (profile.proto, gzipped or raw) into plain stacks.

The decoding is protobuf's (``profile_pb2`` is generated from google/pprof's
``profile.proto`` and vendored); this module only turns the message into what
the console and the findings rules need: stacks root-first with inlined frames
expanded, flat/cum tables, folded stacks for flame-graph tools.
"""

from __future__ import annotations

import gzip
import itertools
import zlib
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from tui.profiles import profile_pb2

Stack = tuple[str, ...]

# A profile frame can carry a few MB; refuse absurd inflation (a gzip bomb) early.
MAX_PROFILE_BYTES = 512 * 1024 * 1024


class ProfileError(ValueError):
    """Bytes that are not a pprof profile; the message says what was wrong."""


@dataclass(frozen=True)
class SampleType:
    type: str
    unit: str

    def __str__(self) -> str:
        return f"{self.type}/{self.unit}"


@dataclass(frozen=True)
class TopRow:
    """One line of ``go tool pprof -top``: a function's own and inclusive value."""

    name: str
    flat: int
    cum: int


def _gunzip(data: bytes) -> bytes:
    if data[:2] != b"\x1f\x8b":
        return data
    try:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        out = d.decompress(data, MAX_PROFILE_BYTES)
        if d.unconsumed_tail:
            raise ProfileError(f"profile inflates past {MAX_PROFILE_BYTES} bytes; refusing it")
        if not d.eof:
            raise ProfileError("profile is gzip but the stream is cut short (truncated download?)")
        return out
    except zlib.error as e:
        raise ProfileError(f"profile is gzip but does not decompress: {e}") from None


class Profile:
    """A decoded profile. Build with ``Profile.from_bytes``."""

    def __init__(self, message: profile_pb2.Profile) -> None:
        self.message = message
        strings = list(message.string_table)
        if not strings:
            strings = [""]
        self._strings = strings
        self._funcs = {f.id: self._s(f.name) for f in message.function}
        # location id -> frames root-first (outer caller first, inlined callee last)
        self._locs: dict[int, Stack] = {}
        for loc in message.location:
            names = [self._funcs.get(ln.function_id, "?") for ln in reversed(loc.line)]
            if not names:
                names = [f"0x{loc.address:x}"]
            self._locs[loc.id] = tuple(names)
        self._stacks_cache: dict[int, list[tuple[Stack, int]]] = {}
        self.sample_types = [
            SampleType(self._s(st.type), self._s(st.unit)) for st in message.sample_type
        ]

    def _s(self, i: int) -> str:
        if 0 <= i < len(self._strings):
            return self._strings[i]
        raise ProfileError(f"string index {i} is outside the string table")

    @classmethod
    def from_bytes(cls, data: bytes) -> Profile:
        """Decode a profile as served by net/http/pprof (gzip) or raw protobuf.

        Empty input is an empty profile (Go serves that for a disabled profile
        in some versions). Anything else that does not parse raises ProfileError.
        """
        if not isinstance(data, bytes | bytearray | memoryview):
            raise ProfileError(f"profile data must be bytes, not {type(data).__name__}")
        raw = _gunzip(bytes(data))
        msg = profile_pb2.Profile()
        try:
            msg.ParseFromString(raw)
        except DecodeError as e:
            raise ProfileError(f"not a pprof profile (protobuf decode failed: {e})") from None
        if raw and not msg.sample_type and not msg.string_table:
            raise ProfileError("not a pprof profile (no sample types and no string table)")
        if msg.string_table and msg.string_table[0] != "":
            raise ProfileError("not a pprof profile (string table must start with an empty string)")
        try:
            return cls(msg)
        except ProfileError:
            raise
        except (IndexError, ValueError) as e:
            raise ProfileError(f"malformed pprof profile: {e}") from None

    @classmethod
    def from_file(cls, path: str) -> Profile:
        with open(path, "rb") as f:
            return cls.from_bytes(f.read())

    def to_bytes(self) -> bytes:
        """Serialized and gzipped, as ``go tool pprof`` expects on disk."""
        return gzip.compress(self.message.SerializeToString(), mtime=0)

    # --- metadata -----------------------------------------------------------------

    @property
    def empty(self) -> bool:
        return len(self.message.sample) == 0

    @property
    def duration_ns(self) -> int:
        return int(self.message.duration_nanos)

    @property
    def time_ns(self) -> int:
        return int(self.message.time_nanos)

    @property
    def period(self) -> int:
        return int(self.message.period)

    @property
    def period_type(self) -> SampleType | None:
        pt = self.message.period_type
        if not pt.type and not pt.unit:
            return None
        return SampleType(self._s(pt.type), self._s(pt.unit))

    @property
    def default_sample_type(self) -> str:
        """pprof's rule: ``default_sample_type`` if set, else the last sample type."""
        if self.message.default_sample_type:
            return self._s(self.message.default_sample_type)
        return self.sample_types[-1].type if self.sample_types else ""

    def sample_index(self, sample_type: str | int | None = None) -> int:
        """Index into each sample's values for a type name (``cpu``, ``inuse_space``,
        ``contentions``, ``delay``…), an index, or None for the default."""
        if not self.sample_types:
            raise ProfileError("profile has no sample types")
        if isinstance(sample_type, int):
            if 0 <= sample_type < len(self.sample_types):
                return sample_type
            raise ProfileError(f"sample type index {sample_type} out of range")
        name = sample_type or self.default_sample_type
        for i, st in enumerate(self.sample_types):
            if st.type == name or str(st) == name:
                return i
        have = ", ".join(str(st) for st in self.sample_types)
        raise ProfileError(f"profile has no sample type {name!r} (it has {have})")

    def unit(self, sample_type: str | int | None = None) -> str:
        return self.sample_types[self.sample_index(sample_type)].unit if self.sample_types else ""

    # --- data ---------------------------------------------------------------------

    def stacks(self, sample_type: str | int | None = None) -> list[tuple[Stack, int]]:
        """``[(frames_root_first, value)]``, one per sample with a nonzero value.

        Samples list their leaf location first; each location lists its inlined
        callee first. Both are reversed so the root comes first and inlined
        frames appear as their own calls, as ``go tool pprof`` shows them.
        """
        if self.empty:
            return []
        k = self.sample_index(sample_type)
        cached = self._stacks_cache.get(k)
        if cached is not None:
            return list(cached)
        locs = self._locs
        chain = itertools.chain.from_iterable
        out: list[tuple[Stack, int]] = []
        for s in self.message.sample:
            values = s.value
            if k >= len(values):
                continue
            v = int(values[k])
            if v == 0:
                continue
            ids = s.location_id
            frames = tuple(chain(locs.get(i) or (f"?loc{i}",) for i in reversed(ids)))
            out.append((frames, v))
        self._stacks_cache[k] = out
        return list(out)

    def total(self, sample_type: str | int | None = None) -> int:
        return sum(v for _, v in self.stacks(sample_type))

    def top(self, sample_type: str | int | None = None, n: int | None = 20) -> list[TopRow]:
        """Functions by flat value (ties by cum), like ``go tool pprof -top``."""
        return top_functions(self.stacks(sample_type), n)

    def folded(self, sample_type: str | int | None = None) -> str:
        return folded_stacks(self.stacks(sample_type))

    def labels(self) -> list[dict[str, str]]:
        """String labels per sample (goroutine profiles carry pprof.Do labels)."""
        return [
            {self._s(lb.key): self._s(lb.str) for lb in s.label if lb.str}
            for s in self.message.sample
        ]


def top_functions(stacks: list[tuple[Stack, int]], n: int | None = 20) -> list[TopRow]:
    """Flat (the function was the leaf) and cum (on the stack at all, counted
    once per sample even under recursion) per function name."""
    flat: dict[str, int] = {}
    cum: dict[str, int] = {}
    for frames, v in stacks:
        if not frames:
            continue
        flat[frames[-1]] = flat.get(frames[-1], 0) + v
        for name in set(frames):
            cum[name] = cum.get(name, 0) + v
    rows = [TopRow(name, flat.get(name, 0), c) for name, c in cum.items()]
    rows.sort(key=lambda r: (-r.flat, -r.cum, r.name))
    return rows if n is None else rows[:n]


def folded_stacks(stacks: list[tuple[Stack, int]]) -> str:
    """Brendan Gregg's folded format (``root;child;leaf N``), merged and sorted.

    Semicolons and newlines inside names would break the format, so they are
    replaced (Go symbols never contain them; hostile labels might).
    """
    merged: dict[str, int] = {}
    clean: dict[str, str] = {}
    for frames, v in stacks:
        if not frames:
            continue
        parts = []
        for f in frames:
            c = clean.get(f)
            if c is None:
                c = clean[f] = f.replace(";", ":").replace("\n", " ").replace("\r", " ")
            parts.append(c)
        key = ";".join(parts)
        merged[key] = merged.get(key, 0) + v
    return "".join(f"{k} {v}\n" for k, v in sorted(merged.items()))


@dataclass
class CallNode:
    """A top-down call tree node: ``cum`` includes children, ``flat`` is own."""

    name: str
    flat: int = 0
    cum: int = 0
    children: dict[str, CallNode] | None = None

    def child(self, name: str) -> CallNode:
        if self.children is None:
            self.children = {}
        node = self.children.get(name)
        if node is None:
            node = self.children[name] = CallNode(name)
        return node

    def sorted_children(self) -> list[CallNode]:
        return sorted((self.children or {}).values(), key=lambda c: (-c.cum, c.name))

    def hottest_path(self) -> Stack:
        """Follow the largest child from here: the path a flame graph's widest tower takes."""
        path: list[str] = []
        node = self
        while node.children:
            node = node.sorted_children()[0]
            path.append(node.name)
        return tuple(path)


def call_tree(stacks: list[tuple[Stack, int]], root_name: str = "total") -> CallNode:
    """Merge stacks by function name into a top-down tree (pprof's flame view)."""
    root = CallNode(root_name)
    for frames, v in stacks:
        root.cum += v
        node = root
        for name in frames:
            node = node.child(name)
            node.cum += v
        node.flat += v
    return root


def cpu_profile_stacks(frame: dict) -> list[tuple[Stack, int]]:
    """Root-first stacks with sample counts from a decoded ``profile`` frame of a
    CPU profile (the console's call tree in pprof-only mode). Empty on bad data."""
    import base64
    import binascii

    if frame.get("empty") or not frame.get("data"):
        return []
    try:
        p = Profile.from_bytes(base64.b64decode(frame["data"]))
        try:
            return p.stacks("samples")
        except ProfileError:
            return p.stacks()
    except (ProfileError, binascii.Error, ValueError):
        return []
