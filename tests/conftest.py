"""Shared fixtures.

Tests that need root, eBPF, Go binaries or the sandbox cluster call ``need()``.
Outside CI a missing prerequisite skips the test; in CI (``CI=true``) it fails
it, so a missing install step can never hide behind a skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "build" / "bin"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
SYSTEM_PYTHON = "/usr/bin/python3"


def need(condition: bool, why: str) -> None:
    """Skip (or, in CI, fail) the calling test unless ``condition`` holds."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"prerequisite missing in CI: {why}")
    pytest.skip(why)


def have_bcc() -> bool:
    if not os.path.exists(SYSTEM_PYTHON):
        return False
    r = subprocess.run([SYSTEM_PYTHON, "-c", "import bcc"], capture_output=True)
    return r.returncode == 0


@pytest.fixture(scope="session")
def root() -> None:
    need(os.geteuid() == 0, "needs root")


@pytest.fixture(scope="session")
def bcc(root: None) -> str:
    """The system python3 that imports bcc (the interpreter the agent runs on)."""
    need(have_bcc(), "needs bcc (Debian python3-bpfcc) importable from /usr/bin/python3")
    return SYSTEM_PYTHON


@pytest.fixture(scope="session")
def go_bin() -> Path:
    """build/bin with the Go binaries `make setup` built."""
    need((BIN / "faultsvc").exists(), "needs the Go binaries: run `make setup`")
    return BIN


@pytest.fixture(scope="session")
def go_tool() -> str:
    go = shutil.which("go") or str(ROOT / ".venv" / "bin" / "go")
    need(os.path.exists(go), "needs a Go toolchain")
    return go


@pytest.fixture(scope="session")
def sandbox(root: None, go_bin: Path, tmp_path_factory: pytest.TempPathFactory):
    """One sandbox cluster (2 nodes, demo pods Running) shared by the session."""
    from demo.sandbox.api import Sandbox

    need((BIN / "sandbox-control").exists(), "needs the control plane binary: run `make setup`")
    state = tmp_path_factory.mktemp("sandbox-state")
    # One sandbox per host: wait for a developer's own sandbox (or another test
    # run) to go down rather than failing at once.
    os.environ.setdefault("GO_K8S_DEBUG_SANDBOX_WAIT", "600")
    sb = Sandbox(state_dir=state)
    try:
        sb.up(nodes=2, demo=True)
    except BaseException:
        sb.down()
        raise
    yield sb
    sb.down()
