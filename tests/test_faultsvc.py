"""The Go fault workloads really misbehave the way their mode says.

Each test runs ``build/bin/faultsvc`` as a plain local process (API and pprof
on free 127.0.0.1 ports), lets its built-in load generator run for a few
seconds, and checks the fault through references we did not write: the Go
runtime's own pprof endpoints, ``go tool pprof``, expvar's memstats, and the
kernel's per-process syscall counters in ``/proc/PID/io``.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import struct
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from demo import build_binaries

pytestmark = pytest.mark.slow

MANIFESTS = Path(__file__).resolve().parent.parent / "demo" / "manifests" / "demo-pods.yaml"


@pytest.fixture(scope="session")
def faultsvc_bin(go_tool: str) -> Path:
    """build/bin with faultsvc built from the current sources (cached build: seconds)."""
    build_binaries.main(["faultsvc", "faultsvc-stripped"])
    return build_binaries.BIN_DIR


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Running:
    """A faultsvc process and where to reach it."""

    proc: subprocess.Popen[str]
    api: str
    pprof: str

    def get(self, path: str, timeout: float = 10) -> bytes:
        with urllib.request.urlopen(self.pprof + path, timeout=timeout) as r:
            return r.read()

    def goroutines(self) -> int:
        """Goroutine count from the pprof index page (runtime.NumGoroutine)."""
        page = self.get("/debug/pprof/").decode()
        m = re.search(r"<td>(\d+)</td><td><a href='goroutine\?debug=1'>", page)
        assert m, f"no goroutine row on the pprof index page: {page[:300]!r}"
        return int(m.group(1))

    def memstats(self) -> dict:
        return json.loads(self.get("/debug/vars"))["memstats"]

    def syscalls(self) -> int:
        """read(2)+write(2)-family syscalls so far, as the kernel counts them."""
        io = Path(f"/proc/{self.proc.pid}/io").read_text()
        fields = dict(line.split(": ") for line in io.splitlines())
        return int(fields["syscr"]) + int(fields["syscw"])


def wait_ready(url: str, proc: subprocess.Popen[str], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read() if proc.stderr else ""
            raise AssertionError(f"faultsvc exited early: {err}")
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"faultsvc did not answer on {url} within {timeout} s")


@contextmanager
def faultsvc(
    bin_dir: Path, mode: str, *extra: str, binary: str = "faultsvc", env: dict | None = None
) -> Iterator[Running]:
    api_port, pprof_port = free_port(), free_port()
    proc = subprocess.Popen(
        [str(bin_dir / binary), "-mode", mode, "-addr", f"127.0.0.1:{api_port}", *extra],
        env={"PPROF_ADDR": f"127.0.0.1:{pprof_port}", **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    run = Running(proc, f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{pprof_port}")
    try:
        wait_ready(run.pprof + "/debug/pprof/", proc)
        yield run
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout:
            proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()


def profile_samples(text: str) -> list[str]:
    """Sample records of a debug=1 mutex/block profile: lines '<cycles> <count> @ <pcs>'."""
    return [line for line in text.splitlines() if re.match(r"^\d+ \d+ @", line)]


def pprof_top(go_tool: str, profile: bytes, tmp_path: Path) -> list[str]:
    """Function names of `go tool pprof -top`, hottest (flat) first."""
    path = tmp_path / "cpu.pb.gz"
    path.write_bytes(profile)
    out = subprocess.run(
        [go_tool, "tool", "pprof", "-top", str(path)],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout
    rows = []
    for line in out.splitlines():
        parts = line.split()
        # Rows: flat flat% sum% cum cum% name...
        if len(parts) >= 6 and parts[1].endswith("%") and parts[4].endswith("%"):
            rows.append(" ".join(parts[5:]))
    return rows


def test_leak_goroutines_grow_steadily(faultsvc_bin: Path) -> None:
    with faultsvc(faultsvc_bin, "leak") as svc:
        time.sleep(0.5)
        first = svc.goroutines()
        time.sleep(2.5)
        second = svc.goroutines()
        stacks = svc.get("/debug/pprof/goroutine?debug=1").decode()
    # ~30 leaked goroutines a second; allow a slow, shared machine half of that.
    assert second - first >= 35, (first, second)
    assert "main.(*subscriber).watch" in stacks


def test_mutex_contention_in_profiles(faultsvc_bin: Path, go_tool: str, tmp_path: Path) -> None:
    with faultsvc(faultsvc_bin, "mutex") as svc:
        cpu = svc.get("/debug/pprof/profile?seconds=2", timeout=20)
        mutex = svc.get("/debug/pprof/mutex?debug=1").decode()
    assert profile_samples(mutex), f"mutex profile is empty: {mutex[:300]!r}"
    assert "main.(*inventory).reserve" in mutex
    top = pprof_top(go_tool, cpu, tmp_path)
    assert "main.(*inventory).reserve" in top[:3], top[:10]


def test_cpu_hash_is_hottest(faultsvc_bin: Path, go_tool: str, tmp_path: Path) -> None:
    with faultsvc(faultsvc_bin, "cpu") as svc:
        cpu = svc.get("/debug/pprof/profile?seconds=2", timeout=20)
    top = pprof_top(go_tool, cpu, tmp_path)
    assert top and top[0] == "main.hashPassword", top[:10]


def test_chan_blocking_in_block_profile(faultsvc_bin: Path) -> None:
    with faultsvc(faultsvc_bin, "chan") as svc:
        time.sleep(2)
        block = svc.get("/debug/pprof/block?debug=1").decode()
    assert profile_samples(block), f"block profile is empty: {block[:300]!r}"
    assert "runtime.chansend" in block and "main.(*auditLog).record" in block


def test_gc_pressure_runs_many_cycles_and_grows_heap(faultsvc_bin: Path) -> None:
    # The report cache retains ~100 KiB per request: the live heap keeps growing.
    # How fast depends on the CPU the service gets, so watch for up to 20 s.
    with faultsvc(faultsvc_bin, "gc") as svc:
        time.sleep(0.5)
        before = after = svc.memstats()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (
            after["NumGC"] - before["NumGC"] >= 10
            and after["HeapAlloc"] > before["HeapAlloc"] + 5 * 2**20
        ):
            time.sleep(0.5)
            after = svc.memstats()
    assert after["NumGC"] - before["NumGC"] >= 10, (before["NumGC"], after["NumGC"])
    assert after["HeapAlloc"] > before["HeapAlloc"] + 5 * 2**20, (before, after)


def _syscall_rate(faultsvc_bin: Path, mode: str) -> int:
    with faultsvc(faultsvc_bin, mode) as svc:
        time.sleep(0.5)
        before = svc.syscalls()
        time.sleep(1)
        return svc.syscalls() - before


def test_syscall_storm(faultsvc_bin: Path) -> None:
    # Compared with the healthy mode on the same machine in the same test: absolute
    # rates swing several-fold with the machine's load.
    storm = _syscall_rate(faultsvc_bin, "syscall")
    baseline = _syscall_rate(faultsvc_bin, "healthy")
    assert storm > 10_000, f"only {storm} read/write syscalls in 1 s"
    assert storm > 10 * max(baseline, 1), (storm, baseline)


def test_healthy_shows_none_of_the_faults(faultsvc_bin: Path) -> None:
    with faultsvc(faultsvc_bin, "healthy") as svc:
        time.sleep(0.5)
        g0, s0, gc0 = svc.goroutines(), svc.syscalls(), svc.memstats()["NumGC"]
        time.sleep(2)
        g1, s1, gc1 = svc.goroutines(), svc.syscalls(), svc.memstats()["NumGC"]
        items = json.loads(urllib.request.urlopen(svc.api + "/api/items?limit=3", timeout=5).read())
        mutex = svc.get("/debug/pprof/mutex?debug=1").decode()
        block = svc.get("/debug/pprof/block?debug=1").decode()
    assert [i["id"] for i in items] == [1, 2, 3]
    assert abs(g1 - g0) <= 3, (g0, g1)
    assert (s1 - s0) / 2 < 5_000, f"{(s1 - s0) / 2:.0f} syscalls/s is no longer gentle"
    assert gc1 - gc0 <= 5, (gc0, gc1)
    for name in ("reserve", "auditLog", "hashPassword"):
        assert name not in mutex and name not in block


def test_no_contention_profiles_leaves_mutex_profile_empty(faultsvc_bin: Path) -> None:
    # Flag and environment both work; the contention itself is still there.
    for extra, env in ((("-no-contention-profiles",), None), ((), {"NO_CONTENTION_PROFILES": "1"})):
        with faultsvc(faultsvc_bin, "mutex", *extra, env=env) as svc:
            time.sleep(1.5)
            mutex = svc.get("/debug/pprof/mutex?debug=1").decode()
            block = svc.get("/debug/pprof/block?debug=1").decode()
            # Goroutines queued on inv.mu, in any of a few snapshots (one can miss on a busy CPU).
            waiting = any(
                "Mutex).lockSlow" in stacks and "main.(*inventory).reserve" in stacks
                for stacks in (
                    svc.get("/debug/pprof/goroutine?debug=1").decode() for _ in range(10)
                )
            )
        assert profile_samples(mutex) == [], mutex[:300]
        assert profile_samples(block) == [], block[:300]
        assert waiting, "no goroutine was waiting on the inventory lock"


def test_start_line_and_clean_sigterm(faultsvc_bin: Path) -> None:
    with faultsvc(faultsvc_bin, "cpu") as svc:
        svc.proc.send_signal(signal.SIGTERM)
        code = svc.proc.wait(timeout=5)
        err = svc.proc.stderr.read() if svc.proc.stderr else ""
    assert code == 0, err
    start = err.splitlines()[0]
    assert "mode=cpu" in start and "GOMAXPROCS=" in start and "pprof=127.0.0.1:" in start
    assert "shutting down" in err


def test_unknown_mode_is_a_clear_error(faultsvc_bin: Path) -> None:
    r = subprocess.run(
        [str(faultsvc_bin / "faultsvc"), "-mode", "nope"],
        capture_output=True, text=True, timeout=10,
    )
    assert r.returncode != 0
    assert 'unknown mode "nope"' in r.stderr and "mutex" in r.stderr


def elf_section_names(path: Path) -> set[str]:
    """Section names of a 64-bit little-endian ELF file.

    Hand-written (a few lines of struct) so the check does not depend on
    binutils' readelf output format; readelf is used as a cross-check below.
    """
    data = path.read_bytes()
    assert data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1, "not an ELF64 LE file"
    e_shoff = struct.unpack_from("<Q", data, 0x28)[0]
    e_shentsize, e_shnum, e_shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    headers = [
        struct.unpack_from("<IIQQQQ", data, e_shoff + i * e_shentsize) for i in range(e_shnum)
    ]
    strtab_off = headers[e_shstrndx][4]
    names = set()
    for h in headers:
        start = strtab_off + h[0]
        names.add(data[start : data.index(b"\0", start)].decode())
    return names


def test_stripped_binary_keeps_only_gopclntab(faultsvc_bin: Path) -> None:
    full = elf_section_names((faultsvc_bin / "faultsvc").resolve())
    stripped = elf_section_names((faultsvc_bin / "faultsvc-stripped").resolve())
    assert {".symtab", ".gopclntab"} <= full
    assert ".gopclntab" in stripped and ".symtab" not in stripped
    assert not any(n.startswith(".debug_") for n in stripped)
    readelf = subprocess.run(
        ["readelf", "-S", "-W", str((faultsvc_bin / "faultsvc-stripped").resolve())],
        capture_output=True, text=True,
    )
    if readelf.returncode == 0:
        assert ".gopclntab" in readelf.stdout and ".symtab" not in readelf.stdout


def test_stripped_binary_runs_the_same_faults(faultsvc_bin: Path) -> None:
    with faultsvc(faultsvc_bin, "leak", binary="faultsvc-stripped") as svc:
        time.sleep(0.3)
        first = svc.goroutines()
        time.sleep(1.5)
        assert svc.goroutines() > first + 15


def test_demo_manifests_cover_every_fault_and_variant() -> None:
    import yaml

    docs = [d for d in yaml.safe_load_all(MANIFESTS.read_text()) if d]
    assert docs[0] == {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo"}}
    pods = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Pod"}
    assert set(pods) == {
        "healthy", "mutex", "leak", "cpu", "chan", "gc", "syscall",
        "pprof-localhost", "stripped", "no-contention-profiles", "not-go",
    }
    qos = set()
    for name, pod in pods.items():
        meta, spec = pod["metadata"], pod["spec"]
        assert meta["namespace"] == "demo" and meta["labels"]["app"] == name
        assert spec["restartPolicy"] == "Always" and "nodeName" not in spec
        (c,) = spec["containers"]
        env = {e["name"]: e["value"] for e in c.get("env", [])}
        ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        if c["image"].startswith("sandbox.local/faultsvc"):
            assert env["FAULT_MODE"] == meta["labels"]["fault"]
            # pprof is declared exactly where it is reachable on the pod IP.
            assert ("pprof" in ports) == (env.get("PPROF_ADDR", ":6060") == ":6060")
        res = c.get("resources", {})
        if not res:
            qos.add("BestEffort")
        elif res["requests"] == res["limits"]:
            qos.add("Guaranteed")
        else:
            qos.add("Burstable")
    assert qos == {"BestEffort", "Burstable", "Guaranteed"}
    assert pods["cpu"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] == "200m"
    assert pods["stripped"]["spec"]["containers"][0]["image"] == "sandbox.local/faultsvc-stripped"
    assert pods["pprof-localhost"]["spec"]["containers"][0]["env"][1]["value"] == "127.0.0.1:6060"
    assert pods["not-go"]["spec"]["containers"][0]["command"][:2] == ["/bin/busybox", "httpd"]
    assert "\x1b[31m" in pods["healthy"]["metadata"]["annotations"]["note"]
