"""The wire protocol between the node agent and the console.

One JSON object per line. Agent -> console lines are *frames*; console ->
agent lines are *commands*. Both sides import this module, so it uses only the
standard library and stays compatible with the oldest python3 a node may have
(3.9: no match statements, no runtime ``X | Y`` types).

Every frame carries:

- ``v``: the schema version (``SCHEMA_VERSION``). A console refuses frames of
  a newer major version and says so; unknown fields are ignored.
- ``t``: wall-clock time in nanoseconds. The agent measures kernel monotonic
  time against wall-clock time at start and every few seconds, and converts.
- ``kind``: one of ``FRAME_KINDS``.

Counters in interval frames are deltas over ``interval_ns`` ending at ``t``.

Frame kinds and their required fields (``FRAME_FIELDS``):

hello         agent version, host, kernel, target description, collectors
              available with their cost, clock offset. First frame.
collector     a collector changed state: name, state (on|off|failed), reason.
log           something an operator should read: level (info|warn|error), msg.
error         code (stable, e.g. ``no_pprof``), msg (what is wrong), hint
              (what to do), fatal (the agent exits after a fatal error).
cpu_stacks    interval_ns, hz, samples, lost, funcs (list of frame labels),
              stacks (list of ``[count, [func indices root-first]]``).
              Unresolved frames are labelled ``0x<addr> [<module>]``.
futex         interval_ns, waits, wait_ns, by_op ({op: [count, ns]}),
              hist (list of ``[log2_us_slot, count]``), top_threads (list of
              ``{tid, comm, waits, wait_ns}``), timeouts, eagain.
goroutines    count, source (pprof_index|uprobe); with the uprobe source also
              created and exited over interval_ns.
gc            interval_ns, cycles, source; optionally pause_ns, heap_bytes.
throttle      interval_ns, cgroup_version, container and pod: each a dict with
              nr_periods, nr_throttled, throttled_ns, usage_ns (deltas) and
              quota_us, period_us (quota_us -1 = no limit).
profile       id, profile (cpu|heap|goroutine|mutex|block|allocs|threadcreate),
              seconds, data (base64 of the gzipped profile.proto, as served),
              size, empty (bool), note (e.g. how to enable the profile).
target_exit   reason, and what happened (exit code or signal when known).
bye           reason; detached (how many probes were removed).

Commands: ``{"v": 1, "cmd": ..., ...}`` with cmd one of ``COMMANDS``:
enable/disable (collector), set (hz, interval_ms), profile (id, profile,
seconds), ping (id), stop.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterable
from typing import Any

SCHEMA_VERSION = 1

FRAME_FIELDS: dict[str, tuple[str, ...]] = {
    "hello": ("agent", "host", "kernel", "target", "collectors", "clock_offset_ns"),
    "collector": ("name", "state", "reason"),
    "log": ("level", "msg"),
    "error": ("code", "msg", "hint", "fatal"),
    "cpu_stacks": ("interval_ns", "hz", "samples", "lost", "funcs", "stacks"),
    "futex": ("interval_ns", "waits", "wait_ns", "by_op", "hist", "top_threads"),
    "goroutines": ("count", "source"),
    "gc": ("interval_ns", "cycles", "source"),
    "throttle": ("interval_ns", "cgroup_version", "container", "pod"),
    "profile": ("id", "profile", "seconds", "data", "size", "empty", "note"),
    "target_exit": ("reason",),
    "bye": ("reason", "detached"),
}
FRAME_KINDS = tuple(FRAME_FIELDS)

COMMAND_FIELDS: dict[str, tuple[str, ...]] = {
    "enable": ("collector",),
    "disable": ("collector",),
    "set": (),
    "profile": ("id", "profile", "seconds"),
    "ping": ("id",),
    "stop": (),
}
COMMANDS = tuple(COMMAND_FIELDS)

COLLECTORS = ("cpu_stacks", "futex", "goroutines", "goroutines_uprobe", "gc", "throttle")
PROFILE_KINDS = ("cpu", "heap", "goroutine", "mutex", "block", "allocs", "threadcreate")

# Largest line either side accepts; a profile frame of a big heap profile is a few MB.
MAX_LINE_BYTES = 64 * 1024 * 1024


class FrameError(ValueError):
    """A line that is not a valid frame or command. The reader counts these."""


def now_ns() -> int:
    return time.time_ns()


def make_frame(kind: str, t: int | None = None, **fields: Any) -> dict[str, Any]:
    """Build a frame dict, checking that the kind's required fields are present."""
    if kind not in FRAME_FIELDS:
        raise FrameError(f"unknown frame kind {kind!r}")
    missing = [f for f in FRAME_FIELDS[kind] if f not in fields]
    if missing:
        raise FrameError("{} frame missing {}".format(kind, ", ".join(missing)))
    stamp = now_ns() if t is None else int(t)
    frame: dict[str, Any] = {"v": SCHEMA_VERSION, "t": stamp, "kind": kind}
    frame.update(fields)
    return frame


def empty_profile_note(kind: str, seconds: int = 0, mutex_fraction: int | None = None) -> str:
    """What an empty profile of ``kind`` means, and the line of Go that enables it.

    ``mutex_fraction`` is the app's ``SetMutexProfileFraction`` when known (the
    text form of the mutex profile says it): 0 means off, more means on but quiet.
    """
    if kind == "mutex":
        if mutex_fraction:
            return "mutex profiling is enabled but no goroutine waited on a mutex in this window"
        return (
            "mutex profiling is not enabled in the app: add "
            "runtime.SetMutexProfileFraction(5) at start-up"
        )
    if kind == "block":
        return (
            "the block profile is empty: block profiling is probably not enabled in the app: "
            "add runtime.SetBlockProfileRate(10000) at start-up (samples one blocking event "
            "per 10 µs blocked)"
        )
    if kind == "cpu":
        return f"no CPU samples: the app was (nearly) idle for these {seconds} s"
    return ""


def profile_frame(
    req_id: str,
    kind: str,
    seconds: int,
    data: bytes,
    empty: bool,
    note: str = "",
    t: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A ``profile`` frame carrying ``data`` (the profile as the app served it)."""
    return make_frame(
        "profile",
        t=t,
        id=req_id,
        profile=kind,
        seconds=seconds,
        data=base64.b64encode(data).decode("ascii"),
        size=len(data),
        empty=empty,
        note=note,
        **extra,
    )


def make_command(cmd: str, **fields: Any) -> dict[str, Any]:
    """Build a command dict, checking its required fields."""
    if cmd not in COMMAND_FIELDS:
        raise FrameError(f"unknown command {cmd!r}")
    missing = [f for f in COMMAND_FIELDS[cmd] if f not in fields]
    if missing:
        raise FrameError("{} command missing {}".format(cmd, ", ".join(missing)))
    out: dict[str, Any] = {"v": SCHEMA_VERSION, "cmd": cmd}
    out.update(fields)
    return out


def encode(obj: dict[str, Any]) -> str:
    """One line of compact JSON, newline-terminated. Non-ASCII is escaped so a
    hostile symbol or pod name cannot put raw control bytes on the wire."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=True, allow_nan=False) + "\n"


def _load(line: str | bytes) -> dict[str, Any]:
    if isinstance(line, bytes):
        if len(line) > MAX_LINE_BYTES:
            raise FrameError(f"line of {len(line)} bytes is over the limit")
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as e:
            raise FrameError(f"not UTF-8: {e}") from None
    line = line.strip()
    if not line:
        raise FrameError("empty line")
    try:
        obj = json.loads(line)
    except ValueError as e:
        raise FrameError(f"not JSON: {e}") from None
    if not isinstance(obj, dict):
        raise FrameError("not a JSON object")
    v = obj.get("v")
    if not isinstance(v, int) or isinstance(v, bool):
        raise FrameError("missing schema version")
    if v > SCHEMA_VERSION:
        raise FrameError(
            f"schema version {v} is newer than this side's {SCHEMA_VERSION}: "
            "update go-k8s-debug"
        )
    return obj


def decode_frame(line: str | bytes) -> dict[str, Any]:
    """Parse and check one frame line. Raises FrameError; never anything else."""
    obj = _load(line)
    kind = obj.get("kind")
    if kind not in FRAME_FIELDS:
        raise FrameError(f"unknown frame kind {kind!r}")
    t = obj.get("t")
    if not isinstance(t, int) or isinstance(t, bool):
        raise FrameError(f"{kind} frame without integer time")
    missing = [f for f in FRAME_FIELDS[kind] if f not in obj]
    if missing:
        raise FrameError("{} frame missing {}".format(kind, ", ".join(missing)))
    return obj


def decode_command(line: str | bytes) -> dict[str, Any]:
    """Parse and check one command line. Raises FrameError; never anything else."""
    obj = _load(line)
    cmd = obj.get("cmd")
    if cmd not in COMMAND_FIELDS:
        raise FrameError(f"unknown command {cmd!r}")
    missing = [f for f in COMMAND_FIELDS[cmd] if f not in obj]
    if missing:
        raise FrameError("{} command missing {}".format(cmd, ", ".join(missing)))
    return obj


def intern_stacks(stacks: Iterable[tuple[tuple[str, ...], int]]) -> tuple[list[str], list[list]]:
    """Turn ``[(frames_root_first, count)]`` into the ``funcs``/``stacks`` pair
    of a cpu_stacks frame, so each function name crosses the wire once."""
    index: dict[str, int] = {}
    funcs: list[str] = []
    out: list[list] = []
    for frames, count in stacks:
        ids = []
        for name in frames:
            i = index.get(name)
            if i is None:
                i = index[name] = len(funcs)
                funcs.append(name)
            ids.append(i)
        out.append([int(count), ids])
    return funcs, out


def expand_stacks(frame: dict[str, Any]) -> list[tuple[tuple[str, ...], int]]:
    """Inverse of ``intern_stacks`` for a decoded cpu_stacks frame. Bad indices
    raise FrameError."""
    funcs = frame["funcs"]
    out = []
    try:
        for count, ids in frame["stacks"]:
            out.append((tuple(funcs[i] for i in ids), int(count)))
    except (TypeError, ValueError, IndexError) as e:
        raise FrameError(f"bad stacks in cpu_stacks frame: {e}") from None
    return out
