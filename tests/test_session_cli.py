"""The console's command line: clear sentences instead of tracebacks."""

from __future__ import annotations

import socket

from tui.console_cli import build_parser, main

KUBECONFIG = """apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {{server: 'https://127.0.0.1:{port}', insecure-skip-tls-verify: true}}
users:
- name: u
  user: {{token: t}}
contexts:
- name: one
  context: {{cluster: c, user: u, namespace: demo}}
current-context: one
"""


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_flags_parse_like_kubectl():
    a = build_parser().parse_args(
        ["-n", "demo", "-l", "app=x", "-F", "a", "-F", "b", "--ssh-jump", "me@bastion:2222",
         "--transport", "ssh", "-c", "app", "demo/leak"]
    )  # fmt: skip
    assert (a.namespace, a.selector, a.ssh_config, a.ssh_jump) == ("demo", "app=x", ["a", "b"],
                                                                   "me@bastion:2222")  # fmt: skip
    assert (a.transport, a.container, a.pod) == ("ssh", "app", "demo/leak")


def test_missing_kubeconfig(tmp_path, capsys):
    assert main(["--kubeconfig", str(tmp_path / "nope")]) == 1
    err = capsys.readouterr().err
    assert "does not exist; check --kubeconfig" in err and "Traceback" not in err


def test_unknown_context(tmp_path, capsys):
    kc = tmp_path / "kc"
    kc.write_text(KUBECONFIG.format(port=closed_port()))
    assert main(["--kubeconfig", str(kc), "--context", "two"]) == 1
    assert "no context named 'two'; it has: one" in capsys.readouterr().err


def test_unreachable_api_server(tmp_path, capsys):
    kc = tmp_path / "kc"
    kc.write_text(KUBECONFIG.format(port=closed_port()))
    assert main(["--kubeconfig", str(kc)]) == 1
    err = capsys.readouterr().err
    assert "Could not list pods in namespace 'demo' (context 'one')" in err
    assert "unreachable" in err and "Traceback" not in err


def test_unreachable_when_opening_a_pod(tmp_path, capsys):
    kc = tmp_path / "kc"
    kc.write_text(KUBECONFIG.format(port=closed_port()))
    assert main(["--kubeconfig", str(kc), "other/leak"]) == 1
    assert "Could not read pod other/leak" in capsys.readouterr().err


def test_unknown_theme(tmp_path, capsys, monkeypatch):
    kc = tmp_path / "kc"
    kc.write_text(KUBECONFIG.format(port=closed_port()))
    monkeypatch.setattr("tui.console_cli._preflight", lambda source, ns: None)
    assert main(["--kubeconfig", str(kc), "--theme", "neon"]) == 2
    assert "unknown theme 'neon'" in capsys.readouterr().err
