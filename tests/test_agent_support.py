"""Helpers for the agent tests (no tests here): kubelet-style cgroups made for the
test, processes started inside them (optionally in their own network and PID
namespaces), and the agent run as a subprocess with its frames read back.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bpf import schema

ROOT = Path(__file__).resolve().parent.parent
V1 = Path("/sys/fs/cgroup")
UNIFIED = Path("/sys/fs/cgroup/unified")


@dataclass
class PodCgroup:
    """A pod + container cgroup pair the test created, in each hierarchy asked for."""

    pod_uid: str
    container_id: str
    #: hierarchy name ("cpu", "cpuacct", "unified") -> container dir
    dirs: dict[str, Path] = field(default_factory=dict)
    top: dict[str, Path] = field(default_factory=dict)

    def container(self, h: str = "cpu") -> Path:
        return self.dirs[h]

    def pod(self, h: str = "cpu") -> Path:
        return self.dirs[h].parent

    def join(self) -> None:
        """Move the calling process into the container cgroups (a preexec_fn)."""
        for d in self.dirs.values():
            with open(d / "cgroup.procs", "w") as f:
                f.write(str(os.getpid()))


def _rmtree_cgroup(top: Path) -> None:
    # cgroup directories go bottom-up with rmdir; their processes must be gone first.
    for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda x: -x[0].count("/")):
        # Anything still in a cgroup the test made was started by the test.
        with contextlib.suppress(OSError):
            for pid in Path(dirpath, "cgroup.procs").read_text().split():
                with contextlib.suppress(OSError):
                    os.kill(int(pid), signal.SIGKILL)
        for _ in range(50):
            try:
                os.rmdir(dirpath)
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.1)


@contextlib.contextmanager
def pod_cgroup(
    layout: str = "cgroupfs",
    hierarchies: tuple[str, ...] = ("cpu", "cpuacct"),
    quota_us: int | None = None,
    pod_quota_us: int | None = None,
) -> Iterator[PodCgroup]:
    """Create ``gkd-test-<rand>/<kubelet path>`` in each hierarchy; removed afterwards.

    layout: ``cgroupfs`` (kubepods/burstable/pod<uid>/<cid>) or ``systemd``
    (kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice/
    cri-containerd-<cid>.scope).
    """
    uid = str(uuid.uuid4())
    cid = uuid.uuid4().hex + uuid.uuid4().hex
    top_name = f"gkd-test-{uuid.uuid4().hex[:8]}"
    if layout == "cgroupfs":
        rel = f"kubepods/burstable/pod{uid}/{cid}"
    else:
        u = uid.replace("-", "_")
        rel = (f"kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{u}.slice/"
               f"cri-containerd-{cid}.scope")
    pc = PodCgroup(uid, cid)
    try:
        for h in hierarchies:
            base = UNIFIED if h == "unified" else V1 / h
            top = base / top_name
            pc.top[h] = top
            d = top / rel
            d.mkdir(parents=True)
            pc.dirs[h] = d
        if quota_us is not None:
            (pc.dirs["cpu"] / "cpu.cfs_quota_us").write_text(str(quota_us))
        if pod_quota_us is not None:
            (pc.dirs["cpu"].parent / "cpu.cfs_quota_us").write_text(str(pod_quota_us))
        yield pc
    finally:
        for top in pc.top.values():
            _rmtree_cgroup(top)


def ns_command(argv: list[str], netns: bool = False, pidns: bool = False) -> list[str]:
    """Wrap a command to run in new network (loopback up) and/or PID namespaces.

    The final exec keeps the pid of the wrapper (without a PID namespace) or of
    unshare's forked child (with one).
    """
    flags = (["--net"] if netns else []) + (["--pid", "--fork"] if pidns else [])
    if not flags:
        return list(argv)
    if netns:
        return ["unshare", *flags, "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *argv]
    return ["unshare", *flags, *argv]


def start_in(pc: PodCgroup, argv: list[str], **kw) -> subprocess.Popen:
    return subprocess.Popen(argv, preexec_fn=pc.join, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)


def stop_proc(p: subprocess.Popen) -> None:
    if p.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            p.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        p.wait(timeout=10)


def nsenter_get(pid: int, port: int, path: str, timeout: float = 30) -> bytes:
    """GET http://127.0.0.1:port/path from inside pid's network namespace, with
    nsenter and curl/python (a reference path independent of bpf.netns_http)."""
    code = ("import sys,urllib.request;"
            f"sys.stdout.buffer.write(urllib.request.urlopen('http://127.0.0.1:{port}{path}',"
            f"timeout={timeout}).read())")
    r = subprocess.run(["nsenter", "-t", str(pid), "-n", "/usr/bin/python3", "-c", code],
                       capture_output=True, timeout=timeout + 10)
    assert r.returncode == 0, r.stderr.decode()[-500:]
    return r.stdout


def wait_port(pid: int, port: int, timeout: float = 20) -> None:
    """Wait until something listens on port in pid's network namespace (/proc/PID/net/tcp)."""
    want = f":{port:04X} "
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
                parts = line.split()
                if parts[1].endswith(want.strip()) and parts[3] == "0A":
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on port {port} in pid {pid}'s namespace")


def find_child_pid(pid: int, comm: str, timeout: float = 10) -> int:
    """The first descendant of pid whose comm is ``comm`` (for unshare --fork)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in os.listdir("/proc"):
            if not p.isdigit():
                continue
            try:
                st = Path(f"/proc/{p}/stat").read_text()
            except OSError:
                continue
            ppid = int(st[st.rfind(")") + 2:].split()[1])
            if ppid == pid and Path(f"/proc/{p}/comm").read_text().strip() == comm:
                return int(p)
        time.sleep(0.05)
    raise AssertionError(f"no child {comm} of {pid}")


class AgentRun:
    """``/usr/bin/python3 -m bpf.agent ...`` with frames read in a thread."""

    def __init__(self, python: str, *args: str, cwd: Path = ROOT, argv0: list[str] | None = None):
        cmd = (argv0 or [python, "-m", "bpf.agent"]) + list(args)
        self.proc = subprocess.Popen(cmd, cwd=str(cwd), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.frames: queue.Queue = queue.Queue()
        self.all: list[dict] = []
        self.bad_lines: list[bytes] = []
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()
        self.stderr = b""

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                f = schema.decode_frame(line)
            except schema.FrameError:
                self.bad_lines.append(line)
                continue
            self.all.append(f)
            self.frames.put(f)
        self.frames.put(None)

    def next(self, kind: str | None = None, timeout: float = 20, **match) -> dict:
        """The next frame of ``kind`` (skipping others) matching ``match``."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {kind} frame {match} in {timeout}s; seen: "
                                     f"{[x['kind'] for x in self.all][-30:]}")
            try:
                f = self.frames.get(timeout=left)
            except queue.Empty:
                continue
            if f is None:
                self.frames.put(None)
                raise AssertionError(f"agent ended before a {kind} frame {match}; frames: "
                                     f"{[(x['kind'], x.get('code')) for x in self.all]}; "
                                     f"stderr: {self.read_stderr()[-2000:]!r}")
            if (kind is None or f["kind"] == kind) and all(f.get(k) == v for k, v in match.items()):
                return f

    def send(self, cmd: str, **fields) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(schema.encode(schema.make_command(cmd, **fields)).encode())
        self.proc.stdin.flush()

    def close_stdin(self) -> None:
        assert self.proc.stdin is not None
        with contextlib.suppress(OSError):
            self.proc.stdin.close()

    def wait(self, timeout: float = 20) -> int:
        rc = self.proc.wait(timeout=timeout)
        self._t.join(timeout=5)
        return rc

    def read_stderr(self) -> str:
        if self.proc.poll() is not None and self.proc.stderr and not self.stderr:
            with contextlib.suppress(OSError, ValueError):
                self.stderr = self.proc.stderr.read()
        return self.stderr.decode(errors="replace")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        self.close_stdin()


#: The eBPF collectors (engineer 5's) compile for seconds at start; tests of the
#: agent's core turn them off so they test only what they mean to.
NO_EBPF = ("--disable", "cpu_stacks,futex,gc,goroutines_uprobe")


@contextlib.contextmanager
def agent(python: str, *args: str, ebpf: bool = False, **kw) -> Iterator[AgentRun]:
    """Run the agent (eBPF collectors off unless ``ebpf``); killed on the way out."""
    a = AgentRun(python, *args, *(() if ebpf else NO_EBPF), **kw)
    try:
        yield a
    finally:
        a.kill()


def faultsvc(go_bin: Path, *args: str) -> list[str]:
    return [str(go_bin / "faultsvc"), *args]


def busybox_or_sleep() -> str:
    return shutil.which("sleep") or "/bin/sleep"


def test_standby_agent_reads_its_arguments_and_leaves_when_nobody_comes(monkeypatch):
    import os

    from bpf import agent

    r, w = os.pipe()
    try:
        os.write(w, b'["--pid", "1"]\n--rest-is-commands\n')
        assert agent.wait_for_args(r) == ["--pid", "1"]
        assert os.read(r, 100) == b"--rest-is-commands\n"  # nothing past the line taken
        # A half-open link: stdin neither closes nor speaks. The standby gives up.
        monkeypatch.setattr(agent, "STANDBY_MAX_WAIT_S", 0.3)
        assert agent.wait_for_args(r) is None
    finally:
        os.close(r)
        os.close(w)
