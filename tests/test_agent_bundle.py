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
    # A copy left by an agent that was SIGKILLed (its pid is gone) is swept.
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = Path(tempfile.gettempdir()) / f"go-k8s-debug-agent-{dead.pid}-stale0"
    (stale / "bpf").mkdir(parents=True)
    before = set(glob.glob(f"{tempfile.gettempdir()}/go-k8s-debug-agent-*")) - {str(stale)}
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
    # The unpacked copy is gone, and so is the stale one.
    assert not stale.exists()
    after = set(glob.glob(f"{tempfile.gettempdir()}/go-k8s-debug-agent-*"))
    assert not {d for d in after - before if f"-{a.proc.pid}-" in d}


def test_agent_sources_parse_as_python_3_9_and_import_only_stdlib() -> None:
    """Nodes may run an old python3: the shipped code must parse as 3.9, defer its
    annotations (``int | None`` is fine only unevaluated), and import nothing
    outside the standard library but bcc and itself."""
    import ast
    import sys

    allowed = set(sys.stdlib_module_names) | {"bcc", "bpf"}
    for arcname, path in bundle._files():
        if not arcname.endswith(".py"):
            continue
        src = Path(path).read_text()
        tree = ast.parse(src, filename=arcname, feature_version=(3, 9))
        has_future = any(isinstance(n, ast.ImportFrom) and n.module == "__future__"
                         for n in tree.body)
        uses_pipe = any(isinstance(n, ast.BinOp) and isinstance(n.op, ast.BitOr)
                        for a in ast.walk(tree) if isinstance(a, (ast.arg, ast.AnnAssign,
                                                                   ast.FunctionDef))
                        for n in ast.walk(getattr(a, "annotation", None) or
                                          getattr(a, "returns", None) or ast.Pass()))
        assert has_future or not uses_pipe, f"{arcname}: X | Y annotations need __future__"
        for n in ast.walk(tree):
            mods = ([a.name for a in n.names] if isinstance(n, ast.Import)
                    else [n.module] if isinstance(n, ast.ImportFrom) and n.level == 0 else [])
            for m in mods:
                assert m and m.split(".")[0] in allowed, f"{arcname} imports {m}"
