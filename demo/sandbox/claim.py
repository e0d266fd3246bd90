"""One sandbox per host: a claim file in /run names the state dir that owns the host.

Nodes of every sandbox share the bridge gkd0, the node addresses 10.88.N.1 and
port 22 on them, so two sandboxes on one host would tear down each other's
network. `up` takes the claim before it starts anything and `down` gives it
back; a claim whose owner is gone (the `up` process and every daemon dead) is stale.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from demo.sandbox import procs

CLAIM = Path("/run/gkd-sandbox.claim")
# flock on a directory that always exists: a lock file of our own would be one more
# thing to leave behind (and removing lock files races).
_LOCK_DIR = Path("/run/lock") if Path("/run/lock").is_dir() else Path("/run")


@contextmanager
def _locked() -> Iterator[None]:
    fd = os.open(_LOCK_DIR, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _read() -> dict | None:
    try:
        return json.loads(CLAIM.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _owner_alive(claim: dict) -> bool:
    pid, ticks = claim.get("pid"), claim.get("start_time")
    if pid and procs.Daemon("up", pid, ticks or 0).alive():
        return True
    return any(d.alive() for d in procs.load(Path(claim["state_dir"]) / "pids"))


def owner() -> Path | None:
    """The state dir of the sandbox that owns this host, if its owner still lives."""
    claim = _read()
    if claim and _owner_alive(claim):
        return Path(claim["state_dir"])
    return None


def take(state_dir: Path) -> Path | None:
    """Claim the host for ``state_dir``.

    Returns:
        None on success, else the state dir of the live sandbox that holds the claim.
    """
    mine = str(state_dir.resolve())
    with _locked():
        claim = _read()
        if claim and claim.get("state_dir") != mine and _owner_alive(claim):
            return Path(claim["state_dir"])
        pid = os.getpid()
        CLAIM.write_text(
            json.dumps({"state_dir": mine, "pid": pid, "start_time": procs.start_time(pid)})
        )
    return None


def release(state_dir: Path) -> None:
    """Give the claim back if ``state_dir`` holds it (or it is stale)."""
    mine = str(state_dir.resolve())
    with _locked():
        claim = _read()
        if claim is not None and (claim.get("state_dir") == mine or not _owner_alive(claim)):
            CLAIM.unlink(missing_ok=True)
