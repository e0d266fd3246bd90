"""The node agent: watch one Go process, stream frames on stdout, take commands on stdin.

Run as root on the node where the pod runs::

    python3 -m bpf.agent --pid N
    python3 -m bpf.agent --pod-uid UID [--container NAME | --container-id ID]
        [--interval 1.0] [--hz 49] [--pprof-port 6060] [--enable futex,...] [--disable ...]

Frames (``bpf.schema``) go to stdout, one JSON line each, from one writer.
Nothing else ever reaches stdout: file descriptor 1 is pointed at stderr at
start (bcc and libraries print), and frames go to a private duplicate.
The first frame is ``hello``; the last is ``bye``.

The agent exits, stopping every collector it started (which detaches their
probes), when stdin closes, on ``stop``, on SIGTERM/SIGHUP/SIGINT, or when the
target dies (after a ``target_exit`` frame). Unexpected exceptions become an
``error`` frame, never a traceback on stdout.

A non-Go target is watched anyway: cgroup throttling still works; collectors
that need a Go binary (pprof, Go uprobes) are reported unavailable, and one
``error`` frame (code ``not_go``, not fatal) says why.

Fields beyond bpf.schema's required ones (consoles may ignore them):

- hello: ``interval_ns``, ``hz``, ``pprof_port``, ``profiles`` (available,
  kinds), ``python``, ``agent_pid``,
  ``clock_uncertainty_ns``; ``target`` is None when resolution failed (a fatal
  ``error`` follows); each collector: name, cost, default_on, needs_bcc,
  available, state, reason.
- error: ``collector`` (which collector failed), ``id`` (of the profile command).
- log: ``pong`` (the id of a ``ping``); after ``set``: ``hz``, ``interval_ns``.
- profile: ``samples`` (sample count in the profile).
- target_exit: ``pid`` and, when the kernel still had it, ``exit_code`` or ``signal``.

Exit codes: 0 after a normal stop (stdin closed, ``stop``, a signal, the
target exited), 2 when the target could not be resolved, 1 on an internal error.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import platform
import queue
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

from bpf import schema
from bpf.clock import Clock
from bpf.collectors.base import Collector, CollectorError
from bpf.collectors.goroutines import DEFAULT_PPROF_PORT, find_pprof_port
from bpf.collectors.profiles import ProfileFetcher
from bpf.target import Target, TargetError, resolve

# When this module was imported (monotonic), for the hello's start-up timings.
_IMPORTED_AT = time.monotonic()
# When a standby agent got its real arguments (None: not started as a standby).
_STANDBY_SINCE: float | None = None

AGENT_VERSION = "0.1.0"
DEFAULT_HZ = 49
MAX_HZ = 99
MIN_INTERVAL_S = 0.1
MAX_INTERVAL_S = 60.0
# How often the main loop wakes up to notice signals while it waits.
WAKE_S = 0.1
# How often the loop checks that the target still runs.
TARGET_CHECK_S = 0.5
# The first poll, this soon after the collectors started (then every interval).
FIRST_POLL_S = 0.25
# Start failures that say "not now" rather than "never" (an app too busy to answer
# its pprof in time): the collector is started again, a few times.
TRANSIENT_START_ERRORS = ("pprof_failed",)
START_RETRIES = 3
START_RETRY_S = 1.0

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_TARGET = 2


class FrameWriter:
    """Writes frames, one line each, from any thread; drops frames after ``close``."""

    def __init__(self, fd: int) -> None:
        self._f = os.fdopen(fd, "wb", buffering=0)
        self._lock = threading.Lock()
        self.closed = False
        self.broken = False

    def write(self, frame: dict[str, Any]) -> bool:
        data = schema.encode(frame).encode("ascii")
        with self._lock:
            if self.closed:
                return False
            try:
                view = memoryview(data)
                while view:
                    n = self._f.write(view)
                    view = view[n:]
            except OSError:
                # The console went away (broken pipe): nothing more can be said.
                self.closed = self.broken = True
                return False
        return True

    def close(self) -> None:
        with self._lock:
            self.closed = True
            try:
                self._f.close()
            except OSError:
                pass


class _Slot:
    """One collector as the agent tracks it."""

    def __init__(self, name: str, cls: type | None, reason: str = "") -> None:
        self.name = name
        self.cls = cls
        self.instance: Collector | None = None
        self.state = "off"
        self.reason = reason
        self.available = cls is not None and not reason
        self.started_once = False
        self.start_retries = 0

    def describe(self) -> dict[str, Any]:
        cls = self.cls
        return {
            "name": self.name,
            "cost": getattr(cls, "cost", ""),
            "default_on": bool(getattr(cls, "default_on", False)),
            "needs_bcc": bool(getattr(cls, "needs_bcc", False)),
            "available": self.available,
            "state": self.state,
            "reason": self.reason,
        }


def _bcc_missing_reason() -> str | None:
    try:
        found = importlib.util.find_spec("bcc") is not None
    except (ImportError, ValueError):
        found = False
    if found:
        return None
    return (
        f"bcc is not importable by {sys.executable}: install Debian's python3-bpfcc "
        "(not the unrelated PyPI package named bcc) and run the agent with /usr/bin/python3"
    )


def discover_collector(name: str) -> tuple[type | None, str]:
    """(class, reason-unavailable) for ``bpf.collectors.<name>``."""
    try:
        mod = importlib.import_module("bpf.collectors." + name)
    except ModuleNotFoundError as e:
        if e.name in ("bpf.collectors." + name,):
            return None, "this agent build has no such collector"
        return None, f"cannot load: {e}"
    except Exception as e:  # a broken collector must not take the agent down
        return None, f"cannot load: {e!r}"
    cls = getattr(mod, "COLLECTOR", None)
    if cls is None:
        for v in vars(mod).values():
            if isinstance(v, type) and issubclass(v, Collector) and getattr(v, "name", "") == name:
                cls = v
                break
    if cls is None:
        return None, f"bpf.collectors.{name} defines no COLLECTOR"
    return cls, ""


def ensure_tracefs() -> list[str]:
    """Mount tracefs and debugfs when missing (tracepoints need them); what was done.

    Uses ``bpf.bcc_env.ensure_tracefs`` when that module provides it.
    """
    try:
        from bpf import bcc_env  # engineer 5's headers/tracefs helpers, when shipped
    except Exception:
        bcc_env = None
    fn = getattr(bcc_env, "ensure_tracefs", None)
    if callable(fn):
        try:
            out = fn()
            if isinstance(out, (list, tuple)):
                return [str(x) for x in out]
            return [str(out)] if out else []
        except Exception as e:
            return [f"bcc_env.ensure_tracefs failed: {e!r}"]
    msgs = []
    for fstype, path, probe in (
        ("tracefs", "/sys/kernel/tracing", "/sys/kernel/tracing/events"),
        ("debugfs", "/sys/kernel/debug", "/sys/kernel/debug/tracing"),
    ):
        if os.path.exists(probe):
            continue
        r = subprocess.run(["mount", "-t", fstype, fstype, path], capture_output=True, text=True)
        if r.returncode == 0:
            msgs.append(f"mounted {fstype} at {path} (it was missing; tracepoints need it)")
        else:
            msgs.append(f"could not mount {fstype} at {path}: {r.stderr.strip() or r.returncode}")
    return msgs


class Agent:
    """The main loop: collectors polled once per interval, never overlapping."""

    def __init__(self, args: argparse.Namespace, writer: FrameWriter) -> None:
        self.args = args
        self.writer = writer
        self.clock = Clock()
        self.interval = min(MAX_INTERVAL_S, max(MIN_INTERVAL_S, float(args.interval)))
        self.hz = min(MAX_HZ, max(1, int(args.hz)))
        self.pprof_port = int(args.pprof_port or DEFAULT_PPROF_PORT)
        self.target: Target | None = None
        self.slots: dict[str, _Slot] = {}
        self.profiles: ProfileFetcher | None = None
        self.commands: queue.Queue = queue.Queue()
        self.stop_reason: str | None = None
        self.detached = 0
        self._bcc_prepared = False
        # Guards slot state between the main loop and collector-starting threads.
        self._lock = threading.RLock()
        self._starters: list[threading.Thread] = []
        #: Seconds each start-up step took (resolve, discover, ...), said in the hello.
        self.steps: dict[str, float] = {}
        #: Collectors to start again (a transient failure at start): name -> (when, why).
        self._retry_at: dict[str, tuple[float, str]] = {}

    # --- output -------------------------------------------------------------------------------

    def emit(self, frame: dict[str, Any]) -> None:
        if not self.writer.write(frame) and self.writer.broken and self.stop_reason is None:
            self.stop_reason = "console gone (stdout closed)"

    def frame(self, kind: str, **fields: Any) -> None:
        self.emit(schema.make_frame(kind, t=self.clock.now_ns(), **fields))

    def log(self, level: str, msg: str, **extra: Any) -> None:
        self.frame("log", level=level, msg=msg, **extra)

    def error(self, code: str, msg: str, hint: str = "", fatal: bool = False, **extra: Any) -> None:
        self.frame("error", code=code, msg=msg, hint=hint, fatal=fatal, **extra)

    def options(self) -> dict[str, Any]:
        return {
            "hz": self.hz,
            "interval": self.interval,
            "pprof_port": self.pprof_port,
            "clock": self.clock,
        }

    # --- set-up -------------------------------------------------------------------------------

    def discover(self) -> None:
        bcc_reason: str | None = None
        bcc_checked = False
        for name in schema.COLLECTORS:
            cls, reason = discover_collector(name)
            if cls is not None and not reason:
                if getattr(cls, "needs_bcc", False):
                    if not bcc_checked:
                        bcc_reason, bcc_checked = _bcc_missing_reason(), True
                    reason = bcc_reason or ""
                if not reason:
                    try:
                        reason = cls.unavailable_reason(self.target) or ""
                    except Exception as e:
                        reason = f"cannot check availability: {e!r}"
            self.slots[name] = _Slot(name, cls, reason)

    def wanted(self) -> list[str]:
        enable = _csv(self.args.enable)
        disable = _csv(self.args.disable)
        for n in enable + disable:
            if n not in self.slots:
                self.error(
                    "bad_option",
                    f"unknown collector {n!r} in --enable/--disable",
                    "collectors: " + ", ".join(self.slots),
                )
        names = []
        for name, slot in self.slots.items():
            on = bool(getattr(slot.cls, "default_on", False)) if slot.cls else False
            if name in enable:
                on = True
            if name in disable:
                on = False
            if on:
                names.append(name)
        return names

    def hello(self) -> None:
        target = None
        if self.target is not None:
            target = self.target.describe()
        self.frame(
            "hello",
            agent=AGENT_VERSION,
            host=socket.gethostname(),
            kernel=platform.release(),
            target=target,
            collectors=[s.describe() for s in self.slots.values()],
            clock_offset_ns=self.clock.offset_ns,
            clock_uncertainty_ns=self.clock.uncertainty_ns,
            interval_ns=int(self.interval * 1e9),
            hz=self.hz,
            pprof_port=self.pprof_port,
            profiles={
                "available": self.target is not None and self.target.is_go is not False,
                "kinds": list(schema.PROFILE_KINDS),
            },
            python=platform.python_version(),
            agent_pid=os.getpid(),
            startup=self.startup_timings(),
        )

    def startup_timings(self) -> dict[str, Any]:
        """Seconds from each start-up point to now (the hello), for attach benchmarks.

        ``process``: since the process was forked (over SSH that includes the
        login shell that exec'd the agent); ``boot``: since the bundle's boot
        code ran (None from a checkout); ``agent``: since this module was
        imported; ``standby``: since a standby agent got its arguments (None
        when it was not started ahead); plus how long each step before the
        hello took.
        """
        now = time.monotonic()
        boot = getattr(sys.modules.get("__main__"), "BOOT_AT", None)
        out: dict[str, Any] = {
            "process": _process_age_s(),
            "boot": round(now - boot, 4) if isinstance(boot, float) else None,
            "agent": round(now - _IMPORTED_AT, 4),
            "standby": None if _STANDBY_SINCE is None else round(now - _STANDBY_SINCE, 4),
        }
        out.update({k: round(v, 4) for k, v in self.steps.items()})
        return out

    def discover_pprof_port(self) -> str | None:
        """Without --pprof-port: keep 6060 if it serves pprof, else look at the
        pod's other listening ports (apps put pprof on many ports). Returns
        what to log (the caller logs it after the hello frame)."""
        from bpf.netns_http import HttpError, http_get

        t = self.target
        try:
            http_get(t.netns, self.pprof_port, "/debug/pprof/", timeout=1.0, max_bytes=1 << 20)
            return None
        except HttpError:
            pass
        try:
            port = find_pprof_port(t.netns, t.pid, skip=self.pprof_port)
        except Exception as e:
            return f"looking for the app's pprof port failed: {e!r}"
        if port is None:
            return None
        self.pprof_port = port
        return f"the app serves pprof on port {port} (not {DEFAULT_PPROF_PORT})"

    # --- collectors ---------------------------------------------------------------------------

    def _prepare_bcc(self) -> None:
        with self._lock:
            if self._bcc_prepared:
                return
            self._bcc_prepared = True
        for msg in ensure_tracefs():
            self.log("warn" if msg.startswith("could not") else "info", msg)

    def start_collector(self, name: str, why: str = "") -> bool:
        """Start a collector. bcc collectors start in a thread of their own
        (compiling takes seconds) so the cheap collectors' frames keep flowing;
        they are polled once they are on."""
        slot = self.slots.get(name)
        if slot is None:
            self.error(
                "bad_command", f"unknown collector {name!r}", "collectors: " + ", ".join(self.slots)
            )
            return False
        if slot.state in ("on", "starting"):
            self.frame("collector", name=name, state="on", reason="already " + slot.state)
            return True
        if not slot.available or slot.cls is None:
            self.frame("collector", name=name, state="off", reason="unavailable: " + slot.reason)
            return False
        slot.state = "starting"
        if getattr(slot.cls, "needs_bcc", False):
            self.log("info", f"starting {name}: bcc compiles its eBPF program (a few seconds)")
            t = threading.Thread(
                target=self._start_slot, args=(slot, why), name=f"start-{name}", daemon=True
            )
            self._starters.append(t)
            t.start()
            return True
        return self._start_slot(slot, why)

    def _start_slot(self, slot: _Slot, why: str) -> bool:
        name = slot.name
        inst = None
        try:
            if getattr(slot.cls, "needs_bcc", False):
                self._prepare_bcc()
            inst = slot.cls(self.target, self.options(), self.emit)
            slot.started_once = True
            inst.start()
        except Exception as e:
            code, msg, hint = (
                (e.code, e.msg, e.hint)
                if isinstance(e, CollectorError)
                else (
                    "collector_crashed",
                    f"{name} failed to start: {e!r}",
                    "report this as a bug; the other collectors keep running",
                )
            )
            with self._lock:
                slot.instance = inst
                if slot.state == "starting" and self.stop_reason is None:
                    if code in TRANSIENT_START_ERRORS and slot.start_retries < START_RETRIES:
                        # A busy or throttled app answered too slowly: not a reason
                        # to lose its numbers for the whole session.
                        self._detach(slot)
                        slot.start_retries += 1
                        slot.state, slot.reason = "off", msg
                        self._retry_at[name] = (time.monotonic() + START_RETRY_S, why)
                        self.log("warn", f"{name} could not start yet ({msg}); trying again "
                                 f"in {START_RETRY_S:g} s")  # fmt: skip
                        return False
                    self._fail(slot, code, msg, hint)
                    return False
            self._detach(slot)
            return False
        with self._lock:
            if slot.state == "starting" and self.stop_reason is None:
                slot.instance = inst
                slot.state, slot.reason = "on", why
                self.frame("collector", name=name, state="on", reason=why)
                return True
        # Disabled, or the agent began to exit, while it started: undo it.
        try:
            self.detached += int(inst.stop() or 0)
        except Exception as e:
            self.log("error", f"{name}: stop failed: {e!r}")
        return False

    def _detach(self, slot: _Slot) -> None:
        inst, slot.instance = slot.instance, None
        if inst is None:
            return
        try:
            self.detached += int(inst.stop() or 0)
        except Exception as e:
            self.log("error", f"{slot.name}: stop failed: {e!r}")

    def _fail(self, slot: _Slot, code: str, msg: str, hint: str) -> None:
        self._detach(slot)
        slot.state, slot.reason = "failed", msg
        self.error(code, msg, hint, collector=slot.name)
        self.frame("collector", name=slot.name, state="failed", reason=msg)

    def stop_collector(self, name: str, why: str) -> None:
        slot = self.slots.get(name)
        if slot is None:
            self.error(
                "bad_command", f"unknown collector {name!r}", "collectors: " + ", ".join(self.slots)
            )
            return
        self._retry_at.pop(name, None)  # disabled: no pending second try
        with self._lock:
            self._detach(slot)
            if slot.state != "failed" or why:
                slot.state, slot.reason = "off", why
        self.frame("collector", name=name, state=slot.state, reason=slot.reason)

    def poll_all(self) -> None:
        for slot in self.slots.values():
            if slot.state != "on" or slot.instance is None or self.stop_reason:
                continue
            try:
                frames = slot.instance.poll()
            except CollectorError as e:
                if self.target is not None and not self.target.alive():
                    return  # the target died: report that, not the symptom
                self._fail(slot, e.code, e.msg, e.hint)
                continue
            except Exception as e:
                self._fail(
                    slot,
                    "collector_crashed",
                    f"{slot.name} failed: {e!r}",
                    "report this as a bug; the other collectors keep running",
                )
                continue
            for f in frames or ():
                self.emit(f)

    # --- commands -----------------------------------------------------------------------------

    def handle(self, cmd: dict[str, Any]) -> None:
        c = cmd.get("cmd")
        if c == "_eof":
            self.stop_reason = self.stop_reason or "stdin closed"
        elif c == "_bad":
            self.error("bad_command", cmd["msg"], "send one JSON command per line (bpf.schema)")
        elif c == "enable":
            self.start_collector(str(cmd["collector"]), "enabled by command")
        elif c == "disable":
            self.stop_collector(str(cmd["collector"]), "disabled by command")
        elif c == "set":
            self.set_options(cmd)
        elif c == "profile":
            if self.profiles is None:
                self.error(
                    "no_profiles",
                    "pprof profiles are unavailable for this target",
                    "the target is not a Go program",
                    id=cmd.get("id"),
                )
                return
            try:
                self.profiles.request(str(cmd["id"]), str(cmd["profile"]), cmd.get("seconds") or 0)
            except CollectorError as e:
                self.error(e.code, e.msg, e.hint, id=cmd.get("id"), collector="profiles")
        elif c == "ping":
            self.log("info", "pong", pong=cmd.get("id"))
        elif c == "stop":
            self.stop_reason = self.stop_reason or "stop command"

    def set_options(self, cmd: dict[str, Any]) -> None:
        changes: dict[str, Any] = {}
        try:
            if "hz" in cmd:
                self.hz = min(MAX_HZ, max(1, int(cmd["hz"])))
                changes["hz"] = self.hz
            if "interval_ms" in cmd:
                s = float(cmd["interval_ms"]) / 1000.0
                self.interval = min(MAX_INTERVAL_S, max(MIN_INTERVAL_S, s))
                changes["interval"] = self.interval
        except (TypeError, ValueError):
            self.error("bad_command", f"bad set command: {cmd!r}", "hz and interval_ms are numbers")
            return
        if not changes:
            return
        for slot in self.slots.values():
            if slot.state == "on" and slot.instance is not None:
                try:
                    restart = slot.instance.configure(dict(changes))
                except Exception as e:
                    self._fail(slot, "collector_crashed", f"{slot.name} configure: {e!r}", "")
                    continue
                if restart:
                    self._detach(slot)
                    slot.state = "off"
                    self.start_collector(slot.name, "restarted for new settings")
        shown = ", ".join(
            f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in changes.items()
        )
        self.log(
            "info", f"settings changed: {shown}", hz=self.hz, interval_ns=int(self.interval * 1e9)
        )

    # --- the loop -----------------------------------------------------------------------------

    def check_target(self) -> bool:
        """False (after a target_exit frame) once the target is gone."""
        t = self.target
        if t is None or t.alive():
            return True
        from bpf.target import read_stat

        st = read_stat(t.pid)
        fields: dict[str, Any] = {"pid": t.pid}
        if st is not None and st[1] == t.starttime and st[0] in ("Z", "X") and st[2] is not None:
            status = st[2]
            if status & 0x7F:
                fields["signal"] = status & 0x7F
                what = f"killed by signal {status & 0x7F}"
            else:
                fields["exit_code"] = (status >> 8) & 0xFF
                what = f"exited with code {(status >> 8) & 0xFF}"
        else:
            what = "exited"
        self.frame("target_exit", reason=f"pid {t.pid} ({t.comm}) {what}", **fields)
        self.stop_reason = self.stop_reason or "target exited"
        return False

    def run(self) -> None:
        """Poll until a stop reason appears; the caller then calls ``shutdown``."""
        # The first numbers come soon after attach, not a whole interval later;
        # each frame states its own (shorter) interval, so rates stay right.
        next_tick = time.monotonic() + min(self.interval, FIRST_POLL_S)
        last_check = time.monotonic()
        while self.stop_reason is None:
            now = time.monotonic()
            for name, (when, why) in list(self._retry_at.items()):
                if now >= when:
                    del self._retry_at[name]
                    if self.slots[name].state == "off":  # not disabled meanwhile
                        self.start_collector(name, why)
            if now - last_check >= TARGET_CHECK_S:
                # Between polls too: a long interval must not hide a dead target.
                last_check = now
                if not self.check_target():
                    break
            if now < next_tick:
                try:
                    cmd = self.commands.get(timeout=min(WAKE_S, next_tick - now))
                except queue.Empty:
                    continue
                try:
                    self.handle(cmd)
                except Exception as e:  # one odd command must not end the session
                    self.error("bad_command", f"command {cmd.get('cmd')!r} failed: {e!r}",
                               "report this as a bug")
                continue
            if not self.check_target():
                break
            self.poll_all()
            old_offset = self.clock.offset_ns
            if self.clock.maybe_remeasure():
                step = self.clock.offset_ns - old_offset
                if abs(step) > 1_000_000:  # NTP stepped the wall clock: frame times jump
                    self.log(
                        "info",
                        f"wall clock stepped by {step / 1e6:+.1f} ms",
                        clock_offset_ns=self.clock.offset_ns,
                    )
            # Armed after the poll finished: polls never overlap or pile up.
            next_tick = max(next_tick + self.interval, time.monotonic() + self.interval / 4)

    def shutdown(self, reason: str) -> None:
        with self._lock:
            self.stop_reason = self.stop_reason or reason
        # A bcc compile cannot be interrupted; wait for it, then detach what it attached.
        deadline = time.monotonic() + 60
        for t in self._starters:
            t.join(max(0.0, deadline - time.monotonic()))
        for slot in self.slots.values():
            if slot.instance is not None:
                self._detach(slot)
        if "bpf.bcc_env" in sys.modules:
            # Detaches handed to a thread while another collector compiled.
            sys.modules["bpf.bcc_env"].wait_for_cleanups(max(5.0, deadline - time.monotonic()))
        if self.profiles is not None:
            try:
                self.profiles.stop()
            except Exception:
                pass
        self.frame("bye", reason=reason, detached=self.detached)


def _process_age_s() -> float | None:
    """Seconds since this process was forked (/proc/self/stat starttime), or None."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        now = time.clock_gettime(time.CLOCK_BOOTTIME)
        return round(now - start_ticks / os.sysconf("SC_CLK_TCK"), 3)
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def _csv(values: list[str] | None) -> list[str]:
    out = []
    for v in values or ():
        out.extend(x.strip() for x in v.split(",") if x.strip())
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python3 -m bpf.agent",
        description="go-k8s-debug node agent: eBPF, cgroup and pprof frames for one process",
    )
    p.add_argument("--pid", type=int, help="host pid of the process to watch")
    p.add_argument("--pod-uid", help="the pod's UID (metadata.uid)")
    p.add_argument("--container", help="container name (to pick one of several containers)")
    p.add_argument("--container-id", help="container ID (containerd://... or the bare ID)")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between frames (1.0)")
    p.add_argument("--hz", type=int, default=DEFAULT_HZ, help=f"CPU sampling rate ({DEFAULT_HZ})")
    p.add_argument(
        "--pprof-port",
        type=int,
        default=None,
        help="the app's pprof port (default 6060, else the first port in the pod "
        "that serves /debug/pprof/)",
    )
    p.add_argument("--enable", action="append", help="collectors to turn on (comma list)")
    p.add_argument("--disable", action="append", help="collectors to turn off (comma list)")
    p.add_argument("--ebpf", action="store_true", help=argparse.SUPPRESS)
    # Started ahead of need by the SSH transport: imports done, it waits for its
    # real arguments (one JSON list on stdin) and then runs as if started with them.
    p.add_argument("--standby", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def print_ebpf(args: argparse.Namespace) -> int:
    """The hidden ``--ebpf``: print each eBPF collector's generated C and exit."""
    try:
        target = resolve(
            pid=args.pid,
            pod_uid=args.pod_uid,
            container=args.container,
            container_id=args.container_id,
        )
    except TargetError:
        target = resolve(pid=os.getpid())  # no target: show the programs for a placeholder
    opts = {
        "hz": args.hz,
        "interval": args.interval,
        "pprof_port": args.pprof_port or DEFAULT_PPROF_PORT,
        "clock": Clock(),
    }
    for name in schema.COLLECTORS:
        cls, reason = discover_collector(name)
        if cls is None or not getattr(cls, "needs_bcc", False):
            continue
        try:
            text = cls(target, opts).ebpf_text()
        except Exception as e:
            text = f"/* cannot generate: {e!r} */"
        sys.stdout.write(f"/* ---- {name} (pid {target.pid}) ---- */\n{text}\n")
    sys.stdout.flush()
    return EXIT_OK


def _install_signals(agent: Agent) -> None:
    def on_signal(signum: int, _frame: Any) -> None:
        # Only a flag: the loop wakes every WAKE_S and sees it (a handler must
        # not take locks the interrupted code may hold).
        if agent.stop_reason is None:
            agent.stop_reason = f"signal {signal.Signals(signum).name}"

    for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(s, on_signal)
    # A closed console pipe must surface as an OSError on write, not kill us.
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)


def _read_commands(agent: Agent, fd: int) -> None:
    """Read command lines from ``fd`` until EOF.

    Reads the raw descriptor, not ``sys.stdin``: a daemon thread blocked
    inside a buffered reader holds its lock, and the interpreter aborts at
    exit when it cannot take that lock to close stdin.
    """
    buf = b""
    try:
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            buf += chunk
            if len(buf) > schema.MAX_LINE_BYTES:
                agent.commands.put({"cmd": "_bad", "msg": "command line over the size limit"})
                buf = b""
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if not line.strip():
                    continue
                try:
                    agent.commands.put(schema.decode_command(line))
                except schema.FrameError as e:
                    agent.commands.put({"cmd": "_bad", "msg": f"bad command line: {e}"})
    except OSError:
        pass
    agent.commands.put({"cmd": "_eof"})


# A console closes an idle connection (and its standby) after 5 minutes; a standby
# still waiting long after that belongs to a console whose link died half-open.
STANDBY_MAX_WAIT_S = 1800.0


def wait_for_args(fd: int = 0, limit: int = 65536) -> list[str] | None:
    """A standby agent's real arguments: one JSON list of strings on one line.

    Reads byte by byte so nothing after the line is taken from the command
    stream that follows it. None when stdin closes first (never needed).
    """
    # The imports the run will need, done while nobody waits.
    for name in schema.COLLECTORS:
        discover_collector(name)
    buf = b""
    deadline = time.monotonic() + STANDBY_MAX_WAIT_S
    while not buf.endswith(b"\n"):
        try:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None  # its console is gone without closing the link: leave
            b = os.read(fd, 1)
        except OSError:
            return None
        if not b:
            return None
        buf += b
        if len(buf) > limit:
            raise ValueError("standby arguments over the size limit")
    argv = json.loads(buf.decode("utf-8"))
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        raise ValueError("standby arguments must be a JSON list of strings")
    return argv


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.standby:
        try:
            real = wait_for_args()
        except ValueError as e:
            sys.stderr.write(f"go-k8s-debug agent: bad standby arguments: {e}\n")
            return EXIT_INTERNAL
        if real is None:
            return EXIT_OK
        global _STANDBY_SINCE
        _STANDBY_SINCE = time.monotonic()
        args = parse_args(real)
    if args.ebpf:
        return print_ebpf(args)
    # Frames get a private copy of stdout; fd 1 itself now goes to stderr, so
    # whatever bcc, clang or a library prints can never corrupt the stream.
    frame_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    writer = FrameWriter(frame_fd)
    agent = Agent(args, writer)
    _install_signals(agent)
    code = EXIT_OK
    reason = "done"
    try:
        code, reason = _run(agent, args)
    except BaseException as e:  # last line of defence: a frame, never a traceback on stdout
        code, reason = EXIT_INTERNAL, "internal error"
        try:
            agent.error("internal", f"the agent failed: {e!r}", "report this as a bug", fatal=True)
        except Exception:
            pass
    finally:
        try:
            agent.shutdown(reason if agent.stop_reason is None else agent.stop_reason)
        except Exception:
            pass
        writer.close()
    if any(t.is_alive() for t in agent._starters):
        # A compile outlived shutdown's wait (a very loaded node). Exiting
        # normally would run LLVM's static destructors under that thread and
        # crash (SIGSEGV); leave at once: the kernel detaches what the process
        # attached when its descriptors close.
        sys.stderr.flush()
        os._exit(code)
    return code


def _run(agent: Agent, args: argparse.Namespace) -> tuple[int, str]:
    mark = time.monotonic()

    def step(name: str) -> None:
        nonlocal mark
        now = time.monotonic()
        agent.steps[name] = now - mark
        mark = now

    try:
        agent.target = resolve(
            pid=args.pid,
            pod_uid=args.pod_uid,
            container=args.container,
            container_id=args.container_id,
        )
    except TargetError as e:
        agent.discover()
        agent.hello()
        agent.error(e.code, e.msg, e.hint, fatal=True)
        agent.stop_reason = "no target"
        return EXIT_TARGET, "no target"
    step("resolve")
    agent.discover()
    step("discover")
    t = agent.target
    # Before hello, so that hello states the port in use; said in a log after it.
    port_msg = agent.discover_pprof_port() if t.is_go and args.pprof_port is None else None
    step("pprof_port")
    agent.hello()
    if port_msg:
        agent.log("info", port_msg, pprof_port=agent.pprof_port)
    if t.is_go is False:
        agent.error(
            "not_go",
            f"pid {t.pid} ({t.comm}, {t.exe_in_container}) is not a Go program: "
            "the Go collectors (pprof, Go runtime uprobes) are unavailable",
            "cgroup throttling is still reported; point the agent at the Go container",
        )
    else:
        agent.profiles = ProfileFetcher(t, agent.options(), agent.emit)
    threading.Thread(
        target=_read_commands, args=(agent, sys.stdin.fileno()), name="stdin", daemon=True
    ).start()
    for name in agent.wanted():
        if agent.stop_reason:
            break
        agent.start_collector(
            name, "on by default" if name not in _csv(args.enable) else "enabled by --enable"
        )
    agent.run()
    return EXIT_OK, agent.stop_reason or "done"


if __name__ == "__main__":
    sys.exit(main())
