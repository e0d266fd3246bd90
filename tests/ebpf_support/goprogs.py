"""Build and run the eBPF tests' Go target program (``goprog/main.go``)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import time
import urllib.request
from pathlib import Path

SRC = Path(__file__).resolve().parent / "goprog"
VARIANTS = {
    "full": [],
    "stripped": ["-ldflags=-s -w"],
    "pie": ["-buildmode=pie"],
    "pie-stripped": ["-buildmode=pie", "-ldflags=-s -w"],
}


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    d = Path(base) / "go-k8s-debug" / "testbin"
    d.mkdir(parents=True, exist_ok=True)
    return d


def build(go: str, variant: str, out_dir: Path | None = None,
          env: dict[str, str] | None = None) -> Path:
    """Build one variant (cached on the source hash, flags and env)."""
    out_dir = out_dir or cache_dir()
    h = hashlib.sha256((SRC / "main.go").read_bytes() + variant.encode()
                       + repr(sorted((env or {}).items())).encode()).hexdigest()[:12]
    out = out_dir / f"goprog-{variant}-{h}"
    if not out.exists():
        tmp = out.with_suffix(".tmp")
        e = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-mod=mod", **(env or {}))
        subprocess.run([go, "build", "-trimpath", "-o", str(tmp), *VARIANTS[variant], "."],
                       cwd=SRC, env=e, check=True, capture_output=True, timeout=300)
        tmp.rename(out)
    return out


class GoProc:
    """A running goprog: ``pid``, ``pprof`` (host:port), ``burn_addr``."""

    def __init__(self, binary: Path, *args: str) -> None:
        self.proc = subprocess.Popen([str(binary), *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        self.pid = self.proc.pid
        assert self.proc.stdout is not None
        self.pprof = self.proc.stdout.readline().strip()
        self.burn_addr = int(self.proc.stdout.readline().strip(), 16)

    def get(self, path: str, timeout: float = 30) -> bytes:
        with urllib.request.urlopen(f"http://{self.pprof}{path}", timeout=timeout) as r:
            return r.read()

    def num_goroutine(self) -> int:
        """runtime.NumGoroutine() from the pprof index page."""
        import re

        html = self.get("/debug/pprof/").decode()
        m = re.search(r"<td>(\d+)</td><td><a href='?goroutine\?debug=1", html)
        assert m, html[:500]
        return int(m.group(1))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


@contextlib.contextmanager
def running(binary: Path, *args: str):
    p = GoProc(binary, *args)
    try:
        time.sleep(0.2)
        yield p
    finally:
        p.stop()
