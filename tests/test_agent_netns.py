"""HTTP into another network namespace without moving the caller's thread."""

from __future__ import annotations

import subprocess
import threading
import time

import pytest
from test_agent_support import stop_proc, wait_port

from bpf.netns_http import HttpError, http_get, same_netns

SERVER = """
import http.server, socketserver, sys, time
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/slow":
            time.sleep(30)
        body = ("hello from " + self.path).encode()
        self.send_response(404 if self.path == "/missing" else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", 18999), H).serve_forever()
"""


@pytest.fixture
def netns_server(root: None):
    p = subprocess.Popen(["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
                          "/usr/bin/python3", "-c", SERVER])
    try:
        wait_port(p.pid, 18999)
        yield p.pid
    finally:
        stop_proc(p)


def test_get_inside_the_pods_namespace_only(netns_server: int) -> None:
    ns = f"/proc/{netns_server}/ns/net"
    assert not same_netns(ns)
    assert http_get(ns, 18999, "/x", timeout=5) == b"hello from /x"
    # The caller's own namespace never changed: the same port here is not that server.
    assert same_netns("/proc/self/ns/net")
    with pytest.raises(HttpError) as e:
        http_get(None, 18999, "/x", timeout=2)
    assert e.value.kind == "refused"
    # Other threads of this process were never moved either.
    seen = []
    t = threading.Thread(target=lambda: seen.append(same_netns("/proc/1/ns/net")))
    t.start()
    t.join()
    assert seen == [same_netns("/proc/1/ns/net")]


def test_http_errors_and_timeouts(netns_server: int) -> None:
    ns = f"/proc/{netns_server}/ns/net"
    with pytest.raises(HttpError) as e:
        http_get(ns, 18999, "/missing", timeout=5)
    assert e.value.kind == "http" and e.value.status == 404
    t0 = time.monotonic()
    with pytest.raises(HttpError) as e:
        http_get(ns, 18999, "/slow", timeout=1)
    assert e.value.kind == "timeout" and time.monotonic() - t0 < 3
    with pytest.raises(HttpError) as e:
        http_get("/proc/999999999/ns/net", 18999, "/", timeout=1)
    assert e.value.kind == "netns"
