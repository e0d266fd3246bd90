"""Write pprof profiles from stacks the agent sampled with eBPF.

So an export of eBPF CPU samples opens in ``go tool pprof`` beside the
profiles Go served: same sample types as a Go CPU profile
(``samples/count`` and ``cpu/nanoseconds``), period ``1e9/hz`` ns.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Mapping
from typing import Any

from bpf.schema import FrameError, expand_stacks
from tui.profiles import profile_pb2
from tui.profiles.pprof import Profile, Stack


class _Strings:
    def __init__(self) -> None:
        self.table: list[str] = [""]
        self.index: dict[str, int] = {"": 0}

    def __call__(self, s: str) -> int:
        i = self.index.get(s)
        if i is None:
            i = self.index[s] = len(self.table)
            self.table.append(s)
        return i


def build_profile(
    sample_types: list[tuple[str, str]],
    samples: Iterable[tuple[Stack, list[int]]],
    period_type: tuple[str, str] | None = None,
    period: int = 0,
    time_ns: int = 0,
    duration_ns: int = 0,
    comment: str = "",
) -> profile_pb2.Profile:
    """Build a profile message from ``[(frames_root_first, values)]``.

    Each distinct function name gets one Function and one Location (one line
    per location: the stacks carry no inlining). Identical stacks are merged.
    """
    strings = _Strings()
    msg = profile_pb2.Profile()
    for t, u in sample_types:
        st = msg.sample_type.add()
        st.type, st.unit = strings(t), strings(u)
    if period_type:
        msg.period_type.type = strings(period_type[0])
        msg.period_type.unit = strings(period_type[1])
    msg.period = int(period)
    msg.time_nanos = int(time_ns)
    msg.duration_nanos = int(duration_ns)
    loc_of: dict[str, int] = {}
    merged: dict[Stack, list[int]] = {}
    for frames, values in samples:
        if not frames or len(values) != len(sample_types):
            continue
        key = tuple(frames)
        cur = merged.get(key)
        merged[key] = list(values) if cur is None else [a + b for a, b in zip(cur, values,
                                                                             strict=True)]
    for frames, values in merged.items():
        ids = []
        for name in frames:
            lid = loc_of.get(name)
            if lid is None:
                lid = loc_of[name] = len(loc_of) + 1
                fn = msg.function.add()
                fn.id = lid
                fn.name = fn.system_name = strings(name)
                loc = msg.location.add()
                loc.id = lid
                line = loc.line.add()
                line.function_id = lid
            ids.append(lid)
        s = msg.sample.add()
        s.location_id.extend(reversed(ids))  # leaf first on the wire
        s.value.extend(int(v) for v in values)
    if comment:
        msg.comment.append(strings(comment))
    msg.string_table.extend(strings.table)
    return msg


def cpu_profile_from_stacks(
    stacks: Iterable[tuple[Stack, int]],
    hz: int,
    time_ns: int = 0,
    duration_ns: int = 0,
    comment: str = "",
) -> profile_pb2.Profile:
    """A CPU profile from ``[(frames_root_first, sample_count)]``, with values
    ``[count, count * period]`` and period ``1e9/hz`` like Go's own."""
    if hz <= 0:
        raise ValueError(f"sampling frequency must be positive, got {hz}")
    period = int(round(1e9 / hz))
    return build_profile(
        [("samples", "count"), ("cpu", "nanoseconds")],
        ((st, [int(c), int(c) * period]) for st, c in stacks if c > 0),
        ("cpu", "nanoseconds"), period, time_ns, duration_ns, comment,
    )


def cpu_profile_from_frames(frames: Iterable[Mapping[str, Any]]) -> Profile:
    """Merge decoded ``cpu_stacks`` frames into one CPU profile.

    The window runs from the first frame's start (``t - interval_ns``) to the
    last frame's ``t``. Frames with a different ``hz`` than the first are
    rescaled by weight so the cpu/nanoseconds value stays right.
    """
    merged: dict[Stack, int] = {}
    hz = 0
    start = end = 0
    for fr in frames:
        if fr.get("kind") != "cpu_stacks":
            continue
        fhz = int(fr.get("hz") or 0)
        if fhz <= 0:
            continue
        if not hz:
            hz = fhz
        try:
            stacks = expand_stacks(dict(fr))
        except FrameError:
            continue
        scale = hz / fhz
        for st, c in stacks:
            merged[st] = merged.get(st, 0) + int(round(c * scale))
        t0 = int(fr["t"]) - int(fr.get("interval_ns") or 0)
        start = t0 if not start else min(start, t0)
        end = max(end, int(fr["t"]))
    msg = cpu_profile_from_stacks(
        merged.items(),
        hz or 99,
        time_ns=start,
        duration_ns=max(0, end - start),
        comment="built by go-k8s-debug from eBPF perf-event stack samples",
    )
    return Profile(msg)


def write_profile(profile: Profile | profile_pb2.Profile, path: str) -> None:
    """Write gzipped, as ``go tool pprof`` reads it."""
    msg = profile.message if isinstance(profile, Profile) else profile
    with open(path, "wb") as f:
        f.write(gzip.compress(msg.SerializeToString(), mtime=0))
