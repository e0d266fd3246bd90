"""`go-k8s-debug diagnose`: the exit-code contract, unreachable targets, and
each demo fault diagnosed with its finding first (local processes and the
sandbox cluster's pods)."""

from __future__ import annotations

import json

import pytest

from tui.diagnose_cli import main as diagnose_main
from tui.diagnose_cli import parse_duration

# The finding each demo pod must put first (the cpu pod is limited to 200m).
# The same faults run as local processes are in test_findings_real.py.
SANDBOX_EXPECT = {"mutex": "GKD003", "leak": "GKD002", "cpu": "GKD001", "chan": "GKD004",
                  "gc": "GKD005", "syscall": "GKD007"}


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    code = diagnose_main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("args", [
    [],
    ["demo/cpu", "--duration", "soon"],
    ["demo/cpu", "--duration", "0s"],
    ["demo/cpu", "--format", "yaml"],
    ["a/b/c"],
    ["demo/cpu", "--pid", "1"],
    ["--no-such-flag"],
])
def test_usage_errors_exit_64(args, capsys):
    code, out, err = run_cli(args, capsys)
    assert code == 64
    assert out == ""
    assert "usage:" in err


def test_durations():
    assert parse_duration("30s") == 30 and parse_duration("2m") == 120
    assert parse_duration("1m30s") == 90 and parse_duration("45") == 45


def test_unreachable_api_server_exits_3_with_a_report(tmp_path, capsys):
    kc = tmp_path / "kubeconfig"
    kc.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: x\n"
        "clusters: [{name: x, cluster: {server: 'https://127.0.0.1:9'}}]\n"
        "contexts: [{name: x, context: {cluster: x, user: u, namespace: demo}}]\n"
        "users: [{name: u, user: {token: t}}]\n")
    code, out, err = run_cli(["demo/cpu", "--kubeconfig", str(kc), "--format", "json"], capsys)
    assert code == 3
    doc = json.loads(out)
    assert doc["status"] == "not_measured" and doc["exit_code"] == 3
    assert doc["errors"] and doc["target"]["pod"] == "cpu"
    assert "read pod demo/cpu" in err or "127.0.0.1:9" in err


def test_missing_kubeconfig_exits_3(tmp_path, capsys):
    code, out, err = run_cli(["demo/cpu", "--kubeconfig", str(tmp_path / "none"),
                              "--format", "text"], capsys)
    assert code == 3
    assert "NOT MEASURED" in out


@pytest.mark.slow
def test_vanished_local_pid_exits_3(capsys, go_bin):
    # a PID that is not running: the agent cannot resolve it
    code, out, err = run_cli(["--pid", "999999", "--duration", "2s", "--format", "json"], capsys)
    assert code == 3
    assert json.loads(out)["status"] == "not_measured"


@pytest.mark.sandbox
@pytest.mark.slow
@pytest.mark.parametrize("pod", ["healthy", *SANDBOX_EXPECT])
def test_sandbox_pod_is_diagnosed_first(sandbox, pod, capsys):
    code, out, err = run_cli([f"demo/{pod}", "--kubeconfig", str(sandbox.admin_kubeconfig),
                              "--duration", "15s", "--format", "json"], capsys)
    doc = json.loads(out)
    problems = [f for f in doc["findings"] if f["severity"] in ("warning", "critical")]
    if pod == "healthy":
        assert problems == [] and code == 0, (problems, err)
    else:
        assert doc["findings"][0]["rule_id"].startswith(SANDBOX_EXPECT[pod]), (doc, err)
        assert code == doc["exit_code"] and code in (1, 2)
    assert doc["target"]["node"]


@pytest.mark.sandbox
def test_sandbox_unknown_pod_exits_3(sandbox, capsys):
    code, out, err = run_cli(["demo/no-such-pod", "--kubeconfig",
                              str(sandbox.admin_kubeconfig), "--duration", "2s"], capsys)
    assert code == 3
    assert "no-such-pod" in err



@pytest.mark.slow
def test_non_go_process_is_not_called_healthy(root, capsys):
    import subprocess

    proc = subprocess.Popen(["sleep", "120"])
    try:
        code, out, err = run_cli(["--pid", str(proc.pid), "--duration", "3s", "--format", "json"],
                                 capsys)
    finally:
        proc.kill()
        proc.wait()
    doc = json.loads(out)
    assert code == 3 and doc["status"] == "not_measured"
    assert "not_go" in [e["code"] for e in doc["errors"]]
    assert len(doc["errors"]) == len({(e["code"], e["msg"]) for e in doc["errors"]})
