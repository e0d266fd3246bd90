"""The agent against the sandbox's demo pods, resolved by pod UID and container ID
read from the API server, as the console does it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_agent_support import agent, nsenter_get

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]


@pytest.fixture
def demo(request, root: None):
    """The session's sandbox; or, with GKD_SANDBOX_STATE=<state dir>, one that is
    already up (only read: pods listed, agents attached), for runs beside a
    developer's sandbox."""
    import os

    state = os.environ.get("GKD_SANDBOX_STATE")
    if state:
        from demo.sandbox.api import Sandbox

        sb = Sandbox(state_dir=Path(state))
        assert sb.is_up(), f"no sandbox is up at {state}"
        return sb
    return request.getfixturevalue("sandbox")


def _pod(sb, name: str):
    from kubernetes import client

    v1 = client.CoreV1Api(sb.api_client())
    pod = v1.read_namespaced_pod(name, "demo")
    assert pod.status.phase == "Running", (name, pod.status.phase)
    cid = pod.status.container_statuses[0].container_id
    assert cid, f"{name} has no container ID"
    return pod.metadata.uid, cid


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(x.decode(errors="replace").split("=", 1) for x in raw if b"=" in x)


def test_cpu_pod_throttling_and_goroutines(bcc: str, demo) -> None:
    uid, cid = _pod(demo, "cpu")
    with agent(bcc, "--pod-uid", uid, "--container-id", cid, "--interval", "1") as a:
        hello = a.next("hello", timeout=30)
        t = hello["target"]
        # Independent reference: the manifest's environment reached this very process.
        assert _environ(t["pid"]).get("FAULT_MODE") == "cpu"
        assert t["pod_uid"] == uid and t["is_go"] is True
        assert t["exe_in_container"].endswith("faultsvc")
        # At least 3 s of frames (the first one covers only the agent's first 0.25 s).
        frames: list[dict] = []
        while sum(f["interval_ns"] for f in frames) < 3e9:
            frames.append(a.next("throttle", timeout=10))
        # The manifest's 200m limit is a 20 ms quota per 100 ms period.
        assert all(f["container"]["quota_us"] == 20000 for f in frames)
        assert sum(f["container"]["nr_throttled"] for f in frames) > 0
        g = a.next("goroutines", timeout=10)
        text = nsenter_get(t["pid"], 6060, "/debug/pprof/goroutine?debug=1").decode()
        ref = int(re.match(r"goroutine profile: total (\d+)", text).group(1))
        # The load generator makes the count move a little between the two reads.
        assert abs(g["count"] - ref) <= max(3, ref // 10), (g["count"], ref)
        assert "Traceback" not in a.read_stderr()


def test_localhost_pprof_pod_and_contention_profiles(bcc: str, demo) -> None:
    uid, cid = _pod(demo, "pprof-localhost")
    with agent(bcc, "--pod-uid", uid, "--container-id", cid) as a:
        a.next("collector", name="goroutines", state="on", timeout=30)
        assert a.next("goroutines", timeout=10)["count"] > 0
        a.send("profile", id="m", profile="mutex", seconds=0)
        m = a.next("profile", id="m", timeout=30)
        assert m["empty"] is False  # this pod enables mutex profiling
    uid, cid = _pod(demo, "no-contention-profiles")
    with agent(bcc, "--pod-uid", uid, "--container-id", cid) as a:
        a.send("profile", id="m", profile="mutex", seconds=0)
        m = a.next("profile", id="m", timeout=30)
        assert m["empty"] is True and "SetMutexProfileFraction" in m["note"]


def test_not_go_pod(bcc: str, demo) -> None:
    uid, cid = _pod(demo, "not-go")
    with agent(bcc, "--pod-uid", uid, "--container-id", cid, "--interval", "0.5") as a:
        e = a.next("error", code="not_go", timeout=30)
        assert e["fatal"] is False
        a.next("throttle", timeout=10)
