"""The attached pod: header, goroutines, throttling, futex, call tree, findings, log.

Frames are read from the session in a thread worker and folded into the
``SessionModel`` there. A refresh builds one frozen snapshot in a thread worker
and posts it; the screen renders it and only then arms the next refresh, so
refreshes never overlap and a slow one stretches the period (dolphie's loop).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Footer
from textual.worker import get_current_worker

from bpf import schema
from tui.models.calltree import WINDOWS
from tui.models.evidence import EvidenceBuffer
from tui.models.profile_schedule import ProfileSchedule
from tui.models.session_state import Header, SessionModel, SessionSnapshot
from tui.models.text import clean
from tui.sources.base import Session
from tui.widgets.call_tree import CallTreeWidget
from tui.widgets.findings_list import FindingsPane
from tui.widgets.log_pane import LogPane
from tui.widgets.panes import FutexPane, GoroutinePane, Pane, SessionHeader, ThrottlePane

FINDINGS_EVERY_S = 5.0


class SnapshotReady(Message):
    """A refresh built a snapshot (posted from the refresh worker thread)."""

    def __init__(
        self, snapshot: SessionSnapshot, build_s: float = 0.0, posted_at: float = 0.0
    ) -> None:
        super().__init__()
        self.snapshot = snapshot
        self.build_s = build_s
        self.posted_at = posted_at


# The session's link states (tui.session.LinkHealth) in the header's words.
_LINK_WORDS = {"attached": "live", "following": "following restart"}


def with_link_health(header: Header, session: Session) -> Header:
    """Fold what the session knows about its link into the header.

    Sessions with ``health()`` (``tui.session.AgentSession``) report state,
    transport description and bad lines; others may count ``unparsed`` lines.
    """
    health = getattr(session, "health", None)
    if not callable(health):
        extra = getattr(session, "unparsed", 0) or 0
        return replace(header, unparsed=header.unparsed + extra) if extra else header
    try:
        h = health()
    except Exception:  # noqa: BLE001 - the header must render whatever the link does
        return header
    changes: dict[str, Any] = {"unparsed": header.unparsed + int(getattr(h, "bad_lines", 0))}
    description = getattr(h, "description", "")
    if description:
        changes["transport"] = clean(description, 60)
    state = str(getattr(h, "state", ""))
    # While attached, the model's own view (live, or stale when frames stop) is better.
    if state and state != "attached" and header.link != "ended":
        changes["link"] = _LINK_WORDS.get(state, clean(state, 20))
        changes["link_detail"] = clean(getattr(h, "last_error", ""), 120)
    return replace(header, **changes)


class FramesEnded(Message):
    """The frame stream finished; refresh once more to show it."""


class CallTreePane(Pane):
    """The live call tree, labelled with its source and window."""

    def compose(self) -> ComposeResult:
        yield CallTreeWidget(id="calltree")

    def on_mount(self) -> None:
        self.border_title = "Call tree"

    def show(self, snap: SessionSnapshot, related: tuple[str, ...] = ()) -> None:
        view = snap.calltree
        self.border_title = f"Call tree — {view.source_label} — {view.window_label}"
        sub = "FROZEN (z)" if view.frozen else "live"
        if view.hidden_nodes:
            sub += f" · {view.hidden_nodes} small nodes hidden"
        self.border_subtitle = sub
        self.set_class(view.frozen, "frozen")
        self.query_one(CallTreeWidget).show(view, related)


class AttachedScreen(Screen[None]):
    """Everything about one attached pod, refreshed about once a second."""

    BINDINGS = [
        Binding("escape", "detach", "back"),
        Binding("z", "freeze", "freeze"),
        Binding("w", "cycle_window", "window"),
        Binding("1", "window('10s')", "10 s", show=False),
        Binding("2", "window('60s')", "60 s", show=False),
        Binding("3", "window('all')", "all", show=False),
        Binding("r", "reset", "reset"),
        Binding("f", "toggle_futex", "futex"),
        Binding("e", "export", "export"),
        Binding("question_mark", "app.help", "help"),
        Binding("T", "app.toggle_contrast", "contrast", show=False),
        Binding("q", "app.quit", "quit"),
        # Only on a replay (``go-k8s-debug replay``): pause and seek.
        Binding("p", "replay_pause", "pause"),
        Binding("left_square_bracket", "replay_seek(-10)", "-10 s"),
        Binding("right_square_bracket", "replay_seek(10)", "+10 s"),
    ]

    snapshot: reactive[SessionSnapshot | None] = reactive(None, always_update=True, init=False)
    """The snapshot every pane renders."""

    def __init__(
        self,
        session: Session,
        model: SessionModel,
        refresh_interval: float = 1.0,
        record: Any = None,
        export_dir: str | Path = ".",
    ) -> None:
        super().__init__()
        self.session = session
        self.export_dir = Path(export_dir)
        self.profiles = ProfileSchedule()
        self.evidence = EvidenceBuffer()
        self.last_export: Path | None = None
        self._profiles_stop_noted = False
        self.model = model
        self.refresh_interval = refresh_interval
        self.record = record
        self.related_path: tuple[str, ...] = ()
        self.refreshes = 0
        self.timings: deque[tuple[float, float, float]] = deque(maxlen=2000)
        self._last_apply_s = 0.0
        self._findings_at = 0.0
        self._frames_at_refresh = -1
        self._findings_cost_s = 0.0
        self._findings_running = threading.Event()
        self.findings_frames = -1  # frames seen when findings were last evaluated
        self._detaching = threading.Event()
        self._refresh_timer: Any = None

    def compose(self) -> ComposeResult:
        yield SessionHeader(id="session-header")
        with Horizontal(id="attached-body"):
            with Vertical(id="left-column"):
                yield GoroutinePane(id="goroutines")
                yield ThrottlePane(id="throttle")
                yield FutexPane(id="futex")
            yield CallTreePane(id="calltree-pane")
        with Horizontal(id="attached-bottom"):
            yield FindingsPane(id="findings")
            yield LogPane(id="log")
        yield Footer()

    def on_mount(self) -> None:
        self.read_frames()
        self.query_one(CallTreeWidget).focus()
        self._refresh_timer = self.set_timer(0.05, self.request_refresh)

    def on_unmount(self) -> None:
        self._detaching.set()
        if self._refresh_timer is not None:
            self._refresh_timer.stop()
        # A session may take seconds to detach the agent: never on the UI thread.
        threading.Thread(target=self._close_session, name="session-close", daemon=True).start()

    def _close_session(self) -> None:
        self.session.close()
        if self.record is not None:
            self.record.close()

    # ---- data ----------------------------------------------------------------

    @work(thread=True, exclusive=True, group="frames", exit_on_error=False)
    def read_frames(self) -> None:
        """Fold every frame of the session into the model (runs in a thread)."""
        worker = get_current_worker()
        reason = "the session ended"
        try:
            for frame in self.session.frames():
                if worker.is_cancelled or self._detaching.is_set():
                    return
                self.model.add(frame)
                self.profiles.observe(frame)
                self.evidence.add(frame)
                if self.record is not None:
                    self.record.write(dict(frame))
        except Exception as e:  # noqa: BLE001 - shown in the header and log, never a crash
            reason = f"the link failed: {e}"
        self.model.end(reason)
        self.post_message(FramesEnded())

    def request_refresh(self) -> None:
        """Build a snapshot now, unless one is being built (then it is skipped)."""
        self._refresh_timer = None
        if not self._detaching.is_set():
            self.build_snapshot()

    @work(thread=True, exclusive=False, group="refresh", exit_on_error=False)
    def build_snapshot(self) -> None:
        started = time.perf_counter()
        now = self.app.clock.now()
        frames = self.model.frames_seen
        # Rules run every few seconds, and once more when the stream goes quiet,
        # so the findings always cover the newest frames (a replay that ended).
        idle = frames == self._frames_at_refresh
        every = max(FINDINGS_EVERY_S, 10 * self._findings_cost_s)
        due = now - self._findings_at >= every or (idle and frames != self.findings_frames)
        if due and not self._findings_running.is_set():
            self._findings_at = now
            self._findings_running.set()
            self.evaluate_findings(frames)
        self._frames_at_refresh = frames
        self._ask_for_profiles(now)
        snap = self.model.snapshot(now)
        snap = replace(snap, header=with_link_health(snap.header, self.session))
        done = time.perf_counter()
        self.post_message(SnapshotReady(snap, done - started, done))

    def _ask_for_profiles(self, now: float) -> None:
        """Send the profile commands that are due (a replay has no agent to ask)."""
        if self._replay_session() is not None:
            return
        for cmd in self.profiles.due(now):
            try:
                self.session.send(cmd)
            except Exception as e:  # noqa: BLE001 - a dead link shows in the header
                self.model.note(now, "warn", f"could not ask the agent for a profile: {e}")
                return
        if self.profiles.state == "stopped" and not self._profiles_stop_noted:
            self._profiles_stop_noted = True
            self.model.note(
                now,
                "warn",
                f"not asking for pprof profiles any more: {clean(self.profiles.reason)}",
            )

    @work(thread=True, group="findings", exit_on_error=False)
    def evaluate_findings(self, frames: int) -> None:
        """Run the rules in their own thread: a slow evaluation never delays a refresh."""
        try:
            cost = time.thread_time()
            self.model.evaluate_findings()
            # Rules over a busy minute can take seconds: keep them under ~10 % of a core.
            self._findings_cost_s = time.thread_time() - cost
            self.findings_frames = frames
        finally:
            self._findings_running.clear()

    def on_snapshot_ready(self, message: SnapshotReady) -> None:
        self.snapshot = message.snapshot
        self.refreshes += 1
        # (build in the worker, wait for the UI thread, apply to the widgets), for benchmarks.
        waited = time.perf_counter() - message.posted_at - self._last_apply_s
        self.timings.append((message.build_s, max(0.0, waited), self._last_apply_s))
        if not self._detaching.is_set():
            # Armed only now that this refresh is on screen: refreshes never overlap.
            self._refresh_timer = self.set_timer(self.refresh_interval, self.request_refresh)

    def refresh_soon(self) -> None:
        """After a key changed the view: refresh now instead of at the next tick."""
        if self._refresh_timer is not None:
            self._refresh_timer.stop()
            self._refresh_timer = self.set_timer(0.01, self.request_refresh)

    def watch_snapshot(self, snap: SessionSnapshot | None) -> None:
        if snap is None:
            return
        started = time.perf_counter()
        self._apply(snap)
        self._last_apply_s = time.perf_counter() - started

    def _apply(self, snap: SessionSnapshot) -> None:
        with self.app.batch_update():
            self.query_one(SessionHeader).show(snap)
            self.query_one(GoroutinePane).show(snap)
            self.query_one(ThrottlePane).show(snap)
            self.query_one(FutexPane).show(snap)
            self.query_one(CallTreePane).show(snap, self.related_path)
            self.query_one(FindingsPane).show(snap)
            self.query_one(LogPane).show(snap)

    # ---- keys ----------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action.startswith("replay_"):
            return self._replay_session() is not None
        return True

    def _replay_session(self) -> Any:
        replay = getattr(self.app, "replay", None)
        session = getattr(replay, "current", None)
        return session if session is self.session and hasattr(session, "seek_by") else None

    def action_replay_pause(self) -> None:
        session = self._replay_session()
        if session is not None:
            paused = session.toggle_pause()
            self.model.note(
                self.app.clock.now(),
                "info",
                "replay paused (p to go on)" if paused else "replay resumed",
            )
            self.refresh_soon()

    def action_replay_seek(self, seconds: float) -> None:
        session = self._replay_session()
        if session is not None:
            session.seek_by(float(seconds))
            self.refresh_soon()

    def action_detach(self) -> None:
        self.app.detach()

    def action_freeze(self) -> None:
        frozen = not self.model.calltree.frozen
        self.model.freeze(frozen)
        self.model.note(
            self.app.clock.now(),
            "info",
            "call tree frozen (z to go live)" if frozen else "call tree live again",
        )
        self.refresh_soon()

    def action_window(self, window: str) -> None:
        if window not in WINDOWS:
            return
        self.model.set_window(window)
        self.refresh_soon()

    def action_cycle_window(self) -> None:
        names = list(WINDOWS)
        current = self.model.calltree.window
        self.action_window(names[(names.index(current) + 1) % len(names)])

    def action_reset(self) -> None:
        self.model.reset()
        self.query_one(CallTreeWidget).reset_expansion()
        self.model.note(self.app.clock.now(), "info", "call tree reset")
        self.refresh_soon()

    def action_toggle_futex(self) -> None:
        """Ask the agent to start or stop futex tracing (it answers with a collector frame)."""
        snap = self.snapshot
        on = snap is not None and snap.futex.state == "on"
        cmd = "disable" if on else "enable"
        if snap is not None and snap.futex.state == "unavailable":
            self.model.note(
                self.app.clock.now(), "warn", "futex tracing is not available on this node"
            )
            self.refresh_soon()
            return
        self.session.send(schema.make_command(cmd, collector="futex"))
        self.model.note(
            self.app.clock.now(),
            "info",
            f"asked the agent to turn futex tracing {'off' if on else 'on'}"
            + ("" if on else f" (costs {snap.futex.cost if snap else 'every syscall'})"),
        )
        self.refresh_soon()

    def export_target(self) -> Path:
        """``<export_dir>/godebug-<namespace>-<pod>-<UTC time>.tar.gz``."""
        info = getattr(self.session, "info", None)
        pod = getattr(info, "pod", None)
        ns, name = getattr(pod, "namespace", "") or "pod", getattr(pod, "name", "") or "unknown"
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{ns}-{name}")
        return self.export_dir / f"godebug-{safe}-{stamp}.tar.gz"

    def action_export(self) -> None:
        """Write the session's evidence (profiles, findings, screenshot) to an archive."""
        svg = self.app.export_screenshot()
        self.notify("exporting the session's evidence …", timeout=3, markup=False)
        self.export_evidence(self.export_target(), svg)

    @work(thread=True, group="export", exit_on_error=False)
    def export_evidence(self, target: Path, svg: str) -> None:
        from tui.export import export_session

        info = getattr(self.session, "info", None)
        try:
            path = export_session(target, self.evidence.frames(), svg=svg, info=info)
        except Exception as e:  # noqa: BLE001 - told to the user, never a crash
            text = f"export failed: could not write {target}: {e}"
            self.app.call_from_thread(
                self.notify, clean(text, 300), severity="error", timeout=10, markup=False
            )
            self.model.note(self.app.clock.now(), "error", clean(text, 300))
            return
        self.last_export = path
        self.app.call_from_thread(
            self.notify, clean(f"exported to {path}", 300), timeout=10, markup=False
        )
        self.model.note(self.app.clock.now(), "info", clean(f"exported to {path}", 300))

    @on(FindingsPane.Selected)
    def _finding_selected(self, event: FindingsPane.Selected) -> None:
        for pane in self.query(Pane):
            pane.remove_class("related")
        f = event.finding
        self.related_path = f.path if f is not None else ()
        if f is None:
            return
        target = {
            "goroutines": "#goroutines",
            "futex": "#futex",
            "throttle": "#throttle",
            "calltree": "#calltree-pane",
            "log": "#log",
        }.get(f.pane)
        if target:
            self.query_one(target).add_class("related")
        if f.path:
            tree = self.query_one(CallTreeWidget)
            if self.snapshot is not None:
                self.query_one(CallTreePane).show(self.snapshot, self.related_path)
            tree.select_path(f.path)

    @on(FramesEnded)
    def _frames_ended(self) -> None:
        self.refresh_soon()

    def on_resize(self) -> None:
        self.set_class(self.size.width < 120, "narrow")
        self.set_class(self.size.height < 36, "short")
