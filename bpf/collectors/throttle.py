"""CPU throttling of the container and pod cgroups, from cpu.stat.

Reads a few tiny files per interval (no probes): ``cpu.stat`` (periods,
throttled periods, throttled time), usage (``cpuacct.usage`` on v1,
``usage_usec`` on v2) and the quota (``cpu.cfs_quota_us``/``cpu.cfs_period_us``
or ``cpu.max``). Both the container and the pod cgroup are read because a pod's
limit (the sum of its containers') throttles too.

``throttled_ns`` is summed over per-CPU run queues by the kernel, so it is
throttled CPU-time and can exceed the interval on multi-core machines.

On a cgroup2 directory without the cpu controller (a hybrid host whose cpu
controller is bound to v1, or a v2 node that did not delegate it) cpu.stat has
usage only: the period and throttling fields are None, the dict says
``throttling: "not_measured"`` with a ``note``, and a warning log frame says so
once. Never 0 % throttling as if it had been measured.

Where the cgroup has a cgroup2 directory (v2, or a hybrid host's unified
twin), each dict also carries CPU pressure (PSI): ``pressure_some_ns`` (delta
of time some task waited for CPU) and ``pressure_some_avg10`` (%). The frame
also says how many OS threads the target has (``threads``: compare with the
quota; GOMAXPROCS above the quota makes throttling bursty).
"""

from __future__ import annotations

import time

from bpf import cgroup as cg
from bpf.collectors.base import Collector, CollectorError, Frame
from bpf.schema import make_frame


class ThrottleCollector(Collector):
    name = "throttle"
    cost = "reads 3-4 small cgroup files per interval; no probes, no effect on the target"
    default_on = True

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self._prev: dict[str, cg.CpuStat] = {}
        self._prev_psi: dict[str, tuple[float, int]] = {}
        self._prev_mono: int | None = None
        self._said_unmeasured = False

    def _dirs(self) -> dict[str, tuple]:
        cgs = self.target.cgroups
        out = {}
        for role in ("container", "pod"):
            if role in cgs:
                out[role] = (cgs[role], cgs.get(role + "_cpuacct", cgs[role]))
        return out

    def _read_all(self) -> dict[str, cg.CpuStat]:
        out = {}
        for role, (cpu, acct) in self._dirs().items():
            try:
                out[role] = cg.read_cpu_stat(self.target.cgroup_version, cpu, acct)
            except OSError as e:
                raise CollectorError(
                    "cgroup_gone",
                    f"cannot read {cpu}/cpu.stat: {e.strerror}",
                    "the container's cgroup was removed (container restarted?)",
                ) from None
        return out

    def _psi_dir(self, role: str) -> str | None:
        cgs = self.target.cgroups
        if role + "_unified" in cgs:
            return cgs[role + "_unified"]
        return cgs.get(role) if self.target.cgroup_version == 2 else None

    def _read_psi(self) -> dict[str, tuple[float, int]]:
        out = {}
        for role in ("container", "pod"):
            d = self._psi_dir(role)
            p = cg.read_cpu_pressure(d) if d else None
            if p is not None:
                out[role] = p
        return out

    def start(self) -> None:
        if "container" not in self.target.cgroups:
            raise CollectorError(
                "no_cgroup",
                "the target's cpu cgroup is unknown",
                "the agent could not place the target in a cgroup",
            )
        self._prev = self._read_all()
        self._prev_psi = self._read_psi()
        self._prev_mono = time.monotonic_ns()

    def poll(self) -> list[Frame]:
        cur = self._read_all()
        psi = self._read_psi()
        mono = time.monotonic_ns()
        interval = mono - (self._prev_mono or mono)
        fields: dict[str, object] = {"container": None, "pod": None}
        for role, stat in cur.items():
            prev = self._prev.get(role)
            if prev is not None:
                d = cg.stat_delta(prev, stat)
                if role in psi and role in self._prev_psi:
                    avg10, total = psi[role]
                    d["pressure_some_avg10"] = avg10
                    d["pressure_some_ns"] = max(0, total - self._prev_psi[role][1])
                fields[role] = d
        self._prev, self._prev_psi, self._prev_mono = cur, psi, mono
        if fields["container"] is None:
            return []
        out: list[Frame] = []
        if not self._said_unmeasured and any(not st.cpu_controller for st in cur.values()):
            # Once, in the session log: the frames carry it per cgroup too.
            self._said_unmeasured = True
            out.append(make_frame("log", t=self.clock_now_ns(), level="warn",
                                  msg="throttle: " + cg.CPU_CONTROLLER_OFF_NOTE))
        return out + [
            make_frame(
                "throttle",
                t=self.clock_now_ns(),
                interval_ns=interval,
                cgroup_version=self.target.cgroup_version,
                threads=len(self.target.threads()),
                **fields,
            )
        ]


COLLECTOR = ThrottleCollector
