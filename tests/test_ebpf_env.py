"""bcc_env: header checks with the exact fix, tracefs mounting, and the
system-wide BPF program listing the no-probe-left tests rely on."""

from __future__ import annotations

import os
import subprocess

import pytest

from bpf import bcc_env


def test_missing_headers_message_names_the_fix(monkeypatch) -> None:
    monkeypatch.delenv("BCC_KERNEL_SOURCE", raising=False)
    msg, hint = bcc_env.headers_problem("0.0.0-nonexistent")
    assert "0.0.0-nonexistent" in msg and "/lib/modules/0.0.0-nonexistent/build" in msg
    assert "apt-get install linux-headers-0.0.0-nonexistent" in hint
    near = bcc_env.nearest_headers()
    if near:
        assert f"ln -sfn {near[0]} /lib/modules/0.0.0-nonexistent/build" in hint


def test_bcc_kernel_source_is_checked(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("BCC_KERNEL_SOURCE", str(tmp_path))
    msg, _hint = bcc_env.headers_problem()
    assert "BCC_KERNEL_SOURCE" in msg
    (tmp_path / "include").mkdir()
    assert bcc_env.headers_problem() is None


def test_ensure_headers_raises_collector_error(monkeypatch) -> None:
    from bpf.collectors.base import CollectorError

    monkeypatch.setattr(bcc_env, "headers_problem", lambda release=None: ("no headers", "fix"))
    with pytest.raises(CollectorError) as e:
        bcc_env.ensure_headers()
    assert e.value.code == "no_kernel_headers" and e.value.hint == "fix"


def test_tracefs_is_mounted_and_idempotent(root) -> None:
    bcc_env.ensure_tracefs()
    assert os.path.exists("/sys/kernel/tracing/events/syscalls") or os.path.exists(
        "/sys/kernel/debug/tracing/events/syscalls")
    assert bcc_env.ensure_tracefs() == []  # second call: nothing to do


def test_program_listing_sees_a_loaded_program(bcc) -> None:
    """While a bcc program is loaded by another process, bpf_programs()
    (ctypes, no bpftool) lists it by name; after that process exits it is gone."""
    code = (
        "from bcc import BPF\nimport sys\n"
        "b = BPF(text='int gkd_envtest(void *ctx) { return 0; }')\n"
        "b.load_func('gkd_envtest', BPF.SOCKET_FILTER)\n"
        "print('ready', flush=True)\nsys.stdin.readline()\n"
    )
    p = subprocess.Popen([bcc, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        progs = bcc_env.bpf_programs()
        held = bcc_env.process_bpf_fds(p.pid)
        assert held["bpf-prog"] >= 1 and held["prog_ids"]
        assert all(progs.get(i) == "gkd_envtest" for i in held["prog_ids"])
    finally:
        p.communicate("\n", timeout=30)
    assert not set(held["prog_ids"]) & set(bcc_env.bpf_programs())
