"""The profile schedule: what the console asks the agent for, and when."""

from __future__ import annotations

from bpf import schema
from tui.models.evidence import EvidenceBuffer
from tui.models.profile_schedule import KINDS, ProfileSchedule

PROFILES = {"available": True, "kinds": list(schema.PROFILE_KINDS)}
HELLO = {"kind": "hello", "t": 1, "profiles": PROFILES}


def kinds(cmds):
    return sorted(c["profile"] for c in cmds)


def test_nothing_before_hello_then_all_four_kinds_once():
    s = ProfileSchedule()
    assert s.due(0.0) == []
    s.observe(HELLO)
    cmds = s.due(0.0)
    assert kinds(cmds) == sorted(KINDS)
    assert all(c["cmd"] == "profile" and c["seconds"] == 0 for c in cmds)
    assert len({c["id"] for c in cmds}) == 4
    assert s.due(1.0) == []  # in flight, and not due yet


def test_one_in_flight_per_kind_and_again_every_30_s():
    s = ProfileSchedule()
    s.observe(HELLO)
    first = {c["profile"]: c["id"] for c in s.due(0.0)}
    # Only heap is answered: at 30 s only heap is asked again.
    s.observe({"kind": "profile", "id": first["heap"], "profile": "heap"})
    assert kinds(s.due(30.0)) == ["heap"]
    assert sorted(s.in_flight()) == ["block", "goroutine", "heap", "mutex"]
    # Unanswered for 60 s: asked again, once.
    assert kinds(s.due(60.0)) == ["block", "goroutine", "mutex"]
    assert s.due(61.0) == []


def test_error_answer_frees_the_kind():
    s = ProfileSchedule()
    s.observe(HELLO)
    ids = {c["profile"]: c["id"] for c in s.due(0.0)}
    s.observe({"kind": "error", "id": ids["mutex"], "code": "busy", "msg": "busy"})
    assert "mutex" not in s.in_flight()
    assert kinds(s.due(30.0)) == ["mutex"]


def test_stops_when_pprof_is_unreachable():
    s = ProfileSchedule()
    s.observe(HELLO)
    ids = {c["profile"]: c["id"] for c in s.due(0.0)}
    s.observe({"kind": "error", "id": ids["heap"], "code": "no_pprof", "msg": "nothing listens",
               "collector": "profiles"})
    assert s.state == "stopped" and "nothing listens" in s.reason
    assert s.due(100.0) == []


def test_hello_saying_unavailable_never_asks():
    s = ProfileSchedule()
    s.observe({"kind": "hello", "t": 1, "profiles": {"available": False, "kinds": []}})
    assert s.state == "stopped"
    assert s.due(0.0) == []


def test_hello_without_profiles_field_asks_and_respects_offered_kinds():
    s = ProfileSchedule()
    s.observe({"kind": "hello", "t": 1})
    assert len(s.due(0.0)) == 4
    s2 = ProfileSchedule()
    s2.observe({"kind": "hello", "t": 1, "profiles": {"available": True, "kinds": ["heap"]}})
    assert kinds(s2.due(0.0)) == ["heap"]


def test_evidence_keeps_newest_profiles_and_last_minute():
    b = EvidenceBuffer(window_s=60)
    b.add({"kind": "hello", "t": 0})
    for i in range(5):
        b.add({"kind": "profile", "profile": "heap", "t": i * 10**9, "id": str(i)})
    for s in range(200):
        b.add({"kind": "cpu_stacks", "t": s * 10**9})
    frames = b.frames()
    assert frames[0]["kind"] == "hello"
    assert [f["id"] for f in frames if f["kind"] == "profile"] == ["3", "4"]
    cpu = [f["t"] // 10**9 for f in frames if f["kind"] == "cpu_stacks"]
    assert cpu[0] == 139 and cpu[-1] == 199
