"""The console App: a pod browser, and an attached screen per pod.

``GoDebugApp`` is given its pod source, session factory and clock, so the real
cluster, a recording and the tests all run the same App (harlequin's adapter
seam, memray's injected reader). ``python -m tui.app --recorded FILE`` runs it
on recorded frames without a cluster.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.theme import Theme

from tui.models.session_state import FindingsEngine, ProfileDecoder, SessionModel
from tui.screens.attached import AttachedScreen
from tui.screens.help import HelpScreen
from tui.screens.pods import PodBrowserScreen
from tui.sources.base import Clock, PodInfo, PodSource, SessionFactory, SystemClock

# A theme for projectors and screen sharing: pure black and white, saturated accents.
HIGH_CONTRAST = Theme(
    name="godebug-high-contrast",
    primary="#ffd700",
    secondary="#00e5ff",
    accent="#ffd700",
    warning="#ffd700",
    error="#ff5050",
    success="#50ff50",
    foreground="#ffffff",
    background="#000000",
    surface="#000000",
    panel="#1a1a1a",
    dark=True,
)
DEFAULT_THEME = "textual-dark"


def _optional(module: str, name: str) -> Callable[..., Any] | None:
    """An entry point of another part of the console, if that part is installed yet."""
    try:
        return getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None


def _new_findings_engine() -> Any:
    """A fresh incremental findings engine per session (``tui.findings``), if installed."""
    engine_class = _optional("tui.findings", "FindingsEngine")
    return engine_class() if engine_class is not None else None


class GoDebugApp(App[None]):
    """go-k8s-debug's console.

    Args:
        pod_source: where pods come from (the cluster's watch, or a recording).
        session_factory: attaches to a pod and streams its frames.
        clock: wall-clock time (tests pass a fixed clock).
        namespace: namespace to list; None lists all namespaces.
        selector: label selector for the pod list.
        initial_pod: ``NAME`` or ``NAMESPACE/NAME`` to attach to as soon as it is listed.
        record: a file path: every frame of each attached session is written to it
            (``tui.record.Recorder``; a second session goes to ``NAME-2`` and so on).
        findings_engine: evaluates frames into findings; by default a new
            ``tui.findings.FindingsEngine`` per session.
        profile_decoder: turns cpu profile frames into stacks (pprof-only mode).
        refresh_interval: seconds between refreshes of the attached screen.
        high_contrast: start with the high-contrast theme.
    """

    CSS_PATH = "app.tcss"
    TITLE = "go-k8s-debug"
    BINDINGS = [
        Binding("question_mark", "help", "help", show=False),
        Binding("T", "toggle_contrast", "contrast", show=False),
    ]

    def __init__(
        self,
        pod_source: PodSource,
        session_factory: SessionFactory,
        clock: Clock | None = None,
        *,
        namespace: str | None = None,
        selector: str | None = None,
        initial_pod: str | None = None,
        record: str | Path | None = None,
        findings_engine: FindingsEngine | None = None,
        profile_decoder: ProfileDecoder | None = None,
        refresh_interval: float = 1.0,
        high_contrast: bool = False,
        export_dir: str | Path = ".",
    ) -> None:
        super().__init__()
        self.export_dir = Path(export_dir)  # where the attached screen's ``e`` writes
        self.pod_source = pod_source
        self.session_factory = session_factory
        self.clock: Clock = clock or SystemClock()
        self.namespace = namespace
        self.selector = selector
        self.initial_pod = initial_pod
        self.findings_engine = findings_engine
        self.profile_decoder = profile_decoder or _optional(
            "tui.profiles.pprof", "cpu_profile_stacks"
        )
        self.refresh_interval = refresh_interval
        self.record_path = Path(record) if record is not None else None
        self.recordings_made: list[Path] = []
        self.replay: Any = None  # a replay's session factory (pause/seek keys), if any
        self.register_theme(HIGH_CONTRAST)
        self.theme = HIGH_CONTRAST.name if high_contrast else DEFAULT_THEME

    def on_mount(self) -> None:
        self.push_screen(PodBrowserScreen(self.namespace, self.selector))

    @property
    def pods_screen(self) -> PodBrowserScreen | None:
        for screen in self.screen_stack:
            if isinstance(screen, PodBrowserScreen):
                return screen
        return None

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_toggle_contrast(self) -> None:
        self.theme = DEFAULT_THEME if self.theme == HIGH_CONTRAST.name else HIGH_CONTRAST.name

    def attach(self, pod: PodInfo, container: str | None = None) -> None:
        """Attach to ``pod`` (in a thread: shipping the agent can take seconds)."""
        if isinstance(self.screen, AttachedScreen):
            return
        self.notify(f"attaching to {pod.namespace}/{pod.name}…", markup=False, timeout=3)
        self._attach_in_thread(pod, container, self.clock.now())

    @work(thread=True, exclusive=True, group="attach", exit_on_error=False)
    def _attach_in_thread(self, pod: PodInfo, container: str | None, started: float) -> None:
        try:
            session = self.session_factory.attach(pod, container)
        except Exception as e:  # noqa: BLE001 - say it and stay on the pod list
            self.call_from_thread(
                self.notify,
                f"could not attach to {pod.namespace}/{pod.name}: {e}",
                severity="error",
                markup=False,
                timeout=10,
            )
            return
        self.call_from_thread(self._show_session, session, started)

    def _show_session(self, session: Any, started: float | None = None) -> None:
        info = session.info
        model = SessionModel(
            pod=info.pod.name,
            namespace=info.pod.namespace,
            node=info.node or "",
            container=info.container,
            transport=info.transport,
            findings_engine=self.findings_engine or _new_findings_engine(),
            profile_decoder=self.profile_decoder,
        )
        model.note(
            self.clock.now() if started is None else started,  # when the operator asked
            "info",
            f"attaching to {info.pod.namespace}/{info.pod.name} via {info.transport}",
        )
        self.push_screen(
            AttachedScreen(
                session,
                model,
                self.refresh_interval,
                self._recorder_for(session),
                export_dir=self.export_dir,
            )
        )

    def _recorder_for(self, session: Any) -> Any:
        """A recorder for this session when ``--record`` was given (``tui.record``)."""
        if self.record_path is None:
            return None
        recorder_class = _optional("tui.record", "Recorder")
        if recorder_class is None:
            self.notify("recording is not available in this install", severity="warning")
            return None
        path = self.record_path
        if self.recordings_made:
            path = path.with_name(f"{path.stem}-{len(self.recordings_made) + 1}{path.suffix}")
        self.recordings_made.append(path)
        self.notify(f"recording to {path}", markup=False, timeout=4)
        return recorder_class(path, session.info)

    def detach(self) -> None:
        """Leave the attached screen; its session is closed when it unmounts."""
        if isinstance(self.screen, AttachedScreen):
            self.pop_screen()

    def pod_listed(self, pod: PodInfo) -> None:
        """Called for each listed pod until ``initial_pod`` is found and attached."""
        if self.initial_pod and self.initial_pod in (pod.name, pod.key):
            self.initial_pod = None
            self.attach(pod)


def main(argv: list[str] | None = None) -> int:
    """Dev entry: run the console on recorded frames (no cluster needed)."""
    from tui.sources.recorded import (
        RecordedPodSource,
        RecordedSessionFactory,
        ReplayClock,
        load_pods,
        read_frames,
    )

    here = Path(__file__).resolve().parent.parent / "tests" / "data"
    p = argparse.ArgumentParser(
        prog="python -m tui.app", description="Run the console on recorded frames."
    )
    p.add_argument(
        "--recorded",
        action="append",
        default=[],
        metavar="[POD=]FILE",
        help="JSONL frames to replay when attaching (POD is namespace/name; "
        "without it, for every pod)",
    )
    p.add_argument("--pods", default=str(here / "pods.json"), help="pod list JSON")
    p.add_argument(
        "--speed", type=float, default=1.0, help="replay speed (0 = as fast as possible)"
    )
    p.add_argument("-n", "--namespace", default=None)
    p.add_argument("--high-contrast", action="store_true")
    p.add_argument("pod", nargs="?", help="attach to this pod at once")
    args = p.parse_args(argv)
    recordings: dict[str, str] = {}
    for item in args.recorded or [str(here / "mutex.jsonl")]:
        key, _, path = item.rpartition("=")
        recordings[key or "*"] = path
    for path in recordings.values():
        if not Path(path).is_file():
            print(f"no recording at {path}: give a JSONL file of frames", file=sys.stderr)
            return 2
    source = RecordedPodSource(load_pods(args.pods), status="recorded pods (no cluster)")
    first, _ = read_frames(next(iter(recordings.values())))
    start = first[0]["t"] / 1e9 if first else 0.0
    # The recording's own clock, so data age and pod ages read as they did then.
    clock = ReplayClock(start, speed=args.speed or 1.0)
    factory = RecordedSessionFactory(recordings, speed=args.speed or None, clock=clock)
    GoDebugApp(
        source,
        factory,
        clock,
        namespace=args.namespace,
        initial_pod=args.pod,
        high_contrast=args.high_contrast,
    ).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
