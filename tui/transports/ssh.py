"""The SSH transport: reach the node with asyncssh, ship the agent, stream its frames.

asyncssh is async; the console's sessions are sync iterators read in thread
workers. So one background thread runs an asyncio loop for every SSH link, and
``SSHLink`` bridges to it with thread-safe queues. OpenSSH config files are
honoured (asyncssh parses HostName, User, Port, IdentityFile, ProxyJump,
UserKnownHostsFile), and host keys are checked strictly: an unknown or changed
key is refused with what to do about it.

Attach speed: one SSH connection per node (and per set of options) stays open
for the console's later attaches and re-attaches, and is closed after it has
been idle for a while; on the warm path one remote command checks the cached
bundle and execs the agent, so an attach costs one channel and one exec. Each
exec pays the SSH user's shell start-up (rc files; seconds for a pyenv init on
a busy node), so after an attach the connection also gets a *standby* agent:
started ahead with ``--standby``, its imports done, it waits for its real
arguments on stdin. The next attach to that node (another pod, a re-attach
after a dropped agent, a restarted container) hands it the arguments and has
its hello in a fraction of a second. ``SSHTransport.prepare`` does the same
before a first attach.
"""

from __future__ import annotations

import asyncio
import atexit
import fnmatch
import json
import os
import queue
import shlex
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from tui.transports.base import AgentTarget, StderrTail, TransportError
from tui.transports.bundle import AgentBundle, agent_bundle

CONNECT_TIMEOUT_S = 10.0
DEFAULT_SSH_CONFIG = os.path.expanduser("~/.ssh/config")
# An open connection nobody uses is closed after this long (with its standby agent).
IDLE_CLOSE_S = 300.0
# A standby agent is started this long after an attach (not to slow that one down).
STANDBY_DELAY_S = 2.0

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


# ---------------------------------------------------------------- connection reuse


@dataclass(eq=False)
class _Pooled:
    """One open connection (and its jump host connection) and who uses it."""

    key: tuple[Any, ...]
    conn: Any
    jump: Any
    users: int = 0
    idle: asyncio.TimerHandle | None = None
    # An agent started ahead on this connection, waiting for its arguments
    # (the shell's rc files and Python's start-up already paid), and its bundle.
    standby: Any = None
    standby_sha: str = ""
    standby_spawning: bool = False

    def alive(self) -> bool:
        return not self.conn.is_closed() and (self.jump is None or not self.jump.is_closed())

    def take_standby(self, sha: str) -> Any:
        """The waiting agent process if it runs ``sha``'s bundle and still lives, else None."""
        proc, self.standby = self.standby, None
        if proc is None:
            return None
        if self.standby_sha != sha or proc.exit_status is not None or proc.exit_signal:
            _end(proc)
            return None
        return proc

    def close(self) -> None:
        proc, self.standby = self.standby, None
        if proc is not None:
            _end(proc)
        for c in (self.conn, self.jump):
            if c is not None:
                c.close()


def _end(proc: Any) -> None:
    """Close a remote process's stdin (an agent exits on EOF) and its channel."""
    try:
        proc.stdin.write_eof()
        proc.close()
    except Exception:  # noqa: BLE001 - the channel may be gone already
        pass


class _ConnectionPool:
    """Open SSH connections by (host, options), reused across attaches.

    Lives on the loop thread: every method runs there. A connection is only
    reused under the exact options it was opened (and its host key verified)
    with. A dead one is dropped, never handed out.
    """

    def __init__(self) -> None:
        self._entries: dict[tuple[Any, ...], _Pooled] = {}
        self._locks: dict[tuple[Any, ...], asyncio.Lock] = {}

    async def acquire(self, key: tuple[Any, ...], connect: Any) -> tuple[_Pooled, bool]:
        """(entry, reused): the open connection for ``key``, or a new one from ``connect()``."""
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:  # two attaches to one node open one connection
            e = self._entries.get(key)
            if e is not None and e.alive():
                e.users += 1
                if e.idle is not None:
                    e.idle.cancel()
                    e.idle = None
                return e, True
            if e is not None:
                self._forget(e)
            conn, jump = await connect()
            e = _Pooled(key, conn, jump, users=1)
            self._entries[key] = e
            return e, False

    def current(self, key: tuple[Any, ...]) -> _Pooled | None:
        """The connection handed out for ``key`` now, if any."""
        return self._entries.get(key)

    def release(self, e: _Pooled, broken: bool = False) -> None:
        """One user is done; a broken or dead connection is not handed out again."""
        e.users = max(0, e.users - 1)
        if broken or not e.alive():
            self._forget(e)
        if e.users == 0:
            if self._entries.get(e.key) is not e:
                e.close()
            elif e.idle is None:
                e.idle = asyncio.get_running_loop().call_later(IDLE_CLOSE_S, self._expire, e)

    def _forget(self, e: _Pooled) -> None:
        if self._entries.get(e.key) is e:
            del self._entries[e.key]
        if e.users == 0:
            e.close()

    def _expire(self, e: _Pooled) -> None:
        e.idle = None
        if e.users == 0:
            self._forget(e)
            e.close()

    async def close_all(self) -> None:
        entries, self._entries = list(self._entries.values()), {}
        for e in entries:
            if e.idle is not None:
                e.idle.cancel()
            e.close()
        for e in entries:
            for c in (e.conn, e.jump):
                if c is not None:
                    try:
                        await asyncio.wait_for(c.wait_closed(), 3)
                    except Exception:  # noqa: BLE001 - closing anyway
                        pass

    def __len__(self) -> int:
        return len(self._entries)


_POOL = _ConnectionPool()


def close_connections(timeout: float = 5.0) -> None:
    """Close every SSH connection kept open for reuse (at exit, and in tests)."""
    inst = _LoopThread._instance
    if inst is None or not inst.thread.is_alive():
        return
    try:
        inst.run(_POOL.close_all(), timeout=timeout)
    except Exception:  # noqa: BLE001 - exiting anyway
        pass


def open_connections() -> int:
    """How many SSH connections are kept open for reuse."""
    return len(_POOL)


atexit.register(close_connections)


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
        self._lease: _Pooled | None = None  # the (shared) connection this agent runs on
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
            lease, self._lease = self._lease, None
            if lease is not None:
                _POOL.release(lease)  # kept open for the next attach to this node

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
# The root + cached case comes first and forks nothing before the exec (bash
# has $EUID; the bundle's name carries its content hash and is only ever
# written whole, by rename). The interpreter is named by path and runs with
# -I, so the user's shell start-up files, PATH and PYTHON* variables do not
# choose or change the Python the agent runs in.
_PREFLIGHT = r"""
uid=${{EUID:-$(id -u)}}
d="${{TMPDIR:-/tmp}}/go-k8s-debug-$uid"
py=""
for p in {python}; do
  case "$p" in /*) [ -x "$p" ] && py="$p" ;; *) py=$(command -v "$p" 2>/dev/null) ;; esac
  [ -n "$py" ] && break
done
if [ "$uid" = 0 ] && [ -n "$py" ] && [ -d "$d" ] && [ ! -L "$d" ] && [ -O "$d" ] \
    && [ -s "$d/{file}" ]; then
  echo gkd:cached=yes; echo gkd:exec
  exec "$py" -I "$d/{file}" {args}
fi
mkdir -p -m 700 "$d" 2>/dev/null
if [ -L "$d" ] || [ ! -O "$d" ]; then echo "gkd:baddir=$d"; echo gkd:end; exit 0; fi
echo "gkd:dir=$d"
echo "gkd:uid=$uid"
[ -n "$py" ] && echo "gkd:python=$py"
cached=""
if [ -s "$d/{file}" ]; then cached=yes; echo gkd:cached=yes; fi
sudo=""
if [ "$uid" != 0 ]; then sudo -n true 2>/dev/null && {{ sudo="sudo -n"; echo gkd:sudo=ok; }}; fi
if [ -n "$cached" ] && [ -n "$py" ] && [ -n "$sudo" ]; then
  echo gkd:exec
  exec $sudo "$py" -I "$d/{file}" {args}
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

    def _preflight(self, b: AgentBundle, args: str) -> str:
        py = shlex.quote(self.options.python) if self.options.python else "/usr/bin/python3 python3"
        return _PREFLIGHT.format(python=py, file=b.filename, args=args)

    def prepare(self, target: AgentTarget) -> None:
        """Open the connection to ``target``'s node and start an agent there ahead of
        need (blocking; the session factory calls it in a thread). Errors are left
        for the attach to report."""
        host = self.host_for(target)
        loop = _LoopThread.get()

        async def run() -> None:
            lease, _ = await _POOL.acquire(self._pool_key(host), lambda: self._connect(host))
            try:
                await self._spawn_standby(lease, self.bundle(), delay=0.0)
            finally:
                _POOL.release(lease)

        loop.run(run(), timeout=self.options.connect_timeout + 60)

    async def _spawn_standby(
        self, lease: _Pooled, b: AgentBundle, delay: float = STANDBY_DELAY_S
    ) -> None:
        """Start an agent ahead on ``lease``'s connection, for the next attach to this node.

        Waits a little first, so it does not compete with the agent that just
        started. Only on the warm path (cached bundle, root or sudo); silent on failure.
        """
        if not b.standby or lease.standby is not None or lease.standby_spawning:
            return
        lease.standby_spawning = True
        proc = None
        try:
            await asyncio.sleep(delay)
            if _POOL.current(lease.key) is not lease or not lease.alive():
                return
            proc = await lease.conn.create_process(
                self._preflight(b, "--standby"), encoding=None
            )
            while True:
                line = await asyncio.wait_for(proc.stdout.readline(), 30)
                text = line.decode("utf-8", "replace").strip()
                if not line or text == "gkd:end":
                    return
                if text == "gkd:exec":
                    break
            if _POOL.current(lease.key) is not lease or lease.standby is not None:
                return
            lease.standby, lease.standby_sha, proc = proc, b.sha256, None
        except Exception:  # noqa: BLE001 - a standby is an optimisation only
            return
        finally:
            lease.standby_spawning = False
            if proc is not None:
                _end(proc)

    def _pool_key(self, host: str) -> tuple[Any, ...]:
        o = self.options
        return (host, tuple(o.config_paths()), o.jump, o.user, o.key, o.known_hosts)

    async def _start(self, link: SSHLink, host: str, target: AgentTarget) -> None:
        t0 = time.monotonic()
        key = self._pool_key(host)
        lease, reused = await _POOL.acquire(key, lambda: self._connect(host))
        link._lease = lease
        t1 = time.monotonic()
        b = self.bundle()
        args = " ".join(shlex.quote(a) for a in target.agent_args())
        standby = lease.take_standby(b.sha256) if reused else None
        if standby is not None:
            try:
                standby.stdin.write((json.dumps(target.agent_args()) + "\n").encode())
            except Exception:  # noqa: BLE001 - it died: start one the usual way
                _end(standby)
                standby = None
        if standby is not None:
            link._proc = standby
            t2 = time.monotonic()
            asyncio.get_running_loop().create_task(link._pump())
            self.last_timings = {
                "connect_s": t1 - t0, "start_s": t2 - t1, "preflight_s": 0.0,
                "cold_start_s": 0.0, "cached": 1.0, "reused": 1.0, "standby": 1.0,
            }  # fmt: skip
            asyncio.get_running_loop().create_task(self._spawn_standby(lease, b))
            return
        cmd = self._preflight(b, args)
        try:
            proc = await asyncio.wait_for(
                lease.conn.create_process(cmd, encoding=None), self.options.connect_timeout
            )
        except Exception:
            if not reused:
                raise
            # The kept connection died under us (node rebooted, link dropped): a new one.
            link._lease = None
            _POOL.release(lease, broken=True)
            lease, reused = await _POOL.acquire(key, lambda: self._connect(host))
            link._lease = lease
            t1 = time.monotonic()
            proc = await lease.conn.create_process(cmd, encoding=None)
        conn = lease.conn
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
        t_pre = time.monotonic()
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
            "preflight_s": t_pre - t1,  # checks answered (warm: the agent exec'd)
            "cold_start_s": t2 - t_pre,  # upload + separate agent start (0 when warm)
            "cached": float(facts.get("cached") == "yes"),
            "reused": float(reused),
            "standby": 0.0,
        }
        # The bundle is on the node now: have an agent ready for the next attach.
        asyncio.get_running_loop().create_task(self._spawn_standby(lease, b))

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
        cmd = f"{sudo}{shlex.quote(python)} -I {qpath} {args}"
        return await conn.create_process(cmd, encoding=None)
