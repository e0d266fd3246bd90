"""Run ``drive.py`` under the system python3 and read its JSON events."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

DRIVE = Path(__file__).resolve().parent / "drive.py"


class Drive:
    """One ``drive.py`` subprocess; ``events`` collects what it printed."""

    def __init__(self, python: str, pid: int, collectors: list[str], seconds: float,
                 opts: dict[str, object] | None = None, interval: float = 1.0) -> None:
        cmd = [python, str(DRIVE), "--pid", str(pid), "--seconds", str(seconds),
               "--interval", str(interval)]
        for c in collectors:
            cmd += ["--collector", c]
        for k, v in (opts or {}).items():
            cmd += ["--opt", f"{k}={v}"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        self.events: list[dict] = []
        self._done = False
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            ev = json.loads(line)
            self.events.append(ev)
        self._done = True

    def wait_for(self, event: str, timeout: float = 120, count: int = 1) -> dict:
        """Block until the ``count``-th event named ``event`` has arrived."""
        deadline = time.monotonic() + timeout
        while True:
            hits = [e for e in list(self.events) if e.get("event") == event]
            if len(hits) >= count:
                return hits[count - 1]
            if time.monotonic() > deadline or (self._done and len(hits) < count):
                raise AssertionError(f"no {event!r} event #{count}; got {self.events}; "
                                     f"stderr: {self.stderr()}")
            time.sleep(0.05)

    def finish(self, timeout: float = 180) -> list[dict]:
        try:
            self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self._t.join(timeout=5)
        return self.events

    def stderr(self) -> str:
        if self.proc.poll() is None or self.proc.stderr is None:
            return ""
        return self.proc.stderr.read()

    def frames(self, kind: str) -> list[dict]:
        return [e["frame"] for e in self.events
                if e.get("event") == "frame" and e["frame"].get("kind") == kind]


def assert_nothing_left(events: list[dict]) -> None:
    """The programs and perf events this run attached are gone after stop()."""
    before = next(e for e in events if e["event"] == "before")["attached"]
    after = next(e for e in events if e["event"] == "after")["attached"]
    held = set()
    for e in events:
        if e["event"] == "started":
            held.update(e["attached"]["prog_ids"])
    assert held, "the run attached no program"
    for k in ("bpf-prog", "bpf-map", "bpf_link", "perf_event"):
        assert after[k] == before[k], (k, before, after)
    assert not held & set(after["loaded"]), (held, after["loaded"])
