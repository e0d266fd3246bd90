"""Goroutine count per interval from the app's pprof index page.

``GET /debug/pprof/`` lists each profile's ``Count()``; the goroutine row is
``runtime.NumGoroutine()`` (net/http/pprof.Index, runtime/pprof
countGoroutine). Reading it walks no stacks and stops no world, so polling it
every second is cheap. The page is fetched from inside the pod's network
namespace, so a pprof bound to 127.0.0.1 works.
"""

from __future__ import annotations

import re

from bpf.collectors.base import Collector, CollectorError, Frame
from bpf.netns_http import HttpError, http_get
from bpf.schema import make_frame

DEFAULT_PPROF_PORT = 6060
NO_PPROF_HINT = "serve net/http/pprof on :6060 or pass --pprof-port"

# One row of the index table: <tr><td>12</td><td><a href='goroutine?debug=1'>goroutine</a></td></tr>
_ROW_RE = re.compile(
    r"<td>\s*(\d+)\s*</td>\s*<td>\s*<a href=['\"]?(?:/debug/pprof/)?goroutine(?:\?debug=1)?['\"]?>"
    r"\s*goroutine\s*</a>"
)

#: Consecutive failed reads after which the collector gives up.
MAX_FAILURES = 3


def listening_ports(pid: int) -> list[tuple[str, int]]:
    """(address to dial, port) of every TCP listener in pid's network namespace,
    from /proc/PID/net/tcp{,6}; wildcard and loopback binds are dialled at 127.0.0.1."""
    out = []
    for fn, v6 in (("tcp", False), ("tcp6", True)):
        try:
            with open(f"/proc/{pid}/net/{fn}") as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) < 4 or parts[3] != "0A":  # 0A: LISTEN
                continue
            addr_hex, port_hex = parts[1].rsplit(":", 1)
            host = "127.0.0.1"
            if not v6 and addr_hex not in ("00000000",) and not addr_hex.endswith("7F"):
                # A specific IPv4 address (little-endian hex): dial it inside the pod.
                host = ".".join(str(int(addr_hex[i : i + 2], 16)) for i in (6, 4, 2, 0))
            item = (host, int(port_hex, 16))
            if item not in out:
                out.append(item)
    return out


def find_pprof_port(
    netns: str, pid: int, skip: int | None = None, timeout: float = 1.0
) -> int | None:
    """The first listening port in the pod that serves /debug/pprof/ (None: none)."""
    for host, port in listening_ports(pid):
        if port == skip or host != "127.0.0.1":
            continue
        try:
            body = http_get(netns, port, "/debug/pprof/", timeout=timeout, max_bytes=1 << 20)
        except HttpError:
            continue
        if parse_index_goroutines(body.decode("utf-8", "replace")) is not None:
            return port
    return None


def parse_index_goroutines(html: str) -> int | None:
    """The goroutine count on a /debug/pprof/ index page, or None."""
    m = _ROW_RE.search(html)
    return int(m.group(1)) if m else None


def pprof_error(e: HttpError, port: int, what: str = "pprof") -> CollectorError:
    """A CollectorError an operator can act on, from a failed pprof request."""
    if e.kind == "refused":
        return CollectorError(
            "no_pprof",
            f"the app does not serve {what}: nothing listens on 127.0.0.1:{port} in the pod",
            NO_PPROF_HINT,
        )
    if e.kind == "http" and e.status == 404:
        return CollectorError(
            "no_pprof",
            f"port {port} answers HTTP but has no /debug/pprof/ (404)",
            NO_PPROF_HINT,
        )
    if e.kind == "netns":
        return CollectorError("netns", e.msg, "run the agent as root on the node with hostPID")
    return CollectorError(
        "pprof_failed",
        f"{what} request failed: {e.msg}",
        "check that the app is healthy and its pprof port is right",
    )


class GoroutinesCollector(Collector):
    name = "goroutines"
    cost = (
        "one HTTP GET of /debug/pprof/ per interval (runtime.NumGoroutine, "
        "no stop-the-world); no probes"
    )
    default_on = True
    needs_go = True

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self._failures = 0

    @property
    def port(self) -> int:
        return int(self.options.get("pprof_port") or DEFAULT_PPROF_PORT)

    def _read(self) -> int:
        timeout = max(0.5, min(2.0, float(self.options.get("interval", 1.0))))
        try:
            body = http_get(
                self.target.netns, self.port, "/debug/pprof/", timeout=timeout, max_bytes=1 << 20
            )
        except HttpError as e:
            raise pprof_error(e, self.port) from None
        n = parse_index_goroutines(body.decode("utf-8", "replace"))
        if n is None:
            raise CollectorError(
                "no_pprof",
                f"port {self.port} serves /debug/pprof/ but the page has no goroutine count",
                NO_PPROF_HINT,
            )
        return n

    def start(self) -> None:
        self._failures = 0
        self._read()  # fail fast: a pod without pprof gets one clear error

    def poll(self) -> list[Frame]:
        try:
            n = self._read()
        except CollectorError as e:
            # A transient slow answer is not worth turning the collector off.
            self._failures += 1
            if e.code == "no_pprof" or self._failures >= MAX_FAILURES:
                raise
            return [
                make_frame(
                    "log",
                    t=self.clock_now_ns(),
                    level="warn",
                    msg=f"goroutine count skipped this interval: {e.msg}",
                )
            ]
        self._failures = 0
        return [make_frame("goroutines", t=self.clock_now_ns(), count=n, source="pprof_index")]


COLLECTOR = GoroutinesCollector
