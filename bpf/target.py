"""The process the agent watches: one container's main process on this node.

``resolve(pid=..., pod_uid=..., container=..., container_id=...)`` finds it:

- by pod UID / container ID, by scanning ``/proc/*/cgroup`` for the kubelet's
  cgroup names (cgroupfs driver: ``kubepods/<qos>/pod<uid>/<cid>``, systemd
  driver: ``kubepods-<qos>-pod<uid_with_underscores>.slice/cri-containerd-<cid>.scope``;
  Guaranteed pods have no ``<qos>`` level), on cgroup v1 and v2;
- then picks the container's main process: the one that is pid 1 in its PID
  namespace, else the lowest namespace pid, else the oldest.

Errors are ``TargetError`` with a stable code, a sentence saying what was not
found and where the agent looked, and a hint.
"""

from __future__ import annotations

import errno
import os
import re
import struct
from dataclasses import dataclass, field

from bpf import cgroup as cg
from bpf.symbols.gopclntab import unsupported_message
from bpf.varint import uvarint

PAUSE_COMMS = ("pause", "catatonit")


class TargetError(Exception):
    """The target could not be resolved. ``code`` is stable (an error frame's code)."""

    def __init__(self, code: str, msg: str, hint: str = "") -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.hint = hint


@dataclass
class Target:
    """A resolved target. Paths are host paths; pids are host (init-namespace) pids."""

    pid: int
    #: The pid as the container sees it (last column of NSpid).
    nspid: int
    #: /proc/<pid>/exe: opens the binary regardless of mount namespace.
    exe: str
    #: Path of the binary inside the container (readlink of /proc/<pid>/exe).
    exe_in_container: str
    #: "/proc/<pid>/ns/net": the pod's network namespace.
    netns: str
    #: cgroup directories (absolute host paths) by role: "container", "pod";
    #: for v1 the cpu controller's directories, and "container_cpuacct",
    #: "pod_cpuacct" for the cpuacct controller's (usage) directories, and on
    #: hybrid hosts "container_unified", "pod_unified" (cgroup2, for cpu.pressure).
    cgroups: dict[str, str] = field(default_factory=dict)
    cgroup_version: int = 1
    container_id: str | None = None
    pod_uid: str | None = None
    comm: str = ""
    #: Process start time (clock ticks since boot, /proc/PID/stat field 22):
    #: with pid, identifies the process across pid reuse.
    starttime: int = 0
    #: Whether the binary is a Go program, its Go version if it says, and
    #: whether its ELF symbol table was stripped.
    is_go: bool | None = None
    go_version: str | None = None
    stripped: bool | None = None
    #: The full NSpid chain (host first).
    nspids: tuple[int, ...] = ()
    #: Set when the binary is Go older than 1.18: frames will say
    #: "unsupported Go version" (see bpf.symbols).
    symbols_note: str | None = None

    def threads(self) -> list[int]:
        """Host tids of all the target's threads now (empty if it exited)."""
        try:
            return sorted(int(t) for t in os.listdir(f"/proc/{self.pid}/task") if t.isdigit())
        except OSError:
            return []

    def alive(self) -> bool:
        """True while the same process (pid + start time) runs and is not a zombie."""
        st = read_stat(self.pid)
        return st is not None and st[1] == self.starttime and st[0] not in ("Z", "X")

    def describe(self) -> dict[str, object]:
        """The target as the hello frame shows it."""
        return {
            "pid": self.pid,
            "nspid": self.nspid,
            "comm": self.comm,
            "exe": self.exe,
            "exe_in_container": self.exe_in_container,
            "netns": self.netns,
            "cgroups": dict(self.cgroups),
            "cgroup_version": self.cgroup_version,
            "container_id": self.container_id,
            "pod_uid": self.pod_uid,
            "threads": len(self.threads()),
            "is_go": self.is_go,
            "go_version": self.go_version,
            "stripped": self.stripped,
            "symbols_note": self.symbols_note,
        }


# --- /proc helpers ---------------------------------------------------------------------------


def read_stat(pid: int) -> tuple[str, int, int | None] | None:
    """(state, starttime, exit_code) from /proc/PID/stat, or None if gone.

    exit_code (field 52) is the wait status of a zombie, meaningful only in state Z.
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    # comm may contain spaces and parentheses: split after the last ')'.
    rest = data[data.rfind(")") + 2 :].split()
    try:
        state = rest[0]
        start = int(rest[19])
        exit_code = int(rest[49]) if len(rest) > 49 else None
    except (IndexError, ValueError):
        return None
    return state, start, exit_code


def read_nspids(pid: int) -> tuple[int, ...]:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("NSpid:"):
                    return tuple(int(x) for x in line.split()[1:])
    except (OSError, ValueError):
        pass
    return ()


def read_comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def is_kernel_thread(pid: int) -> bool:
    try:
        return os.readlink(f"/proc/{pid}/exe") == ""
    except OSError:
        return True


# --- Go binary detection ---------------------------------------------------------------------


def elf_sections(path: str) -> dict[str, tuple[int, int]]:
    """Section name -> (file offset, size) of a 64- or 32-bit ELF file.

    Hand-written (about 30 lines) because the agent imports only the standard
    library; the full symbolizer lives in bpf/symbols.
    """
    with open(path, "rb") as f:
        ident = f.read(16)
        if ident[:4] != b"\x7fELF":
            raise ValueError("not an ELF file")
        is64 = ident[4] == 2
        end = "<" if ident[5] == 1 else ">"
        if is64:
            hdr = f.read(48)
            (shoff,) = struct.unpack(end + "Q", hdr[24:32])
            shentsize, shnum, shstrndx = struct.unpack(end + "HHH", hdr[42:48])
            fmt, off_i, size_i = end + "IIQQQQIIQQ", 4, 5
        else:
            hdr = f.read(36)
            (shoff,) = struct.unpack(end + "I", hdr[16:20])
            shentsize, shnum, shstrndx = struct.unpack(end + "HHH", hdr[30:36])
            fmt, off_i, size_i = end + "IIIIIIIIII", 4, 5
        if shoff == 0 or shnum == 0 or shnum > 10000:
            return {}
        f.seek(shoff)
        raw = f.read(shentsize * shnum)
        shdrs = [
            struct.unpack(fmt, raw[i * shentsize : i * shentsize + struct.calcsize(fmt)])
            for i in range(shnum)
        ]
        stroff, strsize = shdrs[shstrndx][off_i], shdrs[shstrndx][size_i]
        f.seek(stroff)
        names = f.read(strsize)
        out = {}
        for sh in shdrs:
            n = sh[0]
            name = names[n : names.find(b"\0", n)].decode("latin-1")
            out[name] = (sh[off_i], sh[size_i])
        return out


_BUILDINFO_MAGIC = b"\xff Go buildinf:"


def go_binary_info(path: str) -> tuple[bool, str | None, bool | None]:
    """(is_go, go_version, stripped) of an ELF binary.

    Go binaries carry ``.go.buildinfo`` (Go 1.13+) and ``.gopclntab``; since
    Go 1.18 the version string is inline in buildinfo (flag bit 2).
    """
    try:
        secs = elf_sections(path)
    except (OSError, ValueError, struct.error):
        return False, None, None
    stripped = ".symtab" not in secs
    is_go = ".go.buildinfo" in secs or ".gopclntab" in secs or ".data.rel.ro.gopclntab" in secs
    version = None
    if ".go.buildinfo" in secs:
        off, size = secs[".go.buildinfo"]
        try:
            with open(path, "rb") as f:
                f.seek(off)
                data = f.read(min(size, 4096))
            if data.startswith(_BUILDINFO_MAGIC) and len(data) > 33 and data[15] & 2:
                n, i = uvarint(data, 32)
                version = data[i : i + n].decode("utf-8", "replace") or None
        except (OSError, ValueError):
            pass
    return is_go, version, stripped


def go_symbols_note(path: str) -> str | None:
    """Why a Go binary's functions cannot be named (a pclntab of Go older than
    1.18), as a sentence for the hello frame; None when there is no such problem."""
    try:
        secs = elf_sections(path)
        for name in (".gopclntab", ".data.rel.ro.gopclntab"):
            if name in secs:
                with open(path, "rb") as f:
                    f.seek(secs[name][0])
                    raw = f.read(4)
                return unsupported_message(struct.unpack("<I", raw)[0]) if len(raw) == 4 else None
    except (OSError, ValueError, struct.error):
        pass
    return None


# --- cgroup matching -------------------------------------------------------------------------


def normalize_container_id(cid: str) -> str:
    """Strip a runtime scheme (``containerd://``) from a container ID."""
    return cid.split("://", 1)[-1].strip()


def pod_uid_forms(uid: str) -> tuple[str, str]:
    """The pod UID as the cgroupfs driver (dashes) and the systemd driver (underscores) spell it."""
    return uid.replace("_", "-"), uid.replace("-", "_")


_POD_RE = re.compile(r"(?:^|[/-])pod([0-9a-fA-F_-]{8,})(?:\.slice)?$")
_SCOPE_RE = re.compile(
    r"^(?:(?:cri-containerd|crio|docker|containerd|libpod)-)?([0-9a-f]{12,})(?:\.scope)?$"
)


def container_id_of_dir(name: str) -> str | None:
    """The container ID in a container cgroup's directory name, if it looks like one."""
    m = _SCOPE_RE.match(name)
    return m.group(1) if m else None


def path_matches(path: str, pod_uid: str | None, container_id: str | None) -> bool:
    """Whether a cgroup path (as in /proc/PID/cgroup) belongs to the pod / container."""
    parts = [p for p in path.split("/") if p]
    if pod_uid:
        dash, under = pod_uid_forms(pod_uid)
        names = ("pod" + dash, "pod" + under)
        if not any(p in names or (p.endswith(".slice") and p[:-6].endswith(names)) for p in parts):
            return False
    if container_id:
        cid = normalize_container_id(container_id)
        if not parts:
            return False
        leaf_cid = container_id_of_dir(parts[-1])
        if leaf_cid is None or not (
            leaf_cid == cid or (len(cid) >= 12 and leaf_cid.startswith(cid))
        ):
            return False
    return True


def _pid_cgroup_paths(pid: int) -> list[str]:
    try:
        return [ln.path for ln in cg.read_proc_cgroup(pid)]
    except OSError:
        return []


def scan_processes(
    pod_uid: str | None, container_id: str | None, proc: str = "/proc"
) -> dict[int, str]:
    """Host pids whose cgroup matches, with the matching cgroup path."""
    found = {}
    for name in os.listdir(proc):
        if not name.isdigit():
            continue
        pid = int(name)
        for path in _pid_cgroup_paths(pid):
            if path_matches(path, pod_uid, container_id):
                found[pid] = path
                break
    return found


def pick_main(pids: list[int]) -> int:
    """The container's main process: NSpid 1, else the lowest NSpid, else the oldest."""

    def key(pid: int) -> tuple[int, int, int]:
        ns = read_nspids(pid)
        inner = ns[-1] if ns else 1 << 30
        st = read_stat(pid)
        return (0 if inner == 1 and len(ns) > 1 else 1, inner, st[1] if st else 1 << 62)

    return min(pids, key=key)


# --- resolution ------------------------------------------------------------------------------


def resolve(
    pid: int | None = None,
    pod_uid: str | None = None,
    container: str | None = None,
    container_id: str | None = None,
) -> Target:
    """Resolve the target process and everything the collectors need about it.

    Args:
        pid: a host pid. With a pod UID / container ID as well, it must lie in
            that pod's / container's cgroup.
        pod_uid: the pod's UID (metadata.uid).
        container: a container name. The node has no container names without
            the runtime, so it is matched against the processes' comm and binary
            name when the pod has several containers.
        container_id: the container ID (status.containerStatuses[].containerID,
            with or without the ``containerd://`` scheme).

    Raises:
        TargetError: codes ``no_target``, ``no_such_pid``, ``not_found``,
            ``ambiguous``, ``pid_outside_target``, ``no_cgroup``.
    """
    if container_id:
        container_id = normalize_container_id(container_id)
    if pid is None and not pod_uid and not container_id:
        raise TargetError(
            "no_target",
            "no target given",
            "pass --pid N, or --pod-uid UID with --container NAME or --container-id ID",
        )
    if pid is not None:
        if not os.path.exists(f"/proc/{pid}"):
            raise TargetError(
                "no_such_pid",
                f"no process with pid {pid} on this host (no /proc/{pid})",
                "the process exited, or the agent runs in another PID namespace: "
                "run it on the node with hostPID",
            )
        if pod_uid or container_id:
            paths = _pid_cgroup_paths(pid)
            if not any(path_matches(p, pod_uid, container_id) for p in paths):
                want = " ".join(
                    x
                    for x in (
                        pod_uid and "pod " + pod_uid,
                        container_id and "container " + container_id,
                    )
                    if x
                )
                raise TargetError(
                    "pid_outside_target",
                    f"pid {pid} is not in the cgroup of {want} "
                    f"(its cgroups: {', '.join(sorted(set(paths)))})",
                    "pass the pid of a process in that container, or drop --pid",
                )
        return _build(pid, pod_uid, container_id)

    found = scan_processes(pod_uid, container_id)
    found = {
        p: path
        for p, path in found.items()
        if not is_kernel_thread(p) and read_comm(p) not in PAUSE_COMMS
    }
    what = " ".join(
        x
        for x in (pod_uid and "pod UID " + pod_uid, container_id and "container ID " + container_id)
        if x
    )
    if not found:
        dash, under = pod_uid_forms(pod_uid) if pod_uid else ("", "")
        looked = []
        if pod_uid:
            looked.append(f"pod{dash} (cgroupfs) and pod{under} (systemd)")
        if container_id:
            looked.append(
                f"a leaf named {container_id} or cri-containerd-{container_id}.scope "
                "(or crio-/docker-...scope)"
            )
        raise TargetError(
            "not_found",
            "no process on this node is in the cgroup of {}: scanned /proc/*/cgroup for {}".format(
                what, "; ".join(looked)
            ),
            "check that the pod runs on this node (kubectl get pod -o wide) and that the agent "
            "runs on the host with hostPID",
        )
    # Group by container cgroup (leaf directory); one container wanted.
    by_container: dict[str, list[int]] = {}
    for p, path in found.items():
        by_container.setdefault(path, []).append(p)
    if len(by_container) > 1:
        chosen = None
        if container:
            hits = [
                path
                for path, pids in by_container.items()
                if any(container in (read_comm(p), _exe_basename(p)) for p in pids)
                or container in path
            ]
            if len(hits) == 1:
                chosen = hits[0]
        if chosen is None:
            listing = "; ".join(
                "{} (pids {}, {})".format(
                    os.path.basename(path),
                    ",".join(map(str, sorted(pids)[:5])),
                    read_comm(pick_main(pids)),
                )
                for path, pids in sorted(by_container.items())
            )
            raise TargetError(
                "ambiguous",
                f"{what} has {len(by_container)} containers on this node: {listing}",
                "pass --container-id ID (status.containerStatuses[].containerID) to pick one",
            )
        pids = by_container[chosen]
    else:
        pids = next(iter(by_container.values()))
    cid = container_id
    if cid is None:
        cid = container_id_of_dir(os.path.basename(found[pids[0]].rstrip("/")))
    return _build(pick_main(pids), pod_uid, cid)


def _exe_basename(pid: int) -> str:
    try:
        return os.path.basename(os.readlink(f"/proc/{pid}/exe"))
    except OSError:
        return ""


def _build(pid: int, pod_uid: str | None, container_id: str | None) -> Target:
    st = read_stat(pid)
    if st is None:
        raise TargetError(
            "no_such_pid",
            f"pid {pid} exited while the agent was resolving it",
            "start the agent again once the container runs",
        )
    nspids = read_nspids(pid)
    try:
        exe_in = os.readlink(f"/proc/{pid}/exe")
    except OSError as e:
        denied = e.errno in (errno.EACCES, errno.EPERM)
        raise TargetError(
            "permission" if denied else "no_such_pid",
            f"cannot read /proc/{pid}/exe: {e.strerror}",
            "the agent must run as root on the node" if denied else "the process exited",
        ) from None
    try:
        match = None
        if pod_uid or container_id:
            def match(path: str) -> bool:
                return path_matches(path, pod_uid, container_id)
        dirs = cg.cpu_dirs_for_pid(pid, match=match)
    except (LookupError, OSError) as e:
        raise TargetError(
            "no_cgroup",
            f"cannot find the cgroup of pid {pid}: {e}",
            "mount the cgroup hierarchies (cpu, cpuacct or cgroup2) on the node",
        ) from None
    cgroups = {"container": dirs.cpu}
    if dirs.cpuacct and dirs.cpuacct != dirs.cpu:
        cgroups["container_cpuacct"] = dirs.cpuacct
    # The pod cgroup is the container cgroup's parent; with only a pid, a
    # parent counts as a pod only if its name says so.
    parent = os.path.dirname(dirs.cpu)
    if pod_uid or container_id or _POD_RE.search(os.path.basename(parent)):
        cgroups["pod"] = parent
        if dirs.cpuacct and dirs.cpuacct != dirs.cpu:
            cgroups["pod_cpuacct"] = os.path.dirname(dirs.cpuacct)
    # cpu.pressure (PSI) lives in cgroup2 only: on v2 in the same directories; on
    # a hybrid host in the unified twin of the cpu cgroup, when the runtime made one.
    if dirs.version == 1:
        try:
            twin = cg.unified_twin(pid, dirs.cpu)
        except OSError:
            twin = None
        if twin:
            cgroups["container_unified"] = twin
            if "pod" in cgroups:
                cgroups["pod_unified"] = os.path.dirname(twin)
    if pod_uid is None:
        m = _POD_RE.search(os.path.basename(parent))
        if m:
            pod_uid = m.group(1).replace("_", "-")
    exe = f"/proc/{pid}/exe"
    is_go, go_version, stripped = go_binary_info(exe)
    return Target(
        pid=pid,
        nspid=nspids[-1] if nspids else pid,
        exe=exe,
        exe_in_container=exe_in,
        netns=f"/proc/{pid}/ns/net",
        cgroups=cgroups,
        cgroup_version=dirs.version,
        container_id=container_id,
        pod_uid=pod_uid,
        comm=read_comm(pid),
        starttime=st[1],
        is_go=is_go,
        go_version=go_version,
        stripped=stripped,
        nspids=nspids,
        symbols_note=go_symbols_note(exe) if is_go else None,
    )
