"""What bcc needs on a node, checked before anything is compiled, and a count
of what is attached (so tests and the agent can prove nothing is left behind).

- bcc must import (Debian's ``python3-bpfcc`` under ``/usr/bin/python3``; the
  PyPI package called ``bcc`` is unrelated).
- bcc compiles C at run time against kernel headers, found at
  ``/lib/modules/$(uname -r)/build`` or ``$BCC_KERNEL_SOURCE``. Nodes often
  have none for their exact kernel; the nearest distro headers work for what
  this agent attaches (tracepoints, uprobes, perf events: no kernel-struct
  reads), so the error names the exact ``ln -s`` lines.
- tracepoints need tracefs (and debugfs on older bcc) mounted.
"""

from __future__ import annotations

import ctypes
import errno
import glob
import os
import pkgutil
import platform
import re
import subprocess
import threading
from collections.abc import Callable
from typing import Any

from bpf.collectors.base import Collector, CollectorError, Frame

TRACEFS = (
    ("tracefs", "/sys/kernel/tracing", "/sys/kernel/tracing/events"),
    ("debugfs", "/sys/kernel/debug", "/sys/kernel/debug/tracing"),
)


def bcc_missing_reason() -> str | None:
    """None when ``import bcc`` works, else a sentence with the fix."""
    try:
        import bcc  # noqa: F401
    except Exception as e:  # ImportError, or a broken libbcc
        return (f"bcc does not import in this python3 ({e}): install Debian's "
                "python3-bpfcc (not the unrelated PyPI package named bcc) and run the "
                "agent with /usr/bin/python3")
    return None


def _arch_suffix() -> str:
    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(m, m)


def nearest_headers(release: str | None = None) -> tuple[str, str] | None:
    """``(arch dir, common dir)`` of the newest installed Debian-style headers,
    e.g. ``/usr/src/linux-headers-6.1.0-56-amd64`` and ``...-common``."""
    arch = _arch_suffix()
    cands = sorted(glob.glob(f"/usr/src/linux-headers-*-{arch}"), key=_version_key)
    for d in reversed(cands):
        common = d[: -len(arch)] + "common"
        if os.path.isdir(os.path.join(d, "include")) or os.path.isdir(common):
            return d, common if os.path.isdir(common) else ""
    return None


def _version_key(path: str) -> list[int]:
    return [int(x) for x in re.findall(r"\d+", os.path.basename(path))]


def headers_problem(release: str | None = None) -> tuple[str, str] | None:
    """None when bcc will find kernel headers; else ``(msg, hint)``."""
    release = release or platform.release()
    src = os.environ.get("BCC_KERNEL_SOURCE")
    if src:
        if os.path.isdir(os.path.join(src, "include")):
            return None
        return (f"BCC_KERNEL_SOURCE={src} has no include/ directory",
                "point BCC_KERNEL_SOURCE at a kernel headers tree, or unset it")
    build = f"/lib/modules/{release}/build"
    if os.path.isdir(os.path.join(build, "include")):
        return None
    msg = (f"no kernel headers for kernel {release}: bcc compiles its programs against "
           f"{build}, which is missing")
    near = nearest_headers(release)
    fix = f"apt-get install linux-headers-{release}"
    if near:
        arch_dir, common = near
        lines = [f"mkdir -p /lib/modules/{release}",
                 f"ln -sfn {arch_dir} /lib/modules/{release}/build"]
        if common:
            lines.append(f"ln -sfn {common} /lib/modules/{release}/source")
        fix += ("; or use the nearest installed headers (fine for tracepoints, uprobes and "
                "perf events): " + " && ".join(lines))
    else:
        fix += ("; or install the nearest distro headers (apt-get install linux-headers-"
                f"{_arch_suffix()}) and link them to {build}")
    return msg, fix


def ensure_headers() -> None:
    """Raise a CollectorError (code ``no_kernel_headers``) with the fix."""
    p = headers_problem()
    if p is not None:
        raise CollectorError("no_kernel_headers", p[0], p[1])


def ensure_tracefs() -> list[str]:
    """Mount tracefs and debugfs when missing (as root). Returns what was done,
    one sentence each, for the agent to log."""
    msgs = []
    for fstype, path, probe in TRACEFS:
        if os.path.exists(probe):
            continue
        if os.geteuid() != 0:
            msgs.append(f"could not mount {fstype} at {path}: not root")
            continue
        r = subprocess.run(["mount", "-t", fstype, fstype, path], capture_output=True,
                           text=True)
        if r.returncode == 0:
            msgs.append(f"mounted {fstype} at {path} (it was missing; tracepoints need it)")
        else:
            msgs.append(f"could not mount {fstype} at {path}: "
                        f"{r.stderr.strip() or r.returncode}")
    return msgs


def prepare() -> list[str]:
    """Everything a bcc collector checks before compiling: bcc, headers,
    tracefs. Raises CollectorError; returns the tracefs messages."""
    reason = bcc_missing_reason()
    if reason:
        raise CollectorError("no_bcc", reason, "apt-get install python3-bpfcc")
    ensure_headers()
    return ensure_tracefs()


# --- what is attached -----------------------------------------------------------------------

_SYS_BPF = {"x86_64": 321, "aarch64": 280}
_BPF_PROG_GET_NEXT_ID = 11
_BPF_PROG_GET_FD_BY_ID = 13
_BPF_OBJ_GET_INFO_BY_FD = 15


def _bpf(cmd: int, attr: ctypes.Array) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    nr = _SYS_BPF.get(platform.machine())
    if nr is None:
        raise OSError(errno.ENOSYS, "bpf syscall number unknown for this arch")
    r = libc.syscall(ctypes.c_long(nr), ctypes.c_int(cmd), attr, ctypes.c_uint(len(attr)))
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return r


def bpf_programs() -> dict[int, str]:
    """Every BPF program loaded on the machine: ``{id: name}`` (names are the
    first 15 characters of the C function). Root only. Uses the bpf(2)
    syscall through ctypes, so it works where bpftool is not installed."""
    return {i: v[0] for i, v in _programs().items()}


def program_stats() -> dict[int, tuple[str, int, int]]:
    """``{id: (name, run_cnt, run_time_ns)}`` for every loaded program. The
    kernel counts runs and time only while ``kernel.bpf_stats_enabled`` is 1
    (``sysctl -w kernel.bpf_stats_enabled=1``; it costs a clock read per run)."""
    return _programs()


def _programs() -> dict[int, tuple[str, int, int]]:
    out: dict[int, tuple[str, int, int]] = {}
    pid = 0
    while True:
        attr = ctypes.create_string_buffer(16)
        ctypes.c_uint32.from_buffer(attr, 0).value = pid
        try:
            _bpf(_BPF_PROG_GET_NEXT_ID, attr)
        except OSError as e:
            if e.errno == errno.ENOENT:
                return out
            raise
        pid = ctypes.c_uint32.from_buffer(attr, 4).value
        name, runs, run_ns = "", 0, 0
        fattr = ctypes.create_string_buffer(16)
        ctypes.c_uint32.from_buffer(fattr, 0).value = pid
        try:
            fd = _bpf(_BPF_PROG_GET_FD_BY_ID, fattr)
        except OSError:
            continue  # unloaded meanwhile
        try:
            info = ctypes.create_string_buffer(256)
            iattr = ctypes.create_string_buffer(16)
            ctypes.c_uint32.from_buffer(iattr, 0).value = fd
            ctypes.c_uint32.from_buffer(iattr, 4).value = len(info)
            ctypes.c_uint64.from_buffer(iattr, 8).value = ctypes.addressof(info)
            _bpf(_BPF_OBJ_GET_INFO_BY_FD, iattr)
            name = info.raw[64:80].split(b"\0", 1)[0].decode("ascii", "replace")
            # struct bpf_prog_info: run_time_ns at 192, run_cnt at 200 (5.1+).
            run_ns = ctypes.c_uint64.from_buffer(info, 192).value
            runs = ctypes.c_uint64.from_buffer(info, 200).value
        except OSError:
            pass
        finally:
            os.close(fd)
        out[pid] = (name, runs, run_ns)


def process_bpf_fds(pid: int | None = None) -> dict[str, Any]:
    """Counts of a process's BPF-related fds: ``bpf-prog``, ``bpf-map``,
    ``bpf_link``, ``perf_event`` (uprobes and CPU sampling are perf events),
    and ``prog_ids``: the ids of the programs it holds (from fdinfo)."""
    pid = os.getpid() if pid is None else pid
    counts: dict[str, Any] = {"bpf-prog": 0, "bpf-map": 0, "bpf_link": 0, "perf_event": 0}
    ids = []
    d = f"/proc/{pid}/fd"
    try:
        names = os.listdir(d)
    except OSError:
        return counts
    for n in names:
        try:
            link = os.readlink(os.path.join(d, n))
        except OSError:
            continue
        if link.startswith("anon_inode:"):
            kind = link[len("anon_inode:"):].strip("[]")
            if kind in counts:
                counts[kind] += 1
            if kind == "bpf-prog":
                try:
                    with open(f"/proc/{pid}/fdinfo/{n}") as f:
                        m = re.search(r"^prog_id:\s*(\d+)", f.read(), re.M)
                    if m:
                        ids.append(int(m.group(1)))
                except OSError:
                    pass
    counts["prog_ids"] = sorted(ids)
    return counts


def attached_summary(prefix: str = "gkd_") -> dict[str, Any]:
    """This process's BPF and perf_event fds and the ids of the programs it
    holds, plus ``loaded``: which program ids named with the agent's prefix
    are loaded system-wide. A test keeps the ids seen while running and
    checks that none of them is still loaded after stop()."""
    out = process_bpf_fds()
    out["loaded"] = sorted(i for i, n in bpf_programs().items() if n.startswith(prefix))
    return out


# --- the shared shape of a bcc collector ---------------------------------------------------


# libbcc is not thread-safe: its compile chdir()s into the kernel headers and
# drives one process-wide LLVM, and map reads, attaches and cleanup() call
# into the same library (ctypes releases the GIL for each call). Every libbcc
# call of every collector therefore runs under this one lock: compile and
# attach in the collector's start thread, map reads in poll() (which skips a
# poll rather than wait while another collector compiles, so the main loop
# keeps sending the other collectors' frames), detach in stop(). Re-entrant:
# a start that fails stops itself while holding it.
BCC_LOCK = threading.RLock()
_BCC_LOCK = BCC_LOCK  # the old name

# Detaches queued because the lock was busy (stop() from the main loop during
# another collector's compile). Whoever next holds the lock runs them first,
# oldest first, so a collector switched off and on again always detaches its
# old probes before it attaches the new ones. A thread per queued detach
# makes sure they run even when nothing else takes the lock; the agent waits
# for those threads before it exits.
_pending: list[Callable[[], None]] = []
_pending_guard = threading.Lock()
_pending_cleanups: list[threading.Thread] = []


def _run_pending() -> None:
    """Run the queued detaches, oldest first (the caller holds BCC_LOCK)."""
    while True:
        with _pending_guard:
            if not _pending:
                return
            fn = _pending.pop(0)
        try:
            fn()
        except Exception:
            pass  # a detach that fails leaves nothing we could still undo


def _drain_pending() -> None:
    with BCC_LOCK:
        _run_pending()


def run_locked(fn: Callable[[], None]) -> None:
    """Run ``fn`` under BCC_LOCK now if the lock is free, else queue it for the
    next holder (never blocks the caller: the agent's main loop calls stop())."""
    if BCC_LOCK.acquire(blocking=False):
        try:
            _run_pending()
            fn()
        finally:
            BCC_LOCK.release()
        return
    with _pending_guard:
        _pending.append(fn)
    t = threading.Thread(target=_drain_pending, name="bcc-detach", daemon=True)
    _pending_cleanups.append(t)
    t.start()


def _cleanup(b: Any) -> None:
    with BCC_LOCK:
        try:
            b.cleanup()
        except Exception:
            pass
        # bcc registers every BPF object with atexit; drop that reference so
        # the object (tables, compiler state) is freed now, not at exit, and
        # is not cleaned up a second time while the interpreter finalizes.
        try:
            import atexit

            atexit.unregister(b.cleanup)
        except Exception:
            pass
    release_memory()


def wait_for_cleanups(timeout: float = 30.0) -> bool:
    """Wait for deferred bcc detaches; True when none is still running."""
    import time

    deadline = time.monotonic() + timeout
    for t in list(_pending_cleanups):
        t.join(max(0.0, deadline - time.monotonic()))
    _pending_cleanups[:] = [t for t in _pending_cleanups if t.is_alive()]
    return not _pending_cleanups


def release_memory() -> None:
    """Hand freed heap (LLVM's compile buffers) back to the kernel with glibc's
    malloc_trim(0): without it the agent keeps the peak of its compiles as RSS."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (AttributeError, OSError):
        pass  # not glibc


# --- the compiler's pages ------------------------------------------------------------------

# libbcc links clang and LLVM (and their z3, ICU, libxml2): ~80 MB of code
# the agent runs only while it compiles. Once the program is loaded, those
# pages are resident for nothing; madvise(MADV_DONTNEED) on a private file
# mapping drops them from this process, and a later compile faults them back
# in from the page cache (or disk), so correctness never depends on it.
COMPILER_LIBS = ("libLLVM", "libclang", "libz3", "libicu", "libxml2")
MADV_DONTNEED = 4
MADV_COLD = 20
MADV_PAGEOUT = 21


def mappings(pid: int | str = "self") -> list[dict[str, Any]]:
    """``/proc/PID/smaps`` as a list of ``{start, end, perms, path, Rss,
    Anonymous, ...}`` (sizes in kB)."""
    out: list[dict[str, Any]] = []
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = re.match(r"^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$", line)
            if head:
                out.append({"start": int(head.group(1), 16), "end": int(head.group(2), 16),
                            "perms": head.group(3), "path": head.group(4).strip()})
                continue
            k, _, v = line.partition(":")
            if out and v.strip().endswith("kB"):
                out[-1][k] = int(v.split()[0])
    return out


def drop_compiler_pages(advice: int = MADV_DONTNEED,
                        libs: tuple[str, ...] = COMPILER_LIBS) -> int:
    """Drop this process's resident pages of the compiler libraries' read-only
    mappings; returns the kB that were resident in them.

    Only mappings that are not writable and hold no anonymous (copy-on-write)
    pages are advised: MADV_DONTNEED on a relocated RELRO page would re-read
    the unrelocated bytes from the file. Safe while no compile runs (the
    caller holds BCC_LOCK); even a running one would only fault pages back.
    """
    try:
        maps = mappings()
        libc = ctypes.CDLL(None, use_errno=True)
        madvise = libc.madvise
        madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    except (OSError, AttributeError):
        return 0
    dropped = 0
    for m in maps:
        if not os.path.basename(m["path"]).startswith(libs):
            continue
        if "w" in m["perms"] or m.get("Anonymous", 0) or not m.get("Rss", 0):
            continue
        if madvise(m["start"], m["end"] - m["start"], advice) == 0:
            dropped += m["Rss"]
    return dropped


# --- one compiled module for every bcc collector of a target -------------------------------

_BPF_CLASS: Any = None


def bpf_class() -> Any:
    """bcc's BPF without its tracepoint autoload: a module shared by several
    collectors must attach a collector's tracepoints only when that collector
    is on (bcc would attach every ``TRACEPOINT_PROBE`` at load)."""
    global _BPF_CLASS
    if _BPF_CLASS is None:
        from bcc import BPF

        class CollectorsBPF(BPF):
            def _trace_autoload(self) -> None:
                pass

        _BPF_CLASS = CollectorsBPF
    return _BPF_CLASS


class SharedProgram:
    """One compiled BPF module holding the programs of every bcc collector
    for one target: clang and LLVM run once per target instead of once per
    collector and per toggle. A program is loaded into the kernel only when
    its collector attaches it; the maps of collectors that are off stay
    empty. The module is released when the last collector using it stops."""

    def __init__(self, bpf: Any, c_files: list[str], defines: dict[str, Any]) -> None:
        self.bpf = bpf
        self.c_files = frozenset(c_files)
        self.defines = {k: str(v) for k, v in defines.items()}
        self.users: set[object] = set()
        # Who attached what, by the token of one collector run: detaches go
        # by these, so a late detach of a run that was switched off can never
        # take down the probes of the run that replaced it (same names).
        self.claims: dict[tuple[str, Any], object] = {}
        # c_file -> token of the run currently holding that collector's programs.
        self.owners: dict[str, object] = {}

    def serves(self, c: BccCollector) -> bool:
        return c.c_file in self.c_files and all(
            self.defines.get(k) == str(v) for k, v in c.defines().items())


_shared: list[SharedProgram] = []
_stats = {"compiles": 0}
# Collector starts waiting for BCC_LOCK: a module whose last user left is
# kept for them (a collector switched off and on again while another one
# compiles reuses it instead of compiling afresh).
_waiting = [0]


def shared_stats() -> dict[str, int]:
    """``compiles`` so far in this process and live shared ``modules``."""
    return {"compiles": _stats["compiles"], "modules": len(_shared)}


def _bcc_collector_classes() -> list[type]:
    import importlib

    from bpf.schema import COLLECTORS

    out = []
    for name in COLLECTORS:
        try:
            mod = importlib.import_module(f"bpf.collectors.{name}")
        except Exception:
            continue
        cls = getattr(mod, "COLLECTOR", None)
        if isinstance(cls, type) and issubclass(cls, BccCollector) and cls.c_file:
            out.append(cls)
    return out


def shared_parts(first: BccCollector) -> tuple[dict[str, Any], list[BccCollector]]:
    """The defines and collectors (``first`` first) one module is built from:
    every bcc collector that can run on the target and whose defines agree."""
    defines = dict(first.defines())
    parts = [first]
    for cls in _bcc_collector_classes():
        if cls.c_file == first.c_file or cls.unavailable_reason(first.target):
            continue
        try:
            other = cls(first.target, first.options)
            d = other.defines()
        except Exception:
            continue
        if any(k in defines and str(defines[k]) != str(v) for k, v in d.items()):
            continue
        defines.update(d)
        parts.append(other)
    return defines, parts


def program_text(defines: dict[str, Any], parts: list[BccCollector]) -> str:
    head = "".join(f"#define {k} {v}\n" for k, v in defines.items())
    return head + "".join(f"// ---- {p.c_file}\n{p.raw_c()}\n" for p in parts)


_MAP_DECL = re.compile(r"^\s*BPF_(\w+)\((.*)\)\s*;", re.M)


def map_names(c_text: str) -> list[str]:
    """Names of the maps a collector's C declares (``BPF_HASH(name, ...)``,
    ``BPF_TABLE("type", key, leaf, name, size)``)."""
    out = []
    for kind, args in _MAP_DECL.findall(c_text):
        a = [x.strip() for x in args.split(",")]
        name = a[3] if kind == "TABLE" and len(a) > 3 else a[0]
        if re.fullmatch(r"[A-Za-z_]\w*", name):
            out.append(name)
    return out


_KINDS = ("uprobe", "tracepoint", "perf", "func")  # detach order: probes, then programs


def _attachments(b: Any) -> set[tuple[str, Any]]:
    return ({("uprobe", k) for k in b.uprobe_fds} | {("tracepoint", k) for k in b.tracepoint_fds}
            | {("perf", k) for k in b.open_perf_events} | {("func", k) for k in b.funcs})


def _detach(prog: SharedProgram, token: object) -> None:
    """Detach what one collector run attached to a shared module and unload
    its programs (the kernel frees a program when its last fd closes)."""
    b = prog.bpf
    mine = sorted((k for k, t in prog.claims.items() if t is token),
                  key=lambda k: _KINDS.index(k[0]))
    for kind, key in mine:
        del prog.claims[(kind, key)]
        try:
            if kind == "uprobe":
                b.detach_uprobe_event(key)
            elif kind == "tracepoint":
                b.detach_tracepoint(key)
            elif kind == "perf":
                b.detach_perf_event(*key)
            else:
                fn = b.funcs.pop(key, None)
                if fn is not None:
                    os.close(fn.fd)
        except Exception:
            pass  # already gone (bcc raises when it is not attached)


def _release(prog: SharedProgram, token: object, c_file: str) -> None:
    with BCC_LOCK:
        _detach(prog, token)
        if prog.owners.get(c_file) is token:
            del prog.owners[c_file]
        prog.users.discard(token)
        _free_unused()


def _free_unused() -> None:
    """Release the modules no collector uses, unless a start is waiting."""
    with BCC_LOCK:
        if _waiting[0]:
            return
        for prog in [p for p in _shared if not p.users]:
            _shared.remove(prog)
            _cleanup(prog.bpf)


class BccCollector(Collector):
    """A collector whose eBPF C lives in ``bpf/collectors/<c_file>``.

    Subclasses set ``c_file``, implement ``defines()`` (the ``#define`` lines
    that specialise the program for this target) and ``attach()``; the C is
    read with pkgutil so it also loads from the shipped bundle. Collectors of
    one target share one compiled module (``SharedProgram``); ``attach()``
    attaches only this collector's programs and ``stop()`` detaches exactly
    what ``attach()`` attached, so names of programs, maps and probes must be
    unique across collectors (the ``gkd_`` prefix and the collector's own).
    """

    needs_bcc = True
    c_file = ""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.bpf: Any = None
        self.attached = 0
        self._program: SharedProgram | None = None
        self._token: object | None = None

    def defines(self) -> dict[str, Any]:
        return {}

    def raw_c(self) -> str:
        raw = pkgutil.get_data("bpf.collectors", self.c_file)
        if raw is None:
            raise CollectorError("bpf_missing", f"{self.c_file} is missing from the agent",
                                 "reinstall or re-ship the agent")
        return raw.decode()

    def ebpf_text(self) -> str:
        head = "".join(f"#define {k} {v}\n" for k, v in self.defines().items())
        return head + self.raw_c()

    def _compile_error(self, e: Exception) -> CollectorError:
        return CollectorError(
            "bpf_compile",
            f"{self.name}: bcc could not compile or load its program: {e}",
            "check the kernel headers (see the agent's first log lines) and that the "
            "agent runs as root",
        )

    def compile(self) -> tuple[SharedProgram, bool]:
        """The shared module serving this collector (compiled when there is
        none yet) and whether it was compiled now. Call with BCC_LOCK held."""
        prepare()
        for prog in _shared:
            if prog.serves(self):
                return prog, False
        cls = bpf_class()
        defines, parts = shared_parts(self)
        try:
            b = cls(text=program_text(defines, parts))
        except Exception as e:
            if len(parts) == 1:
                raise self._compile_error(e) from None
            # Another collector's C must not keep this one off: compile alone.
            defines, parts = self.defines(), [self]
            try:
                b = cls(text=self.ebpf_text())
            except Exception as e2:
                raise self._compile_error(e2) from None
        _stats["compiles"] += 1
        prog = SharedProgram(b, [p.c_file for p in parts], defines)
        _shared.append(prog)
        return prog, True

    def reset_maps(self) -> None:
        """Empty this collector's maps (a shared module outlives a collector
        that was switched off: its next run must not count the old data)."""
        for name in map_names(self.raw_c()):
            try:
                self.bpf[name].clear()
            except Exception:
                pass  # best effort: stale counts only skew the first interval

    def attach(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        compiled = False
        with _pending_guard:
            _waiting[0] += 1
        try:
            BCC_LOCK.acquire()
        finally:
            with _pending_guard:
                _waiting[0] -= 1
        try:  # compile and attach call into libbcc (see BCC_LOCK)
            _run_pending()
            try:
                prog, compiled = self.compile()
                token = self._token = object()
                self._program = prog
                prog.users.add(token)
                old = prog.owners.get(self.c_file)
                if old is not None:
                    # An earlier run of this collector still holds its programs
                    # (switched off while it started; its undo comes later). Its
                    # probes go now: one program cannot be attached twice to a
                    # tracepoint (EEXIST), and only one run may drain the maps.
                    _detach(prog, old)
                prog.owners[self.c_file] = token
                self.bpf = prog.bpf
                if not compiled:
                    self.reset_maps()
                before = _attachments(self.bpf)
                try:
                    self.attach()
                finally:
                    for k in _attachments(self.bpf) - before:
                        prog.claims[k] = token
            except CollectorError:
                self.stop()
                raise
            except Exception as e:
                self.stop()
                raise CollectorError("attach_failed", f"{self.name}: could not attach: {e}",
                                     "is the target still running? the agent must run as "
                                     "root") from None
            finally:
                _free_unused()  # kept for this start, then unused (another target)
                release_memory()
                if compiled:
                    drop_compiler_pages()
        finally:
            BCC_LOCK.release()

    def poll(self) -> list[Frame]:
        """``read_frames()`` under the bcc lock; no frames this interval while
        another collector compiles (the counts stay in the maps for the next)."""
        if self.bpf is None or not BCC_LOCK.acquire(blocking=False):
            return []
        try:
            _run_pending()
            if self.bpf is None:
                return []
            return self.read_frames()
        finally:
            BCC_LOCK.release()

    def read_frames(self) -> list[Frame]:
        """Read the maps into frames (called with the bcc lock held)."""
        return []

    # -- uprobes on Go functions ---------------------------------------------------------

    def go_function(self, func: str) -> tuple[int, int, Any]:
        """``(start, end, binary)`` of a function in the target's binary, from
        .symtab or the pclntab (stripped binaries)."""
        from bpf.symbols import ElfError, open_binary

        try:
            b = open_binary(self.target.exe)
        except (OSError, ElfError) as e:
            raise CollectorError("no_binary", f"cannot read the target's binary "
                                 f"{self.target.exe}: {e}", "is the target still running?") \
                from None
        r = b.find_function(func)
        if r is None or r[1] <= r[0]:
            raise CollectorError(
                "no_symbol",
                f"{func} is not in the target's binary (Go {b.go_version or 'version unknown'})",
                "this collector needs a Go program built by the gc toolchain, Go 1.18 or newer",
            )
        return r[0], r[1], b

    def attach_uprobe_at(self, addr: int, fn_name: str) -> None:
        """An entry uprobe at link-time address ``addr`` of the target's
        binary, for the target's pid only (other pods running the same image
        share the inode and must not pay the trap)."""
        self.bpf.attach_uprobe(name=self.target.exe, addr=addr, fn_name=fn_name,
                               pid=int(self.target.pid))
        self.attached += 1

    def stop(self) -> int:
        """Detach what this collector attached (now, or queued while another
        collector compiles); the module goes with its last user."""
        prog, self._program = self._program, None
        token, self._token = self._token, None
        self.bpf = None
        n, self.attached = self.attached, 0
        if prog is not None:
            run_locked(lambda: _release(prog, token, self.c_file))
        return n
