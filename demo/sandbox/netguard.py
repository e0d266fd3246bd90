"""A blackhole route that keeps sandbox traffic on this machine.

While the bridge gkd0 exists its connected route (metric 0) carries 10.88.0.0/16.
If the bridge goes away while the API server still proxies to a pod IP, the
packets would otherwise follow the default route off the machine; the blackhole
route (higher metric) refuses them instead. `up` adds it and `down` removes it.
"""

from __future__ import annotations

import subprocess

SANDBOX_CIDR = "10.88.0.0/16"
METRIC = "4242"


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True)


def present() -> bool:
    """True when the guard route is installed."""
    out = _ip("route", "show", "type", "blackhole", SANDBOX_CIDR).stdout
    return f"metric {METRIC}" in out


def install() -> None:
    """Add the blackhole route (idempotent)."""
    if not present():
        r = _ip("route", "add", "blackhole", SANDBOX_CIDR, "metric", METRIC)
        if r.returncode != 0 and not present():
            raise RuntimeError(f"could not add the route guard: {r.stderr.strip()}")


def remove() -> None:
    """Delete the blackhole route if present."""
    if present():
        _ip("route", "del", "blackhole", SANDBOX_CIDR, "metric", METRIC)
