"""From ``enter`` on a pod to live numbers, over SSH: each attach phase timed on the sandbox.

The real code path the console uses: ``KubeSessionFactory`` with the ``ssh``
transport, the sandbox's ssh_config (strict host keys) and its restricted
kubeconfig, the real agent bundle shipped to the node. One attach is cold
(the bundle removed from the node first), then warm ones (bundle cached).
Then the Textual app itself (Pilot, the real factory) is timed from the
``enter`` key on the leak pod's row to the goroutine count on the attached
screen.

The sandbox is one per host: it is held only for the measurement and always
taken down.
"""

from __future__ import annotations

import asyncio
import glob
import os
import queue
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from tests.bench import procs
from tests.bench.report import Section, Table
from tests.bench.stats import median

POD = "leak"
DATA = ("goroutines", "throttle", "cpu_stacks")
GOAL_S = 3.0


def _session_phases(session: Any, t0: float, timeout: float) -> dict[str, float]:
    """Seconds from ``t0`` to each first frame, plus the transport's and agent's own steps."""
    frames: queue.Queue[Any] = queue.Queue()

    def read() -> None:
        for f in session.frames():
            frames.put((time.monotonic(), f))
        frames.put((time.monotonic(), None))

    threading.Thread(target=read, daemon=True, name="bench-frames").start()
    got: dict[str, float] = {}
    hello: dict[str, Any] = {}
    deadline = time.monotonic() + timeout
    while not all(k in got for k in ("hello", *DATA)) and time.monotonic() < deadline:
        try:
            at, f = frames.get(timeout=0.2)
        except queue.Empty:
            continue
        if f is None:
            break
        if f["kind"] == "error" and f.get("fatal"):
            raise procs.BenchError(f"the agent failed: {f.get('msg')}")
        if f["kind"] == "error":
            procs.log(f"attach_ssh: agent error frame: {f.get('code')}: {f.get('msg')}")
        if f["kind"] not in got:
            got[f["kind"]] = at - t0
            if f["kind"] == "hello":
                hello = f
    out = {k: v for k, v in got.items() if k in ("hello", *DATA)}
    link = dict(getattr(session._transport, "last_timings", {}) or {})
    out["ssh connect"] = link.get("connect_s", float("nan"))
    out["checks answered"] = out["ssh connect"] + link.get("preflight_s", float("nan"))
    out["upload + separate start"] = link.get("cold_start_s", float("nan"))
    out["agent exec'd"] = out["ssh connect"] + link.get("start_s", float("nan"))
    out["cached"] = link.get("cached", float("nan"))
    out["reused"] = link.get("reused", 0.0)
    st = dict(hello.get("startup") or {})
    if st.get("standby") is not None:
        # Started ahead: its process and imports are older than this attach.
        out["agent import -> hello"] = st["standby"]
        st = {k: v for k, v in st.items() if k in ("resolve", "discover", "pprof_port")}
    if st.get("process") is not None and "hello" in out:
        out["remote shell forked"] = out["hello"] - st["process"]
        if st.get("boot") is not None:
            out["shell + python start"] = st["process"] - st["boot"]
    if st.get("boot") is not None:
        out["unpack + agent imports"] = st["boot"] - st["agent"]
    for k in ("resolve", "discover", "pprof_port"):
        if k in st:
            out[f"agent: {k}"] = st[k]
    if "agent" in st:
        out["agent import -> hello"] = st["agent"]
    return out


def _remove_cached_bundle() -> int:
    """Delete this console's agent bundle (and its unpacked copy) cached on the node.

    The sandbox node is this host. Only our bundle: other bundles there may be
    in use by someone else's test at this moment.
    """
    import shutil

    from tui.transports.bundle import agent_bundle

    b = agent_bundle()
    n = 0
    for d in glob.glob(os.path.join(tempfile.gettempdir(), "go-k8s-debug-*")):
        f = os.path.join(d, b.filename)
        if os.path.exists(f):
            os.unlink(f)
            n += 1
        shutil.rmtree(os.path.join(d, ".go-k8s-debug-agent-" + b.sha256[:16]), ignore_errors=True)
    return n


def _wait_closed(session: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while session.health().state != "ended" and time.monotonic() < deadline:
        time.sleep(0.05)


def _close_kept_connections() -> None:
    try:
        from tui.transports.ssh import close_connections
    except ImportError:  # a console without connection reuse
        return
    close_connections()


def _wait_standby(timeout: float = 20.0) -> None:
    """Wait for the agent the transport starts ahead (as an operator's reading time would)."""
    try:
        from tui.transports.ssh import _POOL
    except ImportError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(e.standby is not None for e in list(_POOL._entries.values())):
            return
        time.sleep(0.1)


def _direct_attaches(sb: Any, warm: int, timeout: float) -> dict[str, list[dict]]:
    """Cold once, warm on a new SSH connection, warm on the console's kept connection."""
    from tui.session import KubeSessionFactory
    from tui.sources.kube import KubePodSource
    from tui.transports.ssh import SSHOptions

    src = KubePodSource(str(sb.restricted_kubeconfig))
    factory = KubeSessionFactory(
        src, transport="ssh", ssh_options=SSHOptions(config=[str(sb.ssh_config)])
    )
    out: dict[str, list[dict]] = {"cold": [], "warm": [], "reused": [], "prepared": []}
    try:
        pod = src.read_pod("demo", POD)
        plan = ["cold"] + ["warm"] * warm + ["reused"] * warm + ["prepared"] * warm
        for i, mode in enumerate(plan):
            if mode == "cold":
                procs.log(f"attach_ssh: cold attach (removed {_remove_cached_bundle()} bundle)")
            if mode in ("cold", "warm", "prepared"):
                _close_kept_connections()
            if mode == "prepared":
                # What a pod browser that calls prepare() for the row under the cursor gets.
                factory.prepare(pod)
            if mode in ("reused", "prepared"):
                _wait_standby()
            t0 = time.monotonic()
            s = factory.attach(pod)
            try:
                out[mode].append(_session_phases(s, t0, timeout))
            finally:
                s.close()
            shown = ", ".join(f"{k} {v:.2f}" for k, v in out[mode][-1].items())
            procs.log(f"attach_ssh: {mode} attach {i}: {shown}")
        out["noop"] = [{"noop": x} for x in _remote_noop_times(3)]
        _close_kept_connections()
        return out
    finally:
        src.stop()


def _remote_noop_times(n: int) -> list[float]:
    """Seconds for `true` over the kept connection: the remote shell's own start-up
    (the SSH user's rc files), which every command that is not a standby agent pays."""
    try:
        from tui.transports.ssh import _POOL, _LoopThread
    except ImportError:
        return []
    entries = list(_POOL._entries.values())
    if not entries:
        return []
    conn = entries[0].conn
    out = []
    for _ in range(n):
        t0 = time.monotonic()
        _LoopThread.get().run(conn.run("true", check=False), timeout=60)
        out.append(time.monotonic() - t0)
    return out


async def _app_attaches(sb: Any, n: int, timeout: float) -> list[dict[str, float]]:
    from tui.app import GoDebugApp
    from tui.screens.attached import AttachedScreen
    from tui.screens.pods import PodBrowserScreen
    from tui.session import KubeSessionFactory
    from tui.sources.kube import KubePodSource
    from tui.transports.ssh import SSHOptions
    from tui.widgets.pod_table import PodTable

    src = KubePodSource(str(sb.restricted_kubeconfig))
    factory = KubeSessionFactory(
        src, transport="ssh", ssh_options=SSHOptions(config=[str(sb.ssh_config)])
    )
    app = GoDebugApp(src, factory, namespace="demo")
    out = []
    failures: list[str] = []

    async def until(pred: Any, what: str) -> float:
        deadline = time.monotonic() + timeout
        while not pred():
            if time.monotonic() > deadline:
                raise procs.BenchError(f"the console showed no {what} in {timeout:.0f} s")
            await asyncio.sleep(0.01)
        return time.monotonic()

    _close_kept_connections()  # the console's first attach opens its connection
    try:
        async with app.run_test(size=(140, 45)) as pilot:
            table = app.screen.query_one(PodTable)
            await until(lambda: table.row_count >= 5, "demo pods")
            await pilot.press("slash", *POD, "enter")
            for i in range(n):
                await until(lambda: isinstance(app.screen, PodBrowserScreen), "pod browser")
                if i:
                    await asyncio.get_running_loop().run_in_executor(None, _wait_standby)
                t0 = time.monotonic()
                await pilot.press("enter")
                await until(lambda: isinstance(app.screen, AttachedScreen), "attached screen")
                screen = app.screen
                row: dict[str, float] = {"screen": time.monotonic() - t0}

                def snap(screen: Any = screen) -> Any:
                    return screen.snapshot

                def counted(snap: Any = snap) -> bool:
                    return snap() is not None and snap().goroutines.count is not None

                def throttled(snap: Any = snap) -> bool:
                    c = snap().throttle.container if snap() is not None else None
                    return c is not None and any(
                        v is not None for v in (c.share, c.throttled_ms_per_s, c.usage_cores)
                    )

                for key, pred in (("goroutine count drawn", counted),
                                  ("throttle numbers drawn", throttled)):  # fmt: skip
                    try:
                        row[key] = await until(pred, key) - t0
                    except procs.BenchError as e:
                        failures.append(str(e))
                session = screen.session
                await pilot.press("escape")
                await until(lambda: isinstance(app.screen, PodBrowserScreen), "pod browser")
                await asyncio.get_running_loop().run_in_executor(None, _wait_closed, session)
                out.append(row)
                procs.log(f"attach_ssh: app attach: {row}")
    finally:
        _close_kept_connections()
        src.stop()
    if failures:
        out.append({"failures": failures})  # type: ignore[dict-item]
    return out


def attach_ssh(quick: bool = False) -> Section:
    """Cold and warm attach over SSH, phase by phase; enter -> numbers on screen."""
    if os.geteuid() != 0:
        raise procs.BenchError("the sandbox needs root: run as root")
    if not (procs.BIN / "sandbox-control").exists():
        raise procs.BenchError("no sandbox control plane binary: run `make setup`")
    from demo.sandbox.api import Sandbox

    warm = 2 if quick else 5
    app_runs = 2 if quick else 4
    timeout = 60.0
    # One sandbox per host: wait for another one (a test run) to go down.
    os.environ.setdefault("GO_K8S_DEBUG_SANDBOX_WAIT", "600")
    state = Path(tempfile.mkdtemp(prefix="gkd-bench-attach-"))
    sb = Sandbox(state_dir=state)
    started = time.monotonic()
    try:
        sb.up(nodes=1, demo=True)
        up_s = time.monotonic() - started
        direct = _direct_attaches(sb, warm, timeout)
        app_error = ""
        try:
            app = asyncio.run(_app_attaches(sb, app_runs, timeout))
        except Exception as e:  # noqa: BLE001 - keep the transport numbers
            app, app_error = [], f"{type(e).__name__}: {e}"
    finally:
        sb.down()
        import shutil

        shutil.rmtree(state, ignore_errors=True)
    failures = [r for r in app if "failures" in r]
    app = [r for r in app if "failures" not in r]
    section = _section(direct, app, up_s)
    for r in failures:
        section.notes += [f"A console run missed: {f}" for f in r["failures"]]
    if app_error:
        section.notes.append(f"The console part failed: {app_error}")
    return section


def _fmt(x: float | None) -> str:
    return "–" if x is None or x != x else f"{x:.2f} s"


def _stats(runs: list[dict], key: str) -> str:
    xs = [r[key] for r in runs if key in r and r[key] == r[key]]
    if not xs:
        return "–"
    if len(xs) == 1:
        return _fmt(xs[0])
    return f"{median(xs):.2f} / {max(xs):.2f} s"


def _section(direct: dict[str, list[dict]], app: list[dict], up_s: float) -> Section:
    at = [
        ("ssh connect", "SSH connected (asyncssh: TCP, key exchange, host key, auth)"),
        ("checks answered", "remote checks answered / agent exec'd (warm path)"),
        ("agent exec'd", "agent started (cold: after the upload)"),
        ("remote shell forked", "remote process forked by sshd (from the hello)"),
        ("hello", "hello frame received"),
        ("goroutines", "first goroutines frame"),
        ("throttle", "first throttle frame"),
        ("cpu_stacks", "first cpu_stacks frame (bcc compile)"),
    ]
    took = [
        ("upload + separate start", "upload + separate agent start (cold only)"),
        ("shell + python start", "remote shell (rc files, checks) + python start-up"),
        ("unpack + agent imports", "bundle unpack + agent imports"),
        ("agent: resolve", "agent: resolve the target"),
        ("agent: discover", "agent: find collectors"),
        ("agent: pprof_port", "agent: check the pprof port"),
        ("agent import -> hello", "agent: import (or standby wake-up) to hello"),
    ]
    cols = ["cold", "warm, new SSH connection (median / max)",
            "warm, console's kept connection (median / max)",
            "warm, first attach after prepare(pod) (median / max)"]  # fmt: skip
    modes = ("cold", "warm", "reused", "prepared")
    t = Table(["from the attach call to …", *cols])
    for key, label in at:
        t.add(label, *(_stats(direct[m], key) for m in modes))
    d = Table(["step (duration)", *cols])
    for key, label in took:
        d.add(label, *(_stats(direct[m], key) for m in modes))
    noop = direct.get("noop") or []
    if noop:
        d.add("(for scale) a no-op remote command `true` on an open connection: the "
              "SSH user's shell start-up", "", "", _stats(noop, "noop"), "")  # fmt: skip
    a = Table(["in the console (Pilot), from `enter` to …", "first attach (new connection)",
               "later attaches (median / max)"])  # fmt: skip
    for key in ("screen", "goroutine count drawn", "throttle numbers drawn"):
        label = "attached screen shown" if key == "screen" else key
        a.add(label, _stats(app[:1], key), _stats(app[1:], key))
    s = Section(
        "attach_ssh",
        "Attach over SSH: from `enter` to the first live numbers",
        f"under {GOAL_S:g} s warm (bundle cached on the node), `enter` to numbers on screen.",
        [t, d, a],
    )
    s.notes.append(
        f"Sandbox (1 node, demo pods) brought up in {up_s:.0f} s and taken down after. "
        f"Pod demo/{POD}; KubeSessionFactory with the ssh transport, the sandbox ssh_config "
        "(strict host keys) and the restricted kubeconfig. Cold: the cached bundle removed "
        f"from the node first. Warm, new connection: {len(direct['warm'])} attaches, each on a "
        f"fresh SSH connection. Kept connection: {len(direct['reused'])} attaches on the "
        "connection the console keeps open per node, with the agent it starts ahead. After "
        "prepare(pod): a fresh console state, `KubeSessionFactory.prepare` called (as a pod "
        "browser would for the row under the cursor) and its standby agent ready. Console: "
        f"{len(app)} runs of GoDebugApp under Pilot (140x45), `enter` on the filtered leak row."
    )
    return s


def main() -> None:
    """``python -m tests.bench.bench_attach [--quick]``: print the section only."""
    import sys

    from tests.bench.report import machine, render

    started = time.time()
    s = attach_ssh("--quick" in sys.argv)
    print(render(s, started, "python -m tests.bench.bench_attach", machine()))


if __name__ == "__main__":
    main()
