"""HTTP GET to 127.0.0.1:PORT inside another process's network namespace.

A pprof endpoint bound to 127.0.0.1 inside a pod is reachable neither from the
pod IP nor from the node's loopback. The agent already runs on the node as
root, so it joins the pod's network namespace, but only in a short-lived
helper thread: ``setns(CLONE_NEWNET)`` changes the calling *thread's*
namespace, so the agent's main thread is never affected. The socket is created
inside the pod namespace (a socket keeps the namespace it was created in) and
the thread switches back before doing any I/O.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import http.client
import os
import socket
import threading

CLONE_NEWNET = 0x40000000


class HttpError(Exception):
    """The request failed. ``kind``: refused | timeout | netns | http | io."""

    def __init__(self, kind: str, msg: str, status: int = 0, body: bytes = b"") -> None:
        super().__init__(msg)
        self.kind = kind
        self.msg = msg
        self.status = status
        self.body = body


_libc = None


def _setns(fd: int) -> None:
    # os.setns exists from Python 3.12; nodes often run 3.9-3.11, so fall back to libc.
    if hasattr(os, "setns"):
        os.setns(fd, CLONE_NEWNET)
        return
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def same_netns(netns_path: str) -> bool:
    """Whether ``netns_path`` is the namespace this thread is in already."""
    try:
        a = os.stat(netns_path)
        b = os.stat("/proc/thread-self/ns/net")
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def socket_in_netns(netns_path: str | None, timeout: float) -> socket.socket:
    """A TCP socket created inside ``netns_path`` (None: this namespace).

    Must run in a thread of its own (the caller's thread switches namespace
    for the duration of ``socket()``).

    Raises:
        HttpError: kind ``netns`` when the namespace cannot be entered.
    """
    if netns_path is None or same_netns(netns_path):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(timeout)
        return s
    try:
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    except OSError as e:
        msg = f"cannot open this thread's network namespace: {e.strerror}"
        raise HttpError("netns", msg) from None
    try:
        try:
            target = os.open(netns_path, os.O_RDONLY)
        except OSError as e:
            raise HttpError(
                "netns", f"cannot open the pod's network namespace {netns_path}: {e.strerror}"
            ) from None
        try:
            try:
                _setns(target)
            except OSError as e:
                raise HttpError(
                    "netns", f"cannot enter the pod's network namespace {netns_path}: {e.strerror}"
                ) from None
            try:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            finally:
                _setns(home)
        finally:
            os.close(target)
    finally:
        os.close(home)
    s.settimeout(timeout)
    return s


class _Conn(http.client.HTTPConnection):
    """An HTTPConnection that connects a socket made in the pod's namespace."""

    def __init__(self, sock: socket.socket, host: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._presock = sock

    def connect(self) -> None:
        self._presock.connect((self.host, self.port))
        self.sock = self._presock


def _get(netns_path, port, path, timeout, max_bytes, host):
    sock = socket_in_netns(netns_path, timeout)
    conn = _Conn(sock, host, port, timeout)
    try:
        try:
            conn.request("GET", path, headers={"User-Agent": "go-k8s-debug-agent", "Accept": "*/*"})
            resp = conn.getresponse()
            body = resp.read(max_bytes + 1)
        except ConnectionRefusedError:
            raise HttpError("refused", f"nothing listens on {host}:{port} in the pod") from None
        except (socket.timeout, TimeoutError):  # noqa: UP041 (distinct classes before 3.10)
            raise HttpError(
                "timeout", f"{host}:{port}{path} did not answer in {timeout:g} s"
            ) from None
        except (OSError, http.client.HTTPException) as e:
            raise HttpError("io", f"{host}:{port}{path}: {e}") from None
        if len(body) > max_bytes:
            raise HttpError("io", f"{host}:{port}{path}: response over {max_bytes} bytes")
        if resp.status != 200:
            text = body[:300].decode("utf-8", "replace").strip()
            raise HttpError("http", f"HTTP {resp.status} from {path}: {text}", resp.status, body)
        return body
    finally:
        conn.close()


def http_get(
    netns_path: str | None,
    port: int,
    path: str,
    timeout: float = 5.0,
    max_bytes: int = 48 * 1024 * 1024,
    host: str = "127.0.0.1",
) -> bytes:
    """GET ``http://host:port/path`` from inside ``netns_path``; the body of a 200.

    Runs the request in a helper thread and waits at most ``timeout`` (plus a
    second) for it.

    Raises:
        HttpError: refused, timeout, netns, http (non-200: ``status``, ``body``) or io.
    """
    result: dict = {}

    def run() -> None:
        try:
            result["body"] = _get(netns_path, port, path, timeout, max_bytes, host)
        except HttpError as e:
            result["error"] = e
        except Exception as e:  # never let a helper thread die with a traceback
            result["error"] = HttpError("io", f"{host}:{port}{path}: {e!r}")

    t = threading.Thread(target=run, name="netns-http", daemon=True)
    t.start()
    t.join(timeout + 1.0)
    if t.is_alive():
        raise HttpError("timeout", f"{host}:{port}{path} did not answer in {timeout:g} s")
    if "error" in result:
        raise result["error"]
    return result["body"]
