"""pprof profiles on demand, fetched through the pod's network namespace.

The ``profile`` command (id, profile, seconds) starts a worker thread that
GETs the profile from the app's net/http/pprof and passes it back whole, as
served (gzipped profile.proto), base64 in a ``profile`` frame. The main loop
never waits for it (a CPU profile takes ``seconds``).

An empty mutex or block profile usually means the app never enabled it: Go
records neither unless the program calls runtime.SetMutexProfileFraction /
runtime.SetBlockProfileRate, and neither can be switched on from outside.
The frame then says so, with the line of Go that enables it.
"""

from __future__ import annotations

import gzip
import threading
import zlib

from bpf.collectors.base import Collector, CollectorError, Frame
from bpf.collectors.goroutines import DEFAULT_PPROF_PORT, pprof_error
from bpf.netns_http import HttpError, http_get
from bpf.schema import PROFILE_KINDS, empty_profile_note, make_frame, profile_frame
from bpf.varint import uvarint as _varint

#: Endpoint under /debug/pprof/ for each profile kind.
ENDPOINTS = {
    "cpu": "profile",
    "heap": "heap",
    "goroutine": "goroutine",
    "mutex": "mutex",
    "block": "block",
    "allocs": "allocs",
    "threadcreate": "threadcreate",
}

MAX_SECONDS = 300
MAX_WORKERS = 4


# --- a minimal profile.proto reader ---------------------------------------------------------
# The agent may import only the standard library (it is shipped to nodes that
# have nothing of ours), so no protobuf package: this reads just enough of the
# wire format to count samples with a non-zero value.


def _fields(b: bytes):
    """Yield (field number, wire type, value) of one message; value is an int or bytes."""
    i = 0
    while i < len(b):
        key, i = _varint(b, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(b, i)
        elif wt == 1:
            v, i = int.from_bytes(b[i : i + 8], "little"), i + 8
        elif wt == 2:
            n, i = _varint(b, i)
            v, i = b[i : i + n], i + n
            if i > len(b):
                raise ValueError("truncated field")
        elif wt == 5:
            v, i = int.from_bytes(b[i : i + 4], "little"), i + 4
        else:
            raise ValueError(f"wire type {wt} not supported")
        yield num, wt, v


def _sample_values(sample: bytes) -> list[int]:
    values: list[int] = []
    for num, wt, v in _fields(sample):
        if num != 2:
            continue
        if wt == 2:  # packed
            j = 0
            while j < len(v):
                x, j = _varint(v, j)
                values.append(x)
        else:
            values.append(v)
    return values


def count_samples(data: bytes) -> tuple[int, int]:
    """(samples, samples with a non-zero value) of a (gzipped) profile.proto.

    Raises:
        ValueError: not a profile.
    """
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise ValueError(f"bad gzip: {e}") from None
    total = nonzero = 0
    for num, wt, v in _fields(data):
        if num == 2 and wt == 2:
            total += 1
            if any(x != 0 for x in _sample_values(v)):
                nonzero += 1
    return total, nonzero


def profile_path(kind: str, seconds: int) -> str:
    """The URL path for a profile request."""
    base = "/debug/pprof/" + ENDPOINTS[kind]
    if kind == "cpu":
        return f"{base}?seconds={max(1, seconds)}"
    if seconds > 0:  # a delta profile over the window
        return f"{base}?seconds={seconds}"
    return base


class ProfileFetcher(Collector):
    """Not polled: serves ``profile`` commands. Emits ``profile`` or ``error`` frames."""

    name = "profiles"
    cost = (
        "on demand only: a CPU profile costs the app about 1-5 % CPU while it runs; "
        "heap/goroutine/mutex/block profiles are a short walk of the app's records"
    )
    default_on = True
    needs_go = True

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self._lock = threading.Lock()
        self._running: dict[str, threading.Thread] = {}
        self._stopped = False

    @property
    def port(self) -> int:
        return int(self.options.get("pprof_port") or DEFAULT_PPROF_PORT)

    def request(self, req_id: str, kind: str, seconds: int) -> None:
        """Start fetching a profile; the result arrives later through ``emit``.

        Raises:
            CollectorError: a bad request (unknown kind, too many at once).
        """
        if kind not in PROFILE_KINDS:
            raise CollectorError(
                "bad_profile",
                f"unknown profile kind {kind!r}",
                "one of: " + ", ".join(PROFILE_KINDS),
            )
        try:
            seconds = int(seconds or 0)
        except (TypeError, ValueError):
            raise CollectorError(
                "bad_profile", f"seconds must be a number, not {seconds!r}", "e.g. seconds: 10"
            ) from None
        if not 0 <= seconds <= MAX_SECONDS:
            raise CollectorError(
                "bad_profile",
                f"seconds={seconds} is out of range",
                f"ask for 1-{MAX_SECONDS} seconds",
            )
        with self._lock:
            if self._stopped:
                return
            self._running = {k: t for k, t in self._running.items() if t.is_alive()}
            if len(self._running) >= MAX_WORKERS:
                raise CollectorError(
                    "busy",
                    f"{len(self._running)} profiles are being fetched",
                    "wait for one to finish",
                )
            t = threading.Thread(
                target=self._fetch,
                args=(str(req_id), kind, seconds),
                name=f"profile-{kind}",
                daemon=True,
            )
            self._running[str(req_id)] = t
        t.start()

    def _error(self, req_id: str, e: CollectorError) -> Frame:
        return make_frame(
            "error",
            t=self.clock_now_ns(),
            code=e.code,
            msg=e.msg,
            hint=e.hint,
            fatal=False,
            id=req_id,
            collector=self.name,
        )

    def _fetch(self, req_id: str, kind: str, seconds: int) -> None:
        try:
            frame = self.fetch(req_id, kind, seconds)
        except CollectorError as e:
            frame = self._error(req_id, e)
        except Exception as e:  # a worker must never die with a traceback
            frame = self._error(
                req_id,
                CollectorError("profile_failed", f"{kind} profile: {e!r}", "report this as a bug"),
            )
        if not self._stopped:
            self.emit(frame)

    def fetch(self, req_id: str, kind: str, seconds: int) -> Frame:
        """Fetch one profile now (blocking) and build its frame."""
        path = profile_path(kind, seconds)
        timeout = (seconds if kind == "cpu" or seconds > 0 else 0) + 15.0
        try:
            data = http_get(self.target.netns, self.port, path, timeout=timeout)
        except HttpError as e:
            if e.kind == "http" and e.status == 500 and kind == "cpu":
                raise CollectorError(
                    "cpu_profile_busy",
                    "the app refused a CPU profile: another CPU profile is running "
                    f"({e.body[:200].decode('utf-8', 'replace').strip()})",
                    "only one CPU profile runs at a time per process: wait for the other "
                    "profiler (e.g. a continuous profiler's scrape) or use the eBPF CPU stacks",
                ) from None
            if e.kind == "http" and e.status == 400:
                raise CollectorError(
                    "profile_rejected",
                    f"the app rejected {path}: {e.msg}",
                    "ask for fewer seconds (the server's WriteTimeout must be longer)",
                ) from None
            raise pprof_error(e, self.port, f"the {kind} profile") from None
        try:
            total, nonzero = count_samples(data)
        except ValueError as e:
            raise CollectorError(
                "bad_profile",
                f"{path} did not return a profile: {e}",
                "check that --pprof-port points at net/http/pprof",
            ) from None
        empty = nonzero == 0
        note = ""
        if empty and kind in ("mutex", "block", "cpu"):
            fraction = self._mutex_fraction() if kind == "mutex" else None
            note = empty_profile_note(kind, seconds, fraction)
        return profile_frame(
            req_id, kind, seconds, data, empty, note, t=self.clock_now_ns(), samples=total
        )

    def _mutex_fraction(self) -> int | None:
        """The app's SetMutexProfileFraction, from the text form's "sampling period=N"."""
        try:
            text = http_get(
                self.target.netns,
                self.port,
                "/debug/pprof/mutex?debug=1",
                timeout=5.0,
                max_bytes=4 << 20,
            ).decode("utf-8", "replace")
        except HttpError:
            return None
        for line in text.splitlines()[:10]:
            if line.startswith("sampling period="):
                try:
                    return int(line.split("=", 1)[1])
                except ValueError:
                    return None
        return None

    def stop(self) -> int:
        with self._lock:
            self._stopped = True
        return 0


COLLECTOR = ProfileFetcher
