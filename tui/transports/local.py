"""The local transport: the console runs on the pod's node and starts the agent itself."""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from tui.transports.base import AgentTarget, StderrTail, TransportError
from tui.transports.bundle import agent_bundle

SYSTEM_PYTHON = "/usr/bin/python3"
REPO = Path(__file__).resolve().parent.parent.parent


def this_host_names() -> set[str]:
    """Names a Node object for this machine might carry."""
    names = {socket.gethostname(), socket.getfqdn()}
    names |= {n.split(".")[0] for n in names}
    return {n for n in names if n}


def is_local_address(addr: str) -> bool:
    """Whether ``addr`` is assigned to this machine (binding to it succeeds; no traffic)."""
    try:
        family = socket.AF_INET6 if ":" in addr else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.bind((addr, 0))
        return True
    except OSError:
        return False


class LocalLink:
    """The agent as a child process: stdout lines in, stdin commands out."""

    def __init__(
        self,
        argv: Sequence[str],
        description: str,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
    ) -> None:
        self.description = description
        self._tail = StderrTail()
        try:
            self._proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                cwd=cwd,
                # A Ctrl-C in the console must not kill the agent mid-detach.
                start_new_session=True,
            )
        except OSError as e:
            raise TransportError(
                f"Could not start the agent ({argv[0]}): {e}.", retry=False
            ) from None
        self._stderr_thread = threading.Thread(
            target=self._read_stderr, daemon=True, name="agent-stderr"
        )
        self._stderr_thread.start()
        self._wlock = threading.Lock()

    def _read_stderr(self) -> None:
        assert self._proc.stderr is not None
        for raw in self._proc.stderr:
            self._tail.add(raw.decode("utf-8", "replace"))

    @property
    def pid(self) -> int:
        return self._proc.pid

    def lines(self) -> Iterator[bytes]:
        assert self._proc.stdout is not None
        # Not `yield from`: closing this generator would close the pipe itself.
        while line := self._proc.stdout.readline():
            yield line
        self._proc.wait()

    def write(self, line: bytes) -> None:
        assert self._proc.stdin is not None
        try:
            with self._wlock:
                self._proc.stdin.write(line)
                self._proc.stdin.flush()
        except (BrokenPipeError, ValueError, OSError) as e:
            raise TransportError(f"The agent is not reading commands: {e}.") from None

    def close(self) -> None:
        p = self._proc
        if p.stdin and not p.stdin.closed:
            try:
                p.stdin.close()  # EOF on stdin: the agent detaches its probes and exits
            except OSError:
                pass
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.terminate()
            try:
                p.wait(timeout=3)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self._stderr_thread.join(timeout=2)
        for f in (p.stdout, p.stderr):
            if f:
                f.close()

    def end_reason(self) -> str:
        rc = self._proc.poll()
        self._stderr_thread.join(timeout=1)
        if rc is None:
            what = "the agent's output ended"
        elif rc < 0:
            what = f"the agent was killed by signal {-rc}"
        else:
            what = f"the agent exited with status {rc}"
        tail = self._tail.text()
        return f"{what}: {tail}" if tail else what


class LocalTransport:
    """Run the agent on this machine with the node's python3 (needs root).

    Args:
        python: the interpreter that imports bcc.
        command: the whole agent command line instead of the bundle
            (for running a different agent build); the target's args are appended.
    """

    name = "local"

    def __init__(self, python: str = SYSTEM_PYTHON, command: Sequence[str] | None = None) -> None:
        self.python = python
        self.command = list(command) if command else None

    def _agent_argv(self) -> tuple[list[str], dict[str, str] | None, str | None]:
        if self.command:
            return list(self.command), None, None
        try:
            import bpf.bundle  # noqa: F401
        except ImportError:
            # No bundler yet: run the package from this checkout.
            env = dict(os.environ)
            env["PYTHONPATH"] = str(REPO) + (
                os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""
            )
            return [self.python, "-m", "bpf.agent"], env, str(REPO)
        bundle = agent_bundle()
        cache = Path(tempfile.gettempdir()) / "go-k8s-debug"
        cache.mkdir(mode=0o700, exist_ok=True)
        path = cache / bundle.filename
        if not path.exists():
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_bytes(bundle.data)
            tmp.replace(path)
        return [self.python, str(path)], None, None

    def start(self, target: AgentTarget) -> LocalLink:
        if os.geteuid() != 0 and not self.command:
            raise TransportError(
                "The local transport loads eBPF programs and needs root: run the console with "
                "sudo (e.g. `sudo -E go-k8s-debug ...`), or use --transport ssh or pprof-only.",
                retry=False,
            )
        if not os.path.exists(self.python) and not self.command:
            raise TransportError(
                f"{self.python} is missing: the agent needs the node's python3 with bcc "
                "(Debian: apt-get install python3-bpfcc).",
                retry=False,
            )
        argv, env, cwd = self._agent_argv()
        return LocalLink(argv + target.agent_args(), f"local ({socket.gethostname()})", env, cwd)
