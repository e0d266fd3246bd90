"""Findings on real Go processes: each faultsvc mode run locally (loopback,
the real node agent on its PID, real pprof) puts its finding first; the
healthy mode yields no warning; a recording of the run replays to the same
headline finding. Synthetic sequences are in test_findings_rules.py."""

from __future__ import annotations

import json

import pytest
from findings_local import faultsvc

from tui.diagnose_cli import main as diagnose_main

# Locally there is no CPU limit, so the CPU mode shows as a hot spot.
LOCAL_EXPECT = {"mutex": "GKD003", "leak": "GKD002", "cpu": "GKD006", "chan": "GKD004",
                "gc": "GKD005", "syscall": "GKD007"}


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    code = diagnose_main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def _diagnose_local(go_bin, mode: str, tmp_path, capsys, extra=()):
    with faultsvc(go_bin, mode) as svc:
        code, out, err = run_cli(["--pid", str(svc.pid), "--pprof-port", str(svc.pprof_port),
                                  "--duration", "12s", "--format", "json", *extra], capsys)
    return code, json.loads(out), err


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["healthy", *LOCAL_EXPECT])
def test_local_fault_is_diagnosed_first(go_bin, root, mode, tmp_path, capsys):
    rec = tmp_path / f"{mode}.rec.gz"
    code, doc, err = _diagnose_local(go_bin, mode, tmp_path, capsys,
                                     ("--record", str(rec), "--export", str(tmp_path / "b")))
    problems = [f for f in doc["findings"] if f["severity"] in ("warning", "critical")]
    if mode == "healthy":
        assert problems == [], problems
        assert code == 0 and doc["status"] == "healthy"
    else:
        assert doc["findings"][0]["rule_id"].startswith(LOCAL_EXPECT[mode]), doc["findings"][:2]
        assert code in (1, 2) and code == doc["exit_code"]
    # the recording replays to the same findings
    from tui.record import read_recording
    from tui.replay_cli import report_of

    again = report_of(read_recording(rec)).to_dict()  # type: ignore[attr-defined]
    assert [f["rule_id"] for f in again["findings"]][:1] == [doc["findings"][0]["rule_id"]]
    assert (tmp_path / "b" / "findings.json").exists()
