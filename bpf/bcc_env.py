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
# keeps sending the other collectors' frames), cleanup in stop(). Re-entrant:
# a start that fails stops itself while holding it.
BCC_LOCK = threading.RLock()
_BCC_LOCK = BCC_LOCK  # the old name

# cleanup() calls handed to a thread because the lock was busy (stop() from
# the main loop during another collector's compile); the agent waits for them.
_pending_cleanups: list[threading.Thread] = []


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
    """Wait for deferred bcc cleanups; True when none is still running."""
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


class BccCollector(Collector):
    """A collector whose eBPF C lives in ``bpf/collectors/<c_file>``.

    Subclasses set ``c_file``, implement ``defines()`` (the ``#define`` lines
    that specialise the program for this target) and ``attach()``; the C is
    read with pkgutil so it also loads from the shipped bundle.
    """

    needs_bcc = True
    c_file = ""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.bpf: Any = None
        self.attached = 0

    def defines(self) -> dict[str, Any]:
        return {}

    def ebpf_text(self) -> str:
        raw = pkgutil.get_data("bpf.collectors", self.c_file)
        if raw is None:
            raise CollectorError("bpf_missing", f"{self.c_file} is missing from the agent",
                                 "reinstall or re-ship the agent")
        head = "".join(f"#define {k} {v}\n" for k, v in self.defines().items())
        return head + raw.decode()

    def compile(self) -> Any:
        prepare()
        from bcc import BPF  # lazily: the agent lists collectors where bcc is missing

        text = self.ebpf_text()
        try:
            with BCC_LOCK:
                self.bpf = BPF(text=text)
        except Exception as e:
            raise CollectorError(
                "bpf_compile",
                f"{self.name}: bcc could not compile or load its program: {e}",
                "check the kernel headers (see the agent's first log lines) and that the "
                "agent runs as root",
            ) from None
        return self.bpf

    def attach(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        with BCC_LOCK:  # compile and attach call into libbcc (see BCC_LOCK)
            try:
                self.compile()
                self.attach()
            except CollectorError:
                self.stop()
                raise
            except Exception as e:
                self.stop()
                raise CollectorError("attach_failed", f"{self.name}: could not attach: {e}",
                                     "is the target still running? the agent must run as "
                                     "root") from None
            finally:
                release_memory()

    def poll(self) -> list[Frame]:
        """``read_frames()`` under the bcc lock; no frames this interval while
        another collector compiles (the counts stay in the maps for the next)."""
        if self.bpf is None or not BCC_LOCK.acquire(blocking=False):
            return []
        try:
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
        b, self.bpf = self.bpf, None
        n, self.attached = self.attached, 0
        if b is None:
            return n
        if BCC_LOCK.acquire(blocking=False):
            try:
                _cleanup(b)
            finally:
                BCC_LOCK.release()
        else:
            # Another collector is compiling: detach when it is done, without
            # stalling the caller (the agent's main loop).
            t = threading.Thread(target=_cleanup, args=(b,), name=f"cleanup-{self.name}",
                                 daemon=True)
            _pending_cleanups.append(t)
            t.start()
        return n
