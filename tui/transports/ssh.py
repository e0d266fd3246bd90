"""The SSH transport: reach the node with asyncssh, ship the agent, stream its frames.

asyncssh is async; the console's sessions are sync iterators read in thread
workers. So one background thread runs an asyncio loop for every SSH link, and
``SSHLink`` bridges to it with thread-safe queues. OpenSSH config files are
honoured (asyncssh parses HostName, User, Port, IdentityFile, ProxyJump,
UserKnownHostsFile), and host keys are checked strictly: an unknown or changed
key is refused with what to do about it.
"""

from __future__ import annotations

import asyncio
import fnmatch
import os
import queue
import shlex
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from tui.transports.base import AgentTarget, StderrTail, TransportError
from tui.transports.bundle import AgentBundle, agent_bundle

CONNECT_TIMEOUT_S = 10.0
DEFAULT_SSH_CONFIG = os.path.expanduser("~/.ssh/config")

# ---------------------------------------------------------------- the loop thread


class _LoopThread:
    """One asyncio loop in a daemon thread, shared by all SSH links."""

    _lock = threading.Lock()
    _instance: _LoopThread | None = None

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="ssh-loop")
        self.thread.start()

    @classmethod
    def get(cls) -> _LoopThread:
        with cls._lock:
            if cls._instance is None or not cls._instance.thread.is_alive():
                cls._instance = cls()
            return cls._instance

    def run(self, coro: Any, timeout: float | None = None) -> Any:
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return fut.result(timeout)
        except TimeoutError:
            fut.cancel()
            raise


# ---------------------------------------------------------------- config helpers


def config_hosts(paths: Sequence[str]) -> list[str]:
    """Host patterns named in OpenSSH config files (``Include`` is not followed)."""
    out: list[str] = []
    for p in paths:
        try:
            with open(os.path.expanduser(p)) as f:
                for line in f:
                    parts = line.strip().split(None, 1)
                    if len(parts) == 2 and parts[0].lower() == "host":
                        out += parts[1].split()
        except OSError:
            continue
    return out


def config_names_host(paths: Sequence[str], name: str) -> bool:
    """Whether a ``Host`` entry other than a catch-all matches ``name``."""
    positive = False
    for pat in config_hosts(paths):
        if pat.startswith("!"):
            if fnmatch.fnmatchcase(name, pat[1:]):
                return False
            continue
        if pat != "*" and fnmatch.fnmatchcase(name, pat):
            positive = True
    return positive


@dataclass
class SSHOptions:
    """What the user told us about reaching nodes (CLI flags)."""

    config: list[str] = field(default_factory=list)  # -F files; empty = ~/.ssh/config if present
    jump: str | None = None  # [user@]host[:port]
    user: str | None = None
    key: str | None = None
    known_hosts: str | None = None  # overrides the config's UserKnownHostsFile
    # None: the node's /usr/bin/python3 (where Debian's bcc imports), else python3 on PATH
    # (a login PATH may put a pyenv or venv python3 first, which has no bcc).
    python: str | None = None
    connect_timeout: float = CONNECT_TIMEOUT_S

    def config_paths(self) -> list[str]:
        if self.config:
            return list(self.config)
        return [DEFAULT_SSH_CONFIG] if os.path.exists(DEFAULT_SSH_CONFIG) else []

    def route_configured(self, node: str | None) -> bool:
        """Whether the user set up any way to SSH (flags, or a Host entry for the node)."""
        if self.config or self.jump or self.user or self.key:
            return True
        return bool(node) and config_names_host(self.config_paths(), node or "")

    def connect_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"config": self.config_paths() or ()}
        if self.user:
            kw["username"] = self.user
        if self.key:
            kw["client_keys"] = [os.path.expanduser(self.key)]
        if self.known_hosts:
            kw["known_hosts"] = os.path.expanduser(self.known_hosts)
        return kw


def _split_jump(jump: str) -> tuple[str | None, str, int | None]:
    user = None
    if "@" in jump:
        user, jump = jump.rsplit("@", 1)
    port = None
    if jump.count(":") == 1:
        jump, p = jump.split(":")
        port = int(p)
    return user, jump, port


def _describe_connect_error(exc: BaseException, host: str, opts: SSHOptions) -> TransportError:
    import asyncssh

    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        kh = opts.known_hosts or "the known_hosts file your ssh config names (UserKnownHostsFile)"
        return TransportError(
            f"Refusing to connect to {host}: its SSH host key is not trusted ({exc.reason}). "
            f"If the node was rebuilt, check its key fingerprint out of band, then fix the entry "
            f"in {kh} (for example `ssh-keygen -R {host}` and `ssh -F CONFIG {host}` to accept "
            f"the verified key). Host-key checking is never turned off.",
            retry=False,
        )
    if isinstance(exc, asyncssh.PermissionDenied):
        return TransportError(
            f"SSH login to {host} was refused (permission denied). Check --ssh-user and "
            f"--ssh-key, or User/IdentityFile in your ssh config.",
            retry=False,
        )
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return TransportError(
            f"Timed out connecting to {host} over SSH. "
            "Is the node reachable from here, or does it need --ssh-jump?"
        )
    if isinstance(exc, asyncssh.Error):
        return TransportError(f"SSH to {host} failed: {exc.reason}.")
    if isinstance(exc, OSError):
        return TransportError(
            f"Could not connect to {host} over SSH: {exc.strerror or exc}. Is sshd running on "
            "the node, and is the address right (HostName in your ssh config, or the node's "
            "InternalIP)?"
        )
    return TransportError(f"SSH to {host} failed: {exc}.")


# ---------------------------------------------------------------- the link


_SENTINEL = object()


class SSHLink:
    """One agent process on a node over SSH."""

    def __init__(self, loop: _LoopThread, description: str) -> None:
        self.description = description
        self._loop = loop
        self._lines: queue.Queue[Any] = queue.Queue(maxsize=10000)
        self._tail = StderrTail()
        self._conn: Any = None
        self._jump: Any = None
        self._proc: Any = None
        self._end: str = ""
        self._closed = False

    # runs on the loop
    async def _pump(self) -> None:
        async def out() -> None:
            try:
                async for line in self._proc.stdout:
                    if not line:
                        continue  # asyncssh yields b"" at EOF
                    # A full queue means the console is not keeping up: block the
                    # SSH reader (TCP back-pressure) rather than grow without bound.
                    try:
                        self._lines.put_nowait(line)
                    except queue.Full:
                        await asyncio.get_running_loop().run_in_executor(
                            None, self._lines.put, line
                        )
            except Exception as e:  # noqa: BLE001 - connection lost mid-read
                self._end = self._end or f"SSH connection lost: {e}"

        async def err() -> None:
            try:
                async for line in self._proc.stderr:
                    self._tail.add(line.decode("utf-8", "replace"))
            except Exception:  # noqa: BLE001
                pass

        await asyncio.gather(out(), err())
        try:
            status = await asyncio.wait_for(self._proc.wait(), 5)
            self._record_exit(status)
        except Exception as e:  # noqa: BLE001
            self._end = self._end or f"SSH connection lost: {e}"
        self._lines.put(_SENTINEL)

    def _record_exit(self, status: Any) -> None:
        if self._end:
            return
        if status.exit_signal:
            self._end = f"the agent was killed by signal {status.exit_signal[0]}"
        elif status.exit_status is not None and status.exit_status >= 0:
            self._end = f"the agent exited with status {status.exit_status}"
        else:
            self._end = "the SSH session ended"

    def lines(self) -> Iterator[bytes]:
        while True:
            item = self._lines.get()
            if item is _SENTINEL:
                return
            yield item

    def write(self, line: bytes) -> None:
        if self._proc is None or self._closed:
            raise TransportError("The SSH link is closed.")

        def _w() -> None:
            try:
                self._proc.stdin.write(line)
            except Exception as e:  # noqa: BLE001
                self._end = self._end or f"SSH connection lost: {e}"

        self._loop.loop.call_soon_threadsafe(_w)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True

        async def _close() -> None:
            if self._proc is not None:
                try:
                    self._proc.stdin.write_eof()  # the agent detaches and exits on EOF
                    await asyncio.wait_for(self._proc.wait_closed(), 5)
                except Exception:  # noqa: BLE001 - the link may already be gone
                    pass
            for c in (self._conn, self._jump):
                if c is not None:
                    c.close()
                    try:
                        await asyncio.wait_for(c.wait_closed(), 3)
                    except Exception:  # noqa: BLE001
                        pass

        try:
            self._loop.run(_close(), timeout=15)
        except Exception:  # noqa: BLE001
            pass

    def end_reason(self) -> str:
        tail = self._tail.text()
        what = self._end or "the agent's output ended"
        return f"{what}: {tail}" if tail else what


# ---------------------------------------------------------------- the transport

# One shell command does the checks and, on the warm path (bundle cached, root or
# passwordless sudo), execs the agent at once: one round trip and one login shell
# fewer than check-then-start. Lines before "gkd:exec" are facts, not frames.
_PREFLIGHT = r"""
d="${{TMPDIR:-/tmp}}/go-k8s-debug-$(id -u)"
mkdir -p -m 700 "$d" 2>/dev/null
if [ -L "$d" ] || [ ! -O "$d" ]; then echo "gkd:baddir=$d"; echo gkd:end; exit 0; fi
echo "gkd:dir=$d"
uid=$(id -u); echo "gkd:uid=$uid"
py=""
for p in {python}; do
  if command -v "$p" >/dev/null 2>&1; then py=$(command -v "$p"); echo "gkd:python=$py"; break; fi
done
cached=""
if [ -f "$d/{file}" ] && echo "{sha}  $d/{file}" | sha256sum -c --status 2>/dev/null; then
  cached=yes; echo gkd:cached=yes
fi
sudo=""
if [ "$uid" != 0 ]; then sudo -n true 2>/dev/null && {{ sudo="sudo -n"; echo gkd:sudo=ok; }}; fi
if [ -n "$cached" ] && [ -n "$py" ] && {{ [ "$uid" = 0 ] || [ -n "$sudo" ]; }}; then
  echo gkd:exec
  exec $sudo "$py" "$d/{file}" {args}
fi
echo gkd:end
"""


class SSHTransport:
    """Start the agent on the pod's node over SSH.

    Host choice: the node name when an ssh config ``Host`` entry names it (so
    the config's HostName/User/ProxyJump apply), else the Node's InternalIP.
    """

    name = "ssh"

    def __init__(
        self, options: SSHOptions | None = None, bundle: AgentBundle | None = None
    ) -> None:
        self.options = options or SSHOptions()
        self._bundle = bundle
        self.last_timings: dict[str, float] = {}

    def bundle(self) -> AgentBundle:
        if self._bundle is None:
            self._bundle = agent_bundle()
        return self._bundle

    def host_for(self, target: AgentTarget) -> str:
        if target.node and config_names_host(self.options.config_paths(), target.node):
            return target.node
        if target.node_address:
            return target.node_address
        if target.node:
            return target.node
        raise TransportError(
            f"Pod {target.pod.key} is not scheduled on a node yet; there is nowhere to attach.",
            retry=True,
        )

    def start(self, target: AgentTarget) -> SSHLink:
        host = self.host_for(target)
        loop = _LoopThread.get()
        link = SSHLink(loop, f"ssh {host}" + (f" ({target.node})" if target.node != host else ""))
        try:
            loop.run(self._start(link, host, target), timeout=self.options.connect_timeout + 120)
        except TransportError:
            link.close()
            raise
        except BaseException as e:
            link.close()
            raise _describe_connect_error(e, host, self.options) from None
        return link

    async def _connect(self, host: str) -> tuple[Any, Any]:
        import asyncssh

        o = self.options
        kw = o.connect_kwargs()
        jump_conn = None
        if o.jump:
            juser, jhost, jport = _split_jump(o.jump)
            jkw = dict(kw)
            if juser:
                jkw["username"] = juser
            try:
                jump_conn = await asyncio.wait_for(
                    asyncssh.connect(jhost, jport or (), **jkw), o.connect_timeout
                )
            except Exception as e:  # noqa: BLE001
                err = _describe_connect_error(e, jhost, o)
                raise TransportError(f"Jump host: {err}", retry=err.retry) from None
            kw["tunnel"] = jump_conn
        try:
            conn = await asyncio.wait_for(asyncssh.connect(host, **kw), o.connect_timeout)
        except BaseException:
            if jump_conn is not None:
                jump_conn.close()
            raise
        return conn, jump_conn

    async def _start(self, link: SSHLink, host: str, target: AgentTarget) -> None:
        import time

        t0 = time.monotonic()
        link._conn, link._jump = await self._connect(host)
        conn = link._conn
        t1 = time.monotonic()
        b = self.bundle()
        py = shlex.quote(self.options.python) if self.options.python else "/usr/bin/python3 python3"
        args = " ".join(shlex.quote(a) for a in target.agent_args())
        proc = await conn.create_process(
            _PREFLIGHT.format(python=py, file=b.filename, sha=b.sha256, args=args), encoding=None
        )
        facts: dict[str, str] = {}
        execd = False
        while True:
            line = await asyncio.wait_for(proc.stdout.readline(), 30)
            if not line:
                break
            text = line.decode("utf-8", "replace").strip()
            if text == "gkd:exec":
                execd = True
                break
            if text == "gkd:end":
                break
            if text.startswith("gkd:") and "=" in text:
                k, v = text[4:].split("=", 1)
                facts[k] = v
        if execd:
            link._proc = proc  # the warm path: this process is now the agent
        else:
            stderr = ""
            try:
                stderr = (await asyncio.wait_for(proc.stderr.read(), 5)).decode("utf-8", "replace")
            except Exception:  # noqa: BLE001
                pass
            proc.close()
            link._proc = await self._cold_start(conn, host, facts, stderr, b, args)
        t2 = time.monotonic()
        asyncio.get_running_loop().create_task(link._pump())
        self.last_timings = {
            "connect_s": t1 - t0,
            "start_s": t2 - t1,
            "cached": float(facts.get("cached") == "yes"),
        }

    async def _cold_start(
        self, conn: Any, host: str, facts: dict[str, str], stderr: str, b: AgentBundle, args: str
    ) -> Any:
        """Say what is missing on the node, or upload the bundle and start the agent."""
        if "baddir" in facts:
            raise TransportError(
                f"On {host}, {facts['baddir']} is a symlink or not owned by the SSH user; "
                "refusing to run the agent from it. Remove it and retry.",
                retry=False,
            )
        if "dir" not in facts:
            raise TransportError(
                f"Could not prepare a directory for the agent on {host}: "
                f"{stderr.strip() or 'the shell said nothing'}.",
                retry=False,
            )
        python = facts.get("python")
        if not python:
            raise TransportError(
                f"{self.options.python or 'python3'} is not installed on {host}; the agent needs "
                "it with bcc (Debian: apt-get install python3-bpfcc).",
                retry=False,
            )
        sudo = ""
        if facts.get("uid") != "0":
            if facts.get("sudo") != "ok":
                raise TransportError(
                    f"The SSH user on {host} is not root and cannot run sudo without a password; "
                    "the agent needs root for eBPF. Log in as root (--ssh-user root) or allow "
                    "passwordless sudo for python3.",
                    retry=False,
                )
            sudo = "sudo -n "
        path = f"{facts['dir']}/{b.filename}"
        qpath = shlex.quote(path)
        if facts.get("cached") != "yes":
            # cat + mv: a reader never sees a half-written bundle, and no SFTP
            # subsystem is needed on the node.
            up = await conn.run(
                f"cat > {qpath}.tmp.$$ && mv -f {qpath}.tmp.$$ {qpath}",
                input=b.data,
                encoding=None,
                check=False,
                timeout=60,
            )
            if up.exit_status != 0:
                msg = (up.stderr or b"").decode("utf-8", "replace").strip()
                raise TransportError(f"Could not upload the agent to {host}: {msg}.")
        cmd = f"{sudo}{shlex.quote(python)} {qpath} {args}"
        return await conn.create_process(cmd, encoding=None)
