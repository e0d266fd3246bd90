"""Recordings: every frame of a session, in one file that replays anywhere.

Format (version 1): gzip-compressed JSON lines. The first line is a header::

    {"v": 1, "kind": "recording", "format": 1, "tool_version": "0.1.0",
     "start_ns": <wall-clock ns>, "pod": {PodInfo fields}, "node": str|null,
     "container": str, "transport": str, "host": str}

then one frame per line, exactly as the agent sent it (``bpf.schema.encode``),
profile frames included (their pprof bytes are inside, base64). Nothing in it
refers to a path on the recording machine, so a recording taken on one host
replays on another. ``read_recording`` also reads plain (not gzipped) JSONL and
files without a header (the console's own ``--record`` output, test data).
"""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from bpf import schema
from tui.sources.base import PodInfo, SessionInfo

FORMAT_VERSION = 1
HEADER_KIND = "recording"


def _tool_version() -> str:
    from tui.findings.report import tool_version

    return tool_version()


def pod_to_dict(p: PodInfo) -> dict[str, Any]:
    d = {k: getattr(p, k) for k in PodInfo.__dataclass_fields__}
    d["containers"] = [dict(c.__dict__) for c in p.containers]
    d["labels"] = dict(p.labels)
    return d


def pod_from_dict(d: dict[str, Any]) -> PodInfo:
    from tui.sources.base import ContainerInfo

    known = set(PodInfo.__dataclass_fields__)
    fields = {k: v for k, v in d.items() if k in known and k != "containers"}
    fields["labels"] = dict(fields.get("labels") or {})
    cknown = set(ContainerInfo.__dataclass_fields__)
    containers = tuple(
        ContainerInfo(**{k: v for k, v in c.items() if k in cknown})
        for c in d.get("containers", ())
    )
    fields.setdefault("namespace", "recorded")
    fields.setdefault("name", "recording")
    fields.setdefault("uid", "")
    fields.setdefault("status", "Recorded")
    fields.setdefault("ready", "")
    fields.setdefault("restarts", 0)
    fields.setdefault("created", 0.0)
    fields.setdefault("node", None)
    fields.setdefault("cpu_limit", None)
    fields.setdefault("pprof_port", None)
    return PodInfo(containers=containers, **fields)


def make_header(info: SessionInfo, start_ns: int | None = None) -> dict[str, Any]:
    return {
        "v": schema.SCHEMA_VERSION,
        "kind": HEADER_KIND,
        "format": FORMAT_VERSION,
        "tool_version": _tool_version(),
        "start_ns": int(start_ns if start_ns is not None else time.time_ns()),
        "pod": pod_to_dict(info.pod),
        "node": info.node,
        "container": info.container,
        "transport": info.transport,
        "host": socket.gethostname(),
    }


class Recorder:
    """Writes a recording. Thread-safe; ``write`` never raises on a bad frame.

    Args:
        target: a path (``.gz`` or not, it is always gzip) or a binary file object.
        info: the session being recorded (for the header).
    """

    def __init__(self, target: str | Path | IO[bytes], info: SessionInfo,
                 start_ns: int | None = None) -> None:
        self._lock = threading.Lock()
        if isinstance(target, str | Path):
            self._raw: IO[bytes] | None = open(target, "wb")  # noqa: SIM115 - closed in close()
            self._gz = gzip.GzipFile(fileobj=self._raw, mode="wb", mtime=0)
        else:
            self._raw = None
            self._gz = gzip.GzipFile(fileobj=target, mode="wb", mtime=0)
        self.frames = 0
        self._line(make_header(info, start_ns))

    def _line(self, obj: dict[str, Any]) -> None:
        self._gz.write(schema.encode(obj).encode("ascii"))

    def write(self, frame: dict[str, Any]) -> None:
        with self._lock:
            if self._gz.closed:
                return
            try:
                self._line(frame)
            except (TypeError, ValueError):
                return
            self.frames += 1
            if self.frames % 200 == 0:
                self._gz.flush()  # a crash loses at most a few frames

    def close(self) -> None:
        with self._lock:
            if not self._gz.closed:
                self._gz.close()
            if self._raw is not None and not self._raw.closed:
                self._raw.close()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class Recording:
    header: dict[str, Any]
    frames: list[dict[str, Any]] = field(default_factory=list)
    unparsed: int = 0

    @property
    def start_ns(self) -> int:
        if self.header.get("start_ns"):
            return int(self.header["start_ns"])
        return int(self.frames[0]["t"]) if self.frames else 0

    @property
    def end_ns(self) -> int:
        return int(self.frames[-1]["t"]) if self.frames else self.start_ns

    @property
    def pod(self) -> PodInfo:
        return pod_from_dict(self.header.get("pod") or {})

    def session_info(self) -> SessionInfo:
        pod = self.pod
        container = self.header.get("container") or (
            pod.containers[0].name if pod.containers else "")
        return SessionInfo(pod=pod, container=container, node=self.header.get("node") or pod.node,
                           transport="replay")


class RecordingError(ValueError):
    """A file that is not a recording; the message says what to do."""


def _lines(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as raw:
        gz = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        fh: IO[bytes] = gzip.GzipFile(fileobj=raw) if gz else raw
        try:
            yield from fh
        except EOFError:
            # A recording cut short (the recorder was killed) replays up to the cut.
            return
        except OSError as e:
            raise RecordingError(f"{path}: not a readable recording ({e})") from None


def read_recording(path: str | Path) -> Recording:
    """Read a recording (gzip or plain JSONL, header optional)."""
    p = Path(path)
    if not p.is_file():
        raise RecordingError(f"no recording at {path}: give a file written with --record")
    rec = Recording(header={})
    first = True
    for line in _lines(p):
        if not line.strip():
            continue
        if first:
            first = False
            try:
                obj = json.loads(line)
            except ValueError:
                obj = None
            if isinstance(obj, dict) and obj.get("kind") == HEADER_KIND:
                if int(obj.get("format", 0)) > FORMAT_VERSION:
                    raise RecordingError(
                        f"{path} is recording format {obj.get('format')}, newer than this "
                        f"go-k8s-debug reads ({FORMAT_VERSION}): update go-k8s-debug")
                rec.header = obj
                continue
        try:
            rec.frames.append(schema.decode_frame(line))
        except schema.FrameError:
            rec.unparsed += 1
    if not rec.header and not rec.frames:
        raise RecordingError(f"{path} holds no frames: is it a go-k8s-debug recording?")
    rec.frames.sort(key=lambda f: f["t"])
    return rec
