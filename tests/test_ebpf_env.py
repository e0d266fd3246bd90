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


def test_map_names_of_every_collector() -> None:
    """The maps each collector empties when it starts on a shared module."""
    import importlib

    want = {
        "cpu_stacks": ["gkd_counts", "gkd_stacks", "gkd_cpu_stats"],
        "futex": ["gkd_fstart", "gkd_fhist", "gkd_fthreads", "gkd_fops", "gkd_fstats"],
        "gc": ["gkd_gc"],
        "goroutines_uprobe": ["gkd_gcount"],
    }
    for name, maps in want.items():
        cls = importlib.import_module(f"bpf.collectors.{name}").COLLECTOR
        assert bcc_env.map_names(cls(None).raw_c()) == maps, name
    assert bcc_env.map_names('BPF_TABLE("lru_hash", u64, struct x_t, m1, 16);\n'
                             "BPF_PERCPU_ARRAY(m2, u64, 2);\n") == ["m1", "m2"]


_DROP_SCRIPT = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from bpf import bcc_env

def llvm_kb():
    return sum(m.get("Rss", 0) for m in bcc_env.mappings()
               if "libLLVM" in m["path"] and "w" not in m["perms"] and not m.get("Anonymous"))

text = "int gkd_envtest(void *ctx) { return 0; }"
cls = bcc_env.bpf_class()
b = cls(text=text)
before = llvm_kb()
dropped = bcc_env.drop_compiler_pages()
after = llvm_kb()
b2 = cls(text=text.replace("return 0", "return 1"))  # compiles after the drop
fn = b2.load_func("gkd_envtest", cls.SOCKET_FILTER)
print(json.dumps({"before": before, "dropped": dropped, "after": after, "fd": fn.fd}))
b.cleanup()
b2.cleanup()
"""


def test_compiler_pages_are_dropped_and_a_later_compile_still_works(bcc) -> None:
    """After a compile, libLLVM's read-only pages leave the process's RSS;
    the next compile faults them back in and loads a program."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([bcc, "-c", _DROP_SCRIPT, root], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    out = __import__("json").loads(r.stdout.strip().splitlines()[-1])
    assert out["before"] > 10_000, out  # kB of LLVM code resident after a compile
    assert out["dropped"] >= out["before"] and out["after"] < out["before"] // 4, out
    assert out["fd"] > 0
