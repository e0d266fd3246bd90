"""The agent shipped as one file: built reproducibly, runs from an empty directory
under the node's /usr/bin/python3 with nothing of ours installed, cleans up."""

from __future__ import annotations

import glob
import io
import subprocess
import tempfile
import zipfile
from pathlib import Path

from test_agent_support import agent

from bpf import bundle


def test_bundle_is_reproducible_and_complete() -> None:
    a, b = bundle.build_bundle(), bundle.build_bundle()
    assert a == b and bundle.bundle_hash(a) == bundle.bundle_hash(b)
    assert len(bundle.bundle_hash(a)) == 16
    assert a.startswith(b"#!/usr/bin/env python3\n")
    names = zipfile.ZipFile(io.BytesIO(a)).namelist()
    assert "__main__.py" in names
    for must in ("bpf/agent.py", "bpf/schema.py", "bpf/target.py", "bpf/collectors/base.py",
                 "bpf/collectors/throttle.py"):
        assert must in names, must
    # The eBPF C travels with its loader; caches never do.
    c_files = sorted(p.name for p in (Path(bundle.PACKAGE_DIR) / "collectors").glob("*.c"))
    assert all(f"bpf/collectors/{n}" in names for n in c_files)
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)


def test_bundle_runs_from_an_empty_dir(bcc: str, tmp_path: Path) -> None:
    pyz = tmp_path / "agent.pyz"
    h = bundle.write_bundle(str(pyz))
    assert h == bundle.bundle_hash()
    before = set(glob.glob(f"{tempfile.gettempdir()}/go-k8s-debug-agent-*"))
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        with agent(bcc, "--pid", str(sleeper.pid), "--interval", "0.3", cwd=tmp_path,
                   argv0=[bcc, str(pyz)]) as a:
            hello = a.next("hello")
            assert hello["target"]["pid"] == sleeper.pid and hello["agent"]
            a.next("throttle")
            a.close_stdin()
            assert a.next("bye")["reason"] == "stdin closed"
            assert a.wait() == 0
            assert "Traceback" not in a.read_stderr()
    finally:
        sleeper.kill()
        sleeper.wait()
    # The unpacked copy is gone.
    assert set(glob.glob(f"{tempfile.gettempdir()}/go-k8s-debug-agent-*")) == before
