"""Daemonized child processes, tracked by pid files so another process can stop them.

`sandbox up` returns while the cluster keeps running, and `sandbox down` may run
in a different process, so each daemon's pid and kernel start time are recorded
in ``STATE/pids/NAME.pid``. The start time guards against signalling a recycled pid.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Daemon:
    """One recorded daemon process."""

    name: str
    pid: int
    start_time: int

    def alive(self) -> bool:
        """True while the process with this pid and start time runs (zombies count as dead)."""
        st = _stat(self.pid)
        return st is not None and st[1] == self.start_time and st[0] != "Z"


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks) from /proc/PID/stat, or None if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # comm may contain spaces and parentheses: fields start after the last ')'.
    rest = raw[raw.rindex(")") + 2 :].split()
    return rest[0], int(rest[19])


def start_time(pid: int) -> int | None:
    """The kernel start time of a process (clock ticks since boot), or None if it is gone."""
    st = _stat(pid)
    return st[1] if st else None


def rss_kib(pid: int) -> int | None:
    """Resident set size of a process in KiB (VmRSS), or None if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except FileNotFoundError:
        return None
    return None


def start(
    piddir: Path,
    name: str,
    argv: Sequence[str],
    log: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Daemon:
    """Start ``argv`` in its own session, output appended to ``log``, and record it."""
    piddir.mkdir(parents=True, exist_ok=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        p = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # survives the CLI's exit and its terminal's SIGHUP
            env=dict(env) if env is not None else None,
            cwd=cwd,
            close_fds=True,
        )
    st = _stat(p.pid)
    d = Daemon(name, p.pid, st[1] if st else 0)
    (piddir / f"{name}.pid").write_text(f"{d.pid} {d.start_time}\n")
    return d


def load(piddir: Path) -> list[Daemon]:
    """Every daemon recorded in ``piddir`` (alive or not)."""
    out = []
    if not piddir.is_dir():
        return out
    for f in sorted(piddir.glob("*.pid")):
        try:
            pid, start_time = (int(x) for x in f.read_text().split())
        except ValueError:
            continue
        out.append(Daemon(f.stem, pid, start_time))
    return out


def _reap(pid: int) -> None:
    # When the daemon is our own child (tests call up() and down() in one
    # process) it must be waited for, or it lingers as a zombie.
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


# Daemons whose children leave the process group and must be ended one by one.
# (Node runtimes are not here: they stop their own pods, shims included, in order.)
OWN_SESSION_CHILDREN = ("sshd-",)


def _end_children(pid: int) -> None:
    """SIGTERM the direct children of ``pid`` and their process groups.

    A daemon's children may have left its process group (sshd's per-connection
    processes call setsid), so killing the group misses them and they outlive the
    daemon, with whatever they run (a console's standby agent) under them.
    """
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid != pid:
            continue
        child = int(entry.name)
        for kill in (os.killpg, os.kill):
            try:
                kill(child, signal.SIGTERM)
                break
            except (ProcessLookupError, PermissionError):
                continue


def stop(piddir: Path, d: Daemon, timeout: float = 10.0) -> bool:
    """SIGTERM the daemon's process group, SIGKILL after ``timeout``; forget it.

    Returns:
        True if it is gone.
    """
    pidfile = piddir / f"{d.name}.pid"
    if d.alive():
        if d.name.startswith(OWN_SESSION_CHILDREN):
            _end_children(d.pid)
        try:
            os.killpg(d.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout
        while d.alive() and time.monotonic() < deadline:
            _reap(d.pid)
            time.sleep(0.05)
        if d.alive():
            try:
                os.killpg(d.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + 5
            while d.alive() and time.monotonic() < deadline:
                _reap(d.pid)
                time.sleep(0.05)
    _reap(d.pid)
    gone = not d.alive()
    if gone:
        pidfile.unlink(missing_ok=True)
    return gone


def stop_many(piddir: Path, daemons: Sequence[Daemon], timeout: float = 10.0) -> list[bool]:
    """Stop several daemons at once (SIGTERM all, then wait), so their grace periods overlap.

    Returns:
        Per daemon, True if it is gone.
    """
    for d in daemons:
        if d.alive():
            if d.name.startswith(OWN_SESSION_CHILDREN):
                _end_children(d.pid)
            try:
                os.killpg(d.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    return [stop(piddir, d, timeout) for d in daemons]


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (the kernel picks it; racy only in theory)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
