"""Run build/bin/faultsvc locally (loopback only) and fetch its pprof profiles.

Shared by the profiles, findings, export and diagnose tests.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Faultsvc:
    proc: subprocess.Popen
    pprof_port: int
    mode: str

    @property
    def pid(self) -> int:
        return self.proc.pid

    def get(self, path: str, timeout: float = 60) -> bytes:
        url = f"http://127.0.0.1:{self.pprof_port}/debug/pprof/{path}"
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.read()


@contextlib.contextmanager
def faultsvc(bin_dir: Path, mode: str, *extra: str) -> Iterator[Faultsvc]:
    """Start faultsvc in ``mode`` on loopback ports; always stopped afterwards."""
    pport, aport = free_port(), free_port()
    proc = subprocess.Popen(
        [str(bin_dir / "faultsvc"), "-mode", mode, "-addr", f"127.0.0.1:{aport}",
         "-pprof-addr", f"127.0.0.1:{pport}", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    svc = Faultsvc(proc, pport, mode)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                svc.get("", timeout=2)
                break
            except OSError as e:
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    raise RuntimeError(f"faultsvc -mode {mode} did not serve pprof: {err}") from e
                time.sleep(0.2)
        yield svc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def pprof_top(go: str, path: Path, extra: tuple[str, ...] = ()) -> list[tuple[str, str, str]]:
    """``go tool pprof -top`` rows as (flat, cum, name); raises on a pprof error."""
    r = subprocess.run([go, "tool", "pprof", "-top", *extra, str(path)], capture_output=True,
                       text=True, timeout=120)
    if r.returncode != 0:
        raise AssertionError(f"go tool pprof failed on {path}: {r.stderr}")
    rows = []
    started = False
    for line in r.stdout.splitlines():
        if line.strip().startswith("flat"):
            started = True
            continue
        if started and line.strip():
            parts = line.split()
            rows.append((parts[0], parts[3], " ".join(parts[5:])))
    return rows
