"""cgroup paths and CPU statistics, for cgroup v1 and v2.

Where a process's cgroup lives on disk: ``/proc/PID/cgroup`` gives the path
relative to each hierarchy's root and ``/proc/self/mountinfo`` gives where that
hierarchy is mounted. On v1 the ``cpu`` controller (throttling, quota) and the
``cpuacct`` controller (usage) may share a mount (``cpu,cpuacct``) or not.

Counters are cumulative since the cgroup was created; callers take deltas.
All times are returned in ns whatever the version stores.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

CGROUP_ROOT = "/sys/fs/cgroup"


@dataclass(frozen=True)
class CgroupLine:
    """One line of /proc/PID/cgroup."""

    hierarchy: int
    controllers: tuple[str, ...]
    path: str


@dataclass(frozen=True)
class Mount:
    """A cgroup hierarchy's mount: where it is and which part of it (root) it shows."""

    mountpoint: str
    root: str
    fstype: str
    controllers: tuple[str, ...]


def parse_proc_cgroup(text: str) -> list[CgroupLine]:
    """Parse /proc/PID/cgroup text into lines (v2's line has no controllers)."""
    out = []
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        try:
            hier = int(parts[0])
        except ValueError:
            continue
        ctrls = tuple(c for c in parts[1].split(",") if c)
        out.append(CgroupLine(hier, ctrls, parts[2]))
    return out


def read_proc_cgroup(pid: int) -> list[CgroupLine]:
    with open(f"/proc/{pid}/cgroup") as f:
        return parse_proc_cgroup(f.read())


def _unescape_mount(s: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as octal.
    return (
        s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
    )


def cgroup_mounts(mountinfo_path: str = "/proc/self/mountinfo") -> list[Mount]:
    """The cgroup and cgroup2 mounts visible to the agent."""
    mounts = []
    with open(mountinfo_path) as f:
        for line in f:
            left, sep, right = line.partition(" - ")
            if not sep:
                continue
            lf = left.split()
            rf = right.split()
            if len(lf) < 5 or len(rf) < 3 or rf[0] not in ("cgroup", "cgroup2"):
                continue
            ctrls: tuple[str, ...] = ()
            if rf[0] == "cgroup":
                opts = rf[2].split(",")
                ctrls = tuple(o for o in opts if o in _V1_CONTROLLERS or o.startswith("name="))
            mounts.append(Mount(_unescape_mount(lf[4]), _unescape_mount(lf[3]), rf[0], ctrls))
    return mounts


_V1_CONTROLLERS = {
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "blkio",
    "perf_event",
    "net_prio",
    "hugetlb",
    "pids",
    "rdma",
    "misc",
}


def _join(mount: Mount, path: str) -> str:
    """Host directory for ``path`` (as /proc/PID/cgroup shows it) under ``mount``.

    When the mount shows a sub-tree (its root is not "/"), paths in
    /proc/PID/cgroup are still relative to the hierarchy root, so strip the
    mount's root first.
    """
    rel = path
    if mount.root not in ("/", "") and (rel == mount.root or rel.startswith(mount.root + "/")):
        rel = rel[len(mount.root) :]
    return os.path.normpath(os.path.join(mount.mountpoint, rel.lstrip("/")))


def _find_by_name(top: str, name: str, max_depth: int = 8) -> str | None:
    """Search ``top`` for a directory called ``name`` (for paths we could not place
    because of a cgroup namespace)."""
    top = top.rstrip("/")
    base_depth = top.count("/")
    for dirpath, dirnames, _ in os.walk(top):
        if name in dirnames:
            return os.path.join(dirpath, name)
        if dirpath.count("/") - base_depth >= max_depth:
            dirnames[:] = []
    return None


def resolve_dir(mount: Mount, path: str) -> str | None:
    """Host directory for a cgroup path, handling cgroup namespaces.

    In a cgroup namespace (``..`` entries, or a path relative to the
    namespace's root) the joined path may not exist; then look for the leaf
    directory's name under the mount. None when not found.
    """
    candidate = _join(mount, path)
    if ".." not in path.split("/") and os.path.isdir(candidate):
        return candidate
    leaf = os.path.basename(path.rstrip("/"))
    if not leaf or leaf == "..":
        return None
    return _find_by_name(mount.mountpoint, leaf)


def is_unified_only() -> bool:
    """True on a pure cgroup v2 host (controllers live in the unified hierarchy)."""
    return os.path.exists(os.path.join(CGROUP_ROOT, "cgroup.controllers"))


@dataclass
class CpuDirs:
    """Where a process's CPU accounting lives."""

    version: int
    #: v1: the cpu controller's directory; v2: the unified directory.
    cpu: str
    #: v1: the cpuacct controller's directory (may equal ``cpu``); v2: same as cpu.
    cpuacct: str | None
    #: The cgroup path as /proc/PID/cgroup shows it (for matching names).
    path: str


def cpu_dirs_for_pid(pid: int, mounts: list[Mount] | None = None, match=None) -> CpuDirs:
    """Find the cpu (and cpuacct) cgroup directories of a process.

    On a hybrid host a process has a v1 cpu path and a cgroup2 path, and a
    runtime may have placed it in only one of them. ``match`` (a predicate on
    a /proc/PID/cgroup path, e.g. "names this pod") picks the hierarchy that
    holds the container. Without it, or when both or neither match, the v1
    cpu controller wins (hybrid hosts usually keep cgroup2 empty), except when
    the v1 path is the root and the cgroup2 path is not: then the process was
    placed with cgroup2 only.

    Raises:
        LookupError: with a sentence naming what was looked for and where.
    """
    lines = read_proc_cgroup(pid)
    mounts = mounts if mounts is not None else cgroup_mounts()
    by_ctrl: dict[str, CgroupLine] = {}
    unified: CgroupLine | None = None
    for ln in lines:
        if ln.hierarchy == 0 and not ln.controllers:
            unified = ln
        for c in ln.controllers:
            by_ctrl[c] = ln

    def v1_dir(ctrl: str) -> str | None:
        ln = by_ctrl.get(ctrl)
        if ln is None:
            return None
        for m in mounts:
            if m.fstype == "cgroup" and ctrl in m.controllers:
                d = resolve_dir(m, ln.path)
                if d:
                    return d
        return None

    v1_ok = "cpu" in by_ctrl
    if v1_ok and unified is not None:
        if match is not None and match(unified.path) and not match(by_ctrl["cpu"].path):
            v1_ok = False
        elif match is None and by_ctrl["cpu"].path == "/" and unified.path not in ("/", ""):
            v1_ok = False
    problems = []
    if v1_ok:
        cpu = v1_dir("cpu")
        if cpu is not None:
            return CpuDirs(1, cpu, v1_dir("cpuacct") or cpu, by_ctrl["cpu"].path)
        looked = ", ".join(m.mountpoint for m in mounts if "cpu" in m.controllers)
        problems.append(
            f"pid {pid} is in cpu cgroup {by_ctrl['cpu'].path} but no mounted cpu hierarchy "
            f"holds that directory (looked at {looked or 'no cpu mount in /proc/self/mountinfo'})"
        )
    if unified is not None:
        for m in mounts:
            if m.fstype == "cgroup2":
                d = resolve_dir(m, unified.path)
                if d:
                    return CpuDirs(2, d, d, unified.path)
        looked = ", ".join(m.mountpoint for m in mounts if m.fstype == "cgroup2")
        problems.append(
            f"pid {pid} is in cgroup {unified.path} but no mounted cgroup2 hierarchy holds that "
            f"directory (looked at {looked or 'no cgroup2 mount in /proc/self/mountinfo'})"
        )
    if problems:
        raise LookupError("; ".join(problems))
    raise LookupError(f"/proc/{pid}/cgroup names neither a cpu controller nor a cgroup2 path")


def unified_twin(pid: int, v1_path: str, mounts: list[Mount] | None = None) -> str | None:
    """On a hybrid host, the target's cgroup2 directory when it mirrors its v1 cpu
    cgroup (same leaf name), for cpu.pressure; None otherwise (e.g. the runtime
    created only v1 directories, so the unified cgroup is not the container's)."""
    mounts = mounts if mounts is not None else cgroup_mounts()
    leaf = os.path.basename(v1_path.rstrip("/"))
    for ln in read_proc_cgroup(pid):
        if ln.hierarchy == 0 and not ln.controllers:
            if os.path.basename(ln.path.rstrip("/")) != leaf or not leaf:
                return None
            for m in mounts:
                if m.fstype == "cgroup2":
                    d = resolve_dir(m, ln.path)
                    if d:
                        return d
    return None


def read_cpu_pressure(cgroup_dir: str) -> tuple[float, int] | None:
    """(``some avg10`` in %, ``some total`` in ns) of a cgroup2 cpu.pressure, or None.

    "some" is the share of time at least one task of the group waited for a
    CPU it could not get (including while throttled)."""
    text = _read(os.path.join(cgroup_dir, "cpu.pressure"))
    if not text:
        return None
    for line in text.splitlines():
        if line.startswith("some "):
            kv = dict(x.split("=", 1) for x in line.split()[1:] if "=" in x)
            try:
                return float(kv["avg10"]), int(kv["total"]) * 1000
            except (KeyError, ValueError):
                return None
    return None


# --- statistics -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CpuStat:
    """Cumulative CPU counters of one cgroup, in ns, plus its current limit."""

    #: None when not measured (cgroup2 without the cpu controller).
    nr_periods: int | None
    nr_throttled: int | None
    throttled_ns: int | None
    usage_ns: int | None
    #: -1: no limit; None: unknown (no cpu controller on this cgroup2 directory).
    quota_us: int | None
    period_us: int
    #: False on a cgroup2 directory whose cpu controller is not enabled: the
    #: kernel then writes only usage to cpu.stat and no cpu.max exists.
    cpu_controller: bool = True


CPU_CONTROLLER_OFF_NOTE = (
    "cpu controller not enabled on this cgroup v2 node: cpu.stat has CPU usage only, so "
    "throttling is not measured here (no periods, no quota); enable it with "
    "'echo +cpu > cgroup.subtree_control' in the parent cgroups, or read the v1 cpu hierarchy"
)


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def parse_kv(text: str) -> dict[str, int]:
    """Parse ``key value`` lines (cpu.stat) into ints; skips junk."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                pass
    return out


def parse_cpu_max(text: str) -> tuple[int, int]:
    """Parse v2 cpu.max ("max 100000" or "20000 100000") into (quota_us, period_us)."""
    parts = text.split()
    quota = -1 if not parts or parts[0] == "max" else int(parts[0])
    period = int(parts[1]) if len(parts) > 1 else 100000
    return quota, period


def read_cpu_stat(version: int, cpu_dir: str, cpuacct_dir: str | None = None) -> CpuStat:
    """Read a cgroup's throttling counters, usage and quota.

    Raises:
        OSError: when the cgroup's cpu.stat is gone (the cgroup was removed).
    """
    with open(os.path.join(cpu_dir, "cpu.stat")) as f:
        kv = parse_kv(f.read())
    if version == 2:
        usage = kv.get("usage_usec")
        max_text = _read(os.path.join(cpu_dir, "cpu.max"))
        # nr_periods and cpu.max exist only where the cpu controller is enabled
        # (the parent's cgroup.subtree_control has "cpu"): without it, no
        # throttling is measured, which is not the same as none happening.
        controller = "nr_periods" in kv or max_text is not None
        if not controller:
            return CpuStat(None, None, None, None if usage is None else usage * 1000,
                           None, 100000, cpu_controller=False)
        quota, period = parse_cpu_max(max_text) if max_text else (-1, 100000)
        return CpuStat(
            nr_periods=kv.get("nr_periods", 0),
            nr_throttled=kv.get("nr_throttled", 0),
            throttled_ns=kv.get("throttled_usec", 0) * 1000,
            usage_ns=None if usage is None else usage * 1000,
            quota_us=quota,
            period_us=period,
        )
    usage_text = _read(os.path.join(cpuacct_dir or cpu_dir, "cpuacct.usage"))
    quota_text = _read(os.path.join(cpu_dir, "cpu.cfs_quota_us"))
    period_text = _read(os.path.join(cpu_dir, "cpu.cfs_period_us"))
    return CpuStat(
        nr_periods=kv.get("nr_periods", 0),
        nr_throttled=kv.get("nr_throttled", 0),
        throttled_ns=kv.get("throttled_time", 0),
        usage_ns=int(usage_text) if usage_text and usage_text.strip().isdigit() else None,
        quota_us=int(quota_text) if quota_text and quota_text.strip().lstrip("-").isdigit() else -1,
        period_us=int(period_text) if period_text and period_text.strip().isdigit() else 100000,
    )


def stat_delta(prev: CpuStat, cur: CpuStat) -> dict[str, object]:
    """Per-interval deltas as a throttle frame's container/pod dict.

    A counter that went backwards (cgroup recreated) gives its current value,
    not a negative number.
    """

    def d(a: int | None, b: int | None) -> int | None:
        if a is None or b is None:
            return None
        return b - a if b >= a else b

    out: dict[str, object] = {
        "nr_periods": d(prev.nr_periods, cur.nr_periods),
        "nr_throttled": d(prev.nr_throttled, cur.nr_throttled),
        "throttled_ns": d(prev.throttled_ns, cur.throttled_ns),
        "usage_ns": d(prev.usage_ns, cur.usage_ns),
        "quota_us": cur.quota_us,
        "period_us": cur.period_us,
    }
    if not cur.cpu_controller:
        out["throttling"] = "not_measured"
        out["note"] = CPU_CONTROLLER_OFF_NOTE
    return out
