"""Processes the benchmarks start and the kernel's accounting of them.

Everything here reads /proc or starts local processes; the only network
traffic is loopback HTTP to a faultsvc the benchmark started itself.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / "build" / "bin"
SYSTEM_PYTHON = "/usr/bin/python3"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


class BenchError(RuntimeError):
    """A benchmark cannot run here; the message says what is missing and how to fix it."""


def log(msg: str) -> None:
    """Progress for the person running `make bench` (stderr; stdout gets the tables)."""
    print(msg, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    # Fields after the comm: state=0 ... utime=11, stime=12.
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in KiB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    return out


def perf_event_fds(pid: int) -> int:
    """How many perf-event file descriptors a process holds (one per CPU once sampling)."""
    n = 0
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:[perf_event]":
                    n += 1
            except OSError:
                continue
    except OSError:
        pass
    return n


def wait_for(cond, timeout: float, what: str, poll: float = 0.02) -> float:
    """Poll ``cond`` until true; seconds it took. Raises BenchError on timeout."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if cond():
            return time.monotonic() - start
        time.sleep(poll)
    raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}")


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Service:
    """A faultsvc started by a benchmark."""

    proc: subprocess.Popen
    api_port: int
    pprof_port: int

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}/api/items?limit=20"


@contextmanager
def faultsvc(mode: str = "healthy", load: bool = False) -> Iterator[Service]:
    """Run build/bin/faultsvc on loopback ports; its own load generator off by default."""
    binary = BIN / "faultsvc"
    if not binary.exists():
        raise BenchError(f"{binary} is missing: run `make setup` (it builds the Go binaries)")
    api, pprof = free_port(), free_port()
    proc = subprocess.Popen(
        [str(binary), "-mode", mode, "-addr", f"127.0.0.1:{api}", f"-load={str(load).lower()}"],
        env={"PPROF_ADDR": f"127.0.0.1:{pprof}", "PATH": "/usr/bin:/bin"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    svc = Service(proc, api, pprof)
    try:

        def up() -> bool:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{pprof}/debug/pprof/", timeout=1).read()
                return True
            except OSError:
                return False

        wait_for(up, 10, "faultsvc to answer")
        yield svc
    finally:
        stop_process(proc)


@dataclass
class Load:
    """Result of one load window."""

    requests: int
    seconds: float
    target_cpu_s: float = 0.0

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def run_load(svc: Service, seconds: float, connections: int = 8) -> Load:
    """Closed-loop HTTP load on the service for ``seconds``: wrk when installed.

    wrk (C, one thread) is far cheaper per request than anything in Python, so
    the service, not the load generator, is what saturates.
    """
    cpu0 = cpu_seconds(svc.pid)
    wrk = shutil.which("wrk")
    if wrk:
        out = subprocess.run(
            [wrk, "-t1", f"-c{connections}", f"-d{seconds:g}s", svc.url],
            capture_output=True, text=True, timeout=seconds + 30,
        )
        if out.returncode != 0:
            raise BenchError(f"wrk failed: {out.stderr.strip()}")
        requests, took = _parse_wrk(out.stdout)
    else:
        requests, took = _python_load(svc.url, seconds, connections)
    return Load(requests, took, cpu_seconds(svc.pid) - cpu0)


# wrk prints durations with the largest unit that fits: 850.00us, 3.03s, 1.50m, 2.00h.
# Per unit: (multiplier, divisor) to seconds; dividing keeps 950ms at exactly 0.95.
_WRK_UNITS = (("us", 1, 1e6), ("ms", 1, 1e3), ("s", 1, 1), ("m", 60, 1), ("h", 3600, 1))


def _wrk_duration(text: str) -> float:
    for unit, mul, div in _WRK_UNITS:
        number = text[: -len(unit)]
        if text.endswith(unit) and number.replace(".", "", 1).isdigit():
            return float(number) * mul / div
    raise BenchError(f"cannot read wrk's duration {text!r}")


def _parse_wrk(text: str) -> tuple[int, float]:
    for line in text.splitlines():
        parts = line.split()
        # "  28463 requests in 3.03s, 31.05MB read"
        if len(parts) >= 4 and parts[1] == "requests" and parts[2] == "in":
            return int(parts[0]), _wrk_duration(parts[3].rstrip(","))
    raise BenchError(f"cannot read wrk's output: {text[:200]!r}")


def _python_load(url: str, seconds: float, connections: int) -> tuple[int, float]:
    """Fallback load generator (threads, keep-alive) when wrk is not installed."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    path = parts.path + ("?" + parts.query if parts.query else "")
    counts = [0] * connections
    deadline = time.monotonic() + seconds

    def worker(i: int) -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        while time.monotonic() < deadline:
            conn.request("GET", path)
            conn.getresponse().read()
            counts[i] += 1
        conn.close()

    start = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts), time.monotonic() - start


@dataclass
class AgentRun:
    """The node agent attached to a pid, with its frames read in a thread."""

    proc: subprocess.Popen
    launched: float
    first: dict[str, float] = field(default_factory=dict)
    frames: list[dict] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                frame = json.loads(line)
            except ValueError:
                continue
            now = time.monotonic() - self.launched
            with self.lock:
                self.frames.append(frame)
                key = frame.get("kind", "?")
                if key == "collector":
                    key = f"collector:{frame.get('name')}:{frame.get('state')}"
                self.first.setdefault(key, now)

    def kinds(self, kind: str) -> list[dict]:
        with self.lock:
            return [f for f in self.frames if f.get("kind") == kind]

    def collectors_on(self) -> list[str]:
        """Collectors the agent reports on, in the order it started them."""
        state: dict[str, str] = {}
        for f in self.kinds("collector"):
            state[f["name"]] = f["state"]
        return [n for n, s in state.items() if s == "on"]

    def wanted(self) -> list[str]:
        """Collectors this run should end up with: available, default-on or --enable'd."""
        hello = next(iter(self.kinds("hello")), None)
        if hello is None:
            return []
        args = self.proc.args if isinstance(self.proc.args, list) else []
        enable = _option_list(args, "--enable")
        disable = _option_list(args, "--disable")
        return [
            c["name"] for c in hello.get("collectors", [])
            if c.get("available")
            and (c.get("default_on") or c["name"] in enable)
            and c["name"] not in disable
        ]

    def wait_started(self, timeout: float = 120) -> float:
        """Wait until every wanted collector said on/failed and one interval has passed.

        Collectors that compile eBPF (bcc) can take many seconds; a measuring
        window must not overlap that start-up. Returns seconds since launch.
        """

        def settled() -> bool:
            if self.proc.poll() is not None:
                return True
            if "hello" not in self.first:
                return False
            with self.lock:
                seen = {k.split(":")[1] for k in self.first if k.startswith("collector:")}
            return all(n in seen for n in self.wanted())

        wait_for(settled, timeout, "the agent's collectors to start")
        if self.proc.poll() is not None:
            raise BenchError(f"the agent exited early: {self.problems() or 'no error frame'}")
        time.sleep(1.2)  # one interval: the first frames of each collector are out
        return time.monotonic() - self.launched

    def problems(self) -> list[str]:
        return [f"{f.get('code')}: {f.get('msg')}" for f in self.kinds("error")]


def _option_list(args: list[str], flag: str) -> list[str]:
    out = []
    for i, a in enumerate(args[:-1]):
        if a == flag:
            out += [x.strip() for x in args[i + 1].split(",") if x.strip()]
    return out


@contextmanager
def agent(pid: int, pprof_port: int, *extra: str) -> Iterator[AgentRun]:
    """``python3 -m bpf.agent --pid PID`` under the system python (the one with bcc)."""
    if os.geteuid() != 0:
        raise BenchError("the agent needs root: run `make bench` as root")
    if not (ROOT / "bpf" / "agent.py").exists():
        raise BenchError("bpf/agent.py is missing from this checkout")
    launched = time.monotonic()
    proc = subprocess.Popen(
        [SYSTEM_PYTHON, "-m", "bpf.agent", "--pid", str(pid), "--pprof-port", str(pprof_port),
         *extra],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    run = AgentRun(proc, launched)
    reader = threading.Thread(target=run._read, daemon=True)
    reader.start()
    try:
        yield run
    finally:
        # Closing stdin is the agent's normal way out: it detaches and says bye.
        if proc.stdin:
            try:
                proc.stdin.close()
            except OSError:
                pass
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            stop_process(proc)
        reader.join(timeout=5)
