"""The eBPF collectors through the node agent's own CLI (``python3 -m
bpf.agent``), as the console runs them: discovery, frames, the hidden
``--ebpf``, and a target that dies mid-run leaving no probe attached."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from ebpf_support import goprogs

from bpf import bcc_env, schema

ROOT = Path(__file__).resolve().parent.parent
MINE = ("cpu_stacks", "futex", "goroutines_uprobe", "gc")


@pytest.fixture(scope="module")
def goprog(go_tool: str) -> Path:
    return goprogs.build(go_tool, "stripped")


def test_ebpf_flag_prints_each_program(bcc, goprog) -> None:
    with goprogs.running(goprog, "-mode", "idle") as p:
        out = subprocess.run([bcc, "-m", "bpf.agent", "--ebpf", "--pid", str(p.pid)],
                             cwd=ROOT, capture_output=True, text=True, timeout=60).stdout
    for name, fn in (("cpu_stacks", "gkd_cpu_sample"), ("futex", "sys_enter_futex"),
                     ("goroutines_uprobe", "gkd_g_new"), ("gc", "gkd_gc_term")):
        assert f"---- {name} (pid {p.pid})" in out, out[:2000]
        assert fn in out
    assert out.count(f"#define TARGET_TGID {p.pid}") == 4


def test_ebpf_text_and_metadata_without_bcc() -> None:
    """Importable and describable where bcc is missing (the console's venv)."""
    import importlib

    from bpf.target import resolve

    t = resolve(pid=os.getpid())
    for name in MINE:
        cls = importlib.import_module(f"bpf.collectors.{name}").COLLECTOR
        assert cls.name == name and cls.cost and cls.needs_bcc
        text = cls(t, {"hz": 49}).ebpf_text()
        assert f"#define TARGET_TGID {os.getpid()}" in text
    assert importlib.import_module("bpf.collectors.cpu_stacks").COLLECTOR.default_on


def _reader(proc: subprocess.Popen, q: queue.Queue) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        q.put(schema.decode_frame(line))
    q.put(None)


@pytest.mark.ebpf
@pytest.mark.slow
def test_agent_runs_the_ebpf_collectors_and_detaches_when_the_target_dies(bcc, goprog) -> None:
    with goprogs.running(goprog, "-mode", "churn") as p:
        port = p.pprof.rsplit(":", 1)[1]
        agent = subprocess.Popen(
            [bcc, "-m", "bpf.agent", "--pid", str(p.pid), "--pprof-port", port,
             "--enable", ",".join(MINE)],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
        q: queue.Queue = queue.Queue()
        threading.Thread(target=_reader, args=(agent, q), daemon=True).start()
        frames: list[dict] = []
        held: list[int] = []
        try:
            deadline = time.monotonic() + 180
            kinds: set[str] = set()
            # Every collector on, and a data frame from each (the pprof
            # goroutines collector also sends "goroutines": wait for uprobe's).
            while not {"cpu_stacks", "futex", "uprobe", "gc"} <= kinds:
                f = q.get(timeout=max(1, deadline - time.monotonic()))
                assert f is not None, (frames, agent.stderr.read() if agent.stderr else "")
                frames.append(f)
                kinds.add(f.get("source") if f["kind"] == "goroutines" else f["kind"])
                assert not (f["kind"] == "collector" and f["state"] == "failed"), f
            held = bcc_env.process_bpf_fds(agent.pid)["prog_ids"]
            p.proc.send_signal(signal.SIGKILL)
            p.proc.wait()
            while True:
                f = q.get(timeout=60)
                if f is None:
                    break
                frames.append(f)
            agent.wait(timeout=60)
        finally:
            if agent.poll() is None:
                agent.kill()
                agent.wait()
    on = {f["name"] for f in frames if f["kind"] == "collector" and f["state"] == "on"}
    assert set(MINE) <= on, [f for f in frames if f["kind"] in ("collector", "error", "log")]
    assert [f for f in frames if f["kind"] == "target_exit"], frames[-5:]
    bye = frames[-1]
    assert bye["kind"] == "bye" and bye["detached"] >= (os.cpu_count() or 1) + 6, bye
    assert len(held) >= 7
    assert not set(held) & set(bcc_env.bpf_programs()), "programs left loaded"
    uprobe = [f for f in frames if f["kind"] == "goroutines" and f["source"] == "uprobe"]
    assert uprobe and uprobe[-1]["baseline"] == "pprof_index"


def _send(agent: subprocess.Popen, cmd: str, **fields: object) -> None:
    assert agent.stdin is not None
    agent.stdin.write(schema.encode(schema.make_command(cmd, **fields)))
    agent.stdin.flush()


def _wait_all_on(q: queue.Queue, frames: list[dict], names: tuple[str, ...],
                 timeout: float) -> None:
    """Read frames until the latest collector frame of every name says on."""
    state: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while not all(state.get(n) == "on" for n in names):
        f = q.get(timeout=max(1, deadline - time.monotonic()))
        assert f is not None, "the agent exited: " + repr(frames[-10:])
        frames.append(f)
        assert not (f["kind"] == "error" and f.get("fatal")), f
        if f["kind"] == "collector" and f["name"] in names:
            assert f["state"] != "failed", f
            state[f["name"]] = f["state"]


def _wait_data(q: queue.Queue, frames: list[dict], timeout: float) -> None:
    """Read frames until each eBPF collector has sent a data frame."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while not {"cpu_stacks", "futex", "gc", "uprobe"} <= seen:
        f = q.get(timeout=max(1, deadline - time.monotonic()))
        assert f is not None, "the agent exited: " + repr(frames[-10:])
        frames.append(f)
        seen.add(f.get("source") if f["kind"] == "goroutines" else f["kind"])


@pytest.mark.ebpf
@pytest.mark.slow
def test_agent_survives_toggling_every_collector_and_exits_clean(bcc, goprog) -> None:
    """Every collector on, then bcc collectors disabled and re-enabled while
    others compile, ``set hz`` (restarts cpu_stacks), and a stop sent while
    compiles run: libbcc calls from the start threads and the main loop must
    not crash the agent (it once died with SIGSEGV), the stream must end with
    ``bye``, the exit code be 0, and no program the agent loaded stay loaded."""
    with goprogs.running(goprog, "-mode", "churn") as p:
        port = p.pprof.rsplit(":", 1)[1]
        agent = subprocess.Popen(
            [bcc, "-m", "bpf.agent", "--pid", str(p.pid), "--pprof-port", port,
             "--interval", "0.5", "--enable", ",".join(schema.COLLECTORS)],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
        q: queue.Queue = queue.Queue()
        threading.Thread(target=_reader, args=(agent, q), daemon=True).start()
        frames: list[dict] = []
        held: set[int] = set()
        try:
            _wait_all_on(q, frames, MINE, 300)
            _wait_data(q, frames, 60)
            held.update(bcc_env.process_bpf_fds(agent.pid)["prog_ids"])
            for cycle, hz in enumerate((19, 99)):
                for name in MINE:
                    _send(agent, "disable", collector=name)
                for name in MINE[::-1]:
                    _send(agent, "enable", collector=name)
                _send(agent, "set", hz=hz)
                if cycle == 0:
                    _send(agent, "disable", collector="goroutines")
                    _send(agent, "enable", collector="goroutines")
                _wait_all_on(q, frames, MINE, 400)
                _wait_data(q, frames, 60)
                held.update(bcc_env.process_bpf_fds(agent.pid)["prog_ids"])
            # Stop while compiles run: shutdown waits for them, then detaches.
            _send(agent, "disable", collector="futex")
            _send(agent, "enable", collector="futex")
            _send(agent, "disable", collector="gc")
            _send(agent, "stop")
            while True:
                f = q.get(timeout=180)
                if f is None:
                    break
                frames.append(f)
            code = agent.wait(timeout=60)
        finally:
            if agent.poll() is None:
                agent.kill()
                agent.wait()
        err = agent.stderr.read() if agent.stderr else ""
    assert code == 0, (code, err[-3000:])
    assert frames[-1]["kind"] == "bye" and frames[-1]["reason"] == "stop command", frames[-5:]
    assert not [f for f in frames if f["kind"] == "error" and f.get("fatal")]
    assert len(held) >= 7
    assert not held & set(bcc_env.bpf_programs()), "programs left loaded"
    assert {"throttle", "goroutines"} <= {f["kind"] for f in frames}


@pytest.mark.ebpf
@pytest.mark.slow
def test_set_hz_reopens_sampling_without_a_restart(bcc, goprog) -> None:
    """``set hz`` on a running cpu_stacks re-opens its perf events on the
    loaded program: no collector restart (no second compile), the next frames
    say the new rate, and their sample counts follow it (a busy target: about
    hz samples per CPU-second)."""
    with goprogs.running(goprog, "-mode", "cpu") as p:
        agent = subprocess.Popen(
            [bcc, "-m", "bpf.agent", "--pid", str(p.pid), "--pprof-port",
             p.pprof.rsplit(":", 1)[1], "--disable", "goroutines,throttle"],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
        q: queue.Queue = queue.Queue()
        threading.Thread(target=_reader, args=(agent, q), daemon=True).start()
        frames: list[dict] = []
        try:
            _wait_all_on(q, frames, ("cpu_stacks",), 300)
            n_on = len(frames)
            _send(agent, "set", hz=99)
            fast: list[dict] = []
            cpu: list[float] = []
            # Enough frames for the target to have run at least 0.5 CPU-s: on a
            # loaded machine a "busy" target may get a fraction of a CPU.
            deadline = time.monotonic() + 120
            while (len(fast) < 4 or cpu[-1] - cpu[0] < 0.5) and time.monotonic() < deadline:
                f = q.get(timeout=30)
                assert f is not None, frames[-10:]
                frames.append(f)
                if f["kind"] == "cpu_stacks" and f["hz"] == 99:
                    fast.append(f)
                    cpu.append(_cpu_seconds(p.pid))
            _send(agent, "stop")
            while q.get(timeout=60) is not None:
                pass
            agent.wait(timeout=60)
        finally:
            if agent.poll() is None:
                agent.kill()
                agent.wait()
    restarts = [f for f in frames[n_on:] if f["kind"] == "collector"
                and f["name"] == "cpu_stacks"]
    assert not restarts, restarts
    assert len(fast) >= 4, frames[-10:]
    # samples / 99 = CPU seconds the target ran (the kernel's accounting),
    # over the frames after the first: the perf events really sample at 99 Hz.
    sampled = sum(f["samples"] for f in fast[1:]) / 99
    ran = cpu[-1] - cpu[0]
    assert ran > 0.3 and abs(sampled - ran) <= 0.4 * ran, (sampled, ran)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
