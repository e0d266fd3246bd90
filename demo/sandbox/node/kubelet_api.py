"""The node's kubelet API, the part kube-apiserver uses for ``pods/exec``.

kube-apiserver proxies an exec request to the kubelet of the pod's node at
``https://<Node InternalIP>:<daemonEndpoints port>/exec/NS/POD/CONTAINER?command=...``.
A client speaking the websocket channel protocol ``v4.channel.k8s.io`` (the
Python client, kubectl with websockets) is proxied straight through, so this
server speaks that protocol: every binary message starts with a channel byte,
0 stdin, 1 stdout, 2 stderr, 3 the final status (a ``metav1.Status`` in JSON),
4 terminal resize. (A ``v5`` client is translated to SPDY by the API server; a
SPDY client is refused here with a sentence saying so.)

Security as on a real node: HTTPS with a serving certificate for the node IP
from the sandbox CA, and a client certificate is required (CERT_REQUIRED) whose
common name is the API server's kubelet client. Every sandbox user's certificate
chains to the same CA, so the name check is what keeps an operator from going
around RBAC by calling a node directly.

The command runs the way ``runc exec`` runs one: inside the container's mount,
UTS, IPC, network and PID namespaces (``nsenter`` into the container's main
process) and in the container's cgroups, with the container's environment. Its
stdin gets EOF when the client goes away; a command still running 10 s later is
killed (and a container's removal kills everything in its cgroups anyway).

Hand-written (on aiohttp) because no library serves the kubelet's exec protocol.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import ssl
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

log = logging.getLogger("gkd.kubelet-api")

PORT = 10250
V4_PROTOCOL = "v4.channel.k8s.io"
STDIN, STDOUT, STDERR, ERROR, RESIZE = range(5)
READ_CHUNK = 64 * 1024
# After the client hung up: how long a command may take to exit on stdin EOF.
EXIT_GRACE_S = 10.0


def channel_message(channel: int, data: bytes) -> bytes:
    """One v4 message: the channel byte, then the data."""
    return bytes([channel]) + data


def parse_channel_message(msg: bytes) -> tuple[int, bytes]:
    """Split a v4 message into (channel, data); an empty message is channel -1."""
    if not msg:
        return -1, b""
    return msg[0], msg[1:]


def exit_status(code: int) -> dict[str, Any]:
    """The ``metav1.Status`` a kubelet sends on the error channel when a command ends."""
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: exit status {code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


def exec_argv(pid: int, command: Sequence[str]) -> list[str]:
    """``nsenter`` into the namespaces of the container whose main process is ``pid``."""
    return [
        "nsenter",
        f"--target={pid}",
        "--mount",
        "--uts",
        "--ipc",
        "--net",
        "--pid",
        # The container's root and working directory, not the host's.
        "--root",
        "--wd",
        "--",
        *command,
    ]


def _status_response(code: int, reason: str, message: str) -> web.Response:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    return web.json_response(body, status=code)


def _peer_common_name(request: web.Request) -> str | None:
    cert = request.transport.get_extra_info("peercert") if request.transport else None
    for rdn in (cert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return value
    return None


def _join_cgroups(paths: Sequence[str]):
    def join() -> None:
        # In the forked child before exec: the command is accounted and limited as the
        # container, and dies with it.
        for p in paths:
            with open(os.path.join(p, "cgroup.procs"), "w") as f:
                f.write("0")

    return join


class KubeletAPI:
    """The exec endpoint of one node, served from its own thread and event loop.

    Args:
        runtime: the node's ``SandboxRuntime`` (``find_running``, ``container_spec``).
        host: the node IP to listen on.
        cert, key: the node's serving certificate and key.
        client_ca: the CA that client certificates must chain to.
        allowed_users: client certificate common names admitted.
        port: default 10250, as the Node object advertises.
    """

    def __init__(
        self,
        runtime: Any,
        host: str,
        cert: Path,
        key: Path,
        client_ca: Path,
        allowed_users: Sequence[str],
        port: int = PORT,
    ) -> None:
        self.runtime = runtime
        self.host, self.port = host, port
        self.allowed_users = set(allowed_users)
        self._ssl = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._ssl.load_cert_chain(str(cert), str(key))
        self._ssl.verify_mode = ssl.CERT_REQUIRED
        self._ssl.load_verify_locations(cafile=str(client_ca))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._procs: set[asyncio.subprocess.Process] = set()

    # -- life cycle --------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        """Listen on host:port; raise OSError if that fails."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._serve())
            except BaseException as e:  # noqa: BLE001 - handed to start()
                failure.append(e)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._shutdown())
            loop.close()

        self._thread = threading.Thread(target=run, name="kubelet-api", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise OSError(f"the kubelet API did not start on {self.host}:{self.port}")
        if failure:
            raise OSError(
                f"the kubelet API could not listen on {self.host}:{self.port}: {failure[0]}"
            )
        log.info("kubelet API (exec) listening on https://%s:%d", self.host, self.port)

    def stop(self) -> None:
        """Stop listening and kill any exec still running."""
        loop, t = self._loop, self._thread
        if loop is None or t is None or not t.is_alive():
            return
        loop.call_soon_threadsafe(loop.stop)
        t.join(timeout=15)

    async def _serve(self) -> None:
        app = web.Application()
        route = "/exec/{namespace}/{pod}/{container}"
        app.router.add_get(route, self._exec)
        app.router.add_post(route, self._exec)
        app.router.add_get("/healthz", self._healthz)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self._ssl)
        await site.start()

    async def _shutdown(self) -> None:
        for p in list(self._procs):
            _kill_group(p)
        if self._runner is not None:
            await self._runner.cleanup()

    # -- handlers ----------------------------------------------------------------

    def _authorized(self, request: web.Request) -> web.Response | None:
        user = _peer_common_name(request)
        if user not in self.allowed_users:
            # TLS already refused anyone without a CA-signed certificate.
            return _status_response(
                403,
                "Forbidden",
                f"user {user!r} may not use the kubelet API: only the API server does "
                "(use `kubectl exec` / pods/exec through the API server)",
            )
        return None

    async def _healthz(self, request: web.Request) -> web.StreamResponse:
        return self._authorized(request) or web.Response(text="ok")

    async def _exec(self, request: web.Request) -> web.StreamResponse:
        denied = self._authorized(request)
        if denied is not None:
            return denied
        ns = request.match_info["namespace"]
        pod = request.match_info["pod"]
        container = request.match_info["container"]
        q = request.query
        command = q.getall("command", [])
        if not command:
            return _status_response(400, "BadRequest", "exec needs at least one command= argument")
        if q.get("tty") in ("1", "true"):
            return _status_response(
                400, "BadRequest", "this sandbox kubelet runs exec without a terminal only (tty=0)"
            )
        ws = web.WebSocketResponse(protocols=[V4_PROTOCOL], max_msg_size=0, autoping=True)
        check = ws.can_prepare(request)
        if not check.ok or check.protocol != V4_PROTOCOL:
            return _status_response(
                400,
                "BadRequest",
                "this sandbox kubelet speaks exec over websockets with the "
                f"{V4_PROTOCOL} protocol only (SPDY and other protocols are not supported)",
            )
        loop = asyncio.get_running_loop()
        info = await loop.run_in_executor(None, self.runtime.find_running, ns, pod, container)
        spec = (
            await loop.run_in_executor(None, self.runtime.container_spec, info.pod_uid, info.id)
            if info is not None
            else None
        )
        if info is None or spec is None:
            return _status_response(
                404, "NotFound", f"container {container!r} of pod {ns}/{pod} is not running here"
            )
        want_stdin = q.get("input") in ("1", "true")
        try:
            proc = await asyncio.create_subprocess_exec(
                *exec_argv(info.pid, command),
                stdin=asyncio.subprocess.PIPE if want_stdin else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=spec.get("env") or {"PATH": "/usr/bin:/bin"},
                preexec_fn=_join_cgroups(spec.get("cgroups") or []),
                start_new_session=True,
            )
        except (OSError, ValueError) as e:
            return _status_response(500, "InternalError", f"could not start the command: {e}")
        self._procs.add(proc)
        log.info("exec in %s/%s (%s), pid %d: %s", ns, pod, container, proc.pid, command[0])
        await ws.prepare(request)
        try:
            await self._pump(ws, proc)
        finally:
            self._procs.discard(proc)
            if proc.returncode is None:
                _kill_group(proc)
                await proc.wait()
        log.info("exec pid %d in %s/%s ended with %s", proc.pid, ns, pod, proc.returncode)
        return ws

    async def _pump(self, ws: web.WebSocketResponse, proc: asyncio.subprocess.Process) -> None:
        send_lock = asyncio.Lock()

        async def out(stream: asyncio.StreamReader | None, channel: int) -> None:
            if stream is None:
                return
            while chunk := await stream.read(READ_CHUNK):
                async with send_lock:
                    if ws.closed:
                        return
                    await ws.send_bytes(channel_message(channel, chunk))

        async def inp() -> None:
            async for msg in ws:
                if msg.type != WSMsgType.BINARY:
                    continue
                channel, data = parse_channel_message(msg.data)
                if channel == STDIN and data and proc.stdin is not None:
                    try:
                        proc.stdin.write(data)
                        await proc.stdin.drain()
                    except (BrokenPipeError, ConnectionResetError):
                        pass
            # The client closed the connection: EOF on the command's stdin.
            if proc.stdin is not None:
                proc.stdin.close()

        readers = asyncio.gather(out(proc.stdout, STDOUT), out(proc.stderr, STDERR))
        writer = asyncio.ensure_future(inp())
        done, _ = await asyncio.wait({readers, writer}, return_when=asyncio.FIRST_COMPLETED)
        if readers in done:
            # Output ended: the command exited (or closed both); report its status.
            code = await proc.wait()
            if not ws.closed:
                async with send_lock:
                    await ws.send_bytes(
                        channel_message(ERROR, json.dumps(exit_status(code)).encode())
                    )
                await ws.close()
            writer.cancel()
        else:
            # The client is gone: give the command time to exit on its stdin EOF.
            try:
                await asyncio.wait_for(proc.wait(), EXIT_GRACE_S)
            except TimeoutError:
                log.warning("exec pid %d kept running after its client left: killing it", proc.pid)
            readers.cancel()
        await asyncio.gather(readers, writer, return_exceptions=True)


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
