"""SVG snapshots of each screen on recorded frames, at small and large sizes.

Baselines live in ``__snapshots__/`` beside this file; after looking at a change,
regenerate with ``pytest tests/snapshots --snapshot-update``. The clock is fixed
and frames come from ``tests/data`` so every run draws the same screen.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tui.app import GoDebugApp
from tui.screens.attached import AttachedScreen
from tui.sources.recorded import FixedClock, RecordedPodSource, RecordedSessionFactory, load_pods

DATA = Path(__file__).resolve().parent.parent / "data"
END = 1_795_600_090.5
FRAMES = {name: sum(1 for _ in open(DATA / f"{name}.jsonl")) for name in ("leak", "cpu", "mutex")}
POD = {"leak": "demo/leak-7d9f8", "cpu": "demo/cpu-hog-5c6b7", "mutex": "demo/mutex-84b2c"}


def make_app(recording: str = "leak", attach: bool = False, **kw) -> GoDebugApp:
    source = RecordedPodSource(load_pods(DATA / "pods.json"), status="recorded pods")
    factory = RecordedSessionFactory({"*": DATA / f"{recording}.jsonl"})
    return GoDebugApp(source, factory, FixedClock(END), namespace=kw.pop("namespace", "demo"),
                      initial_pod=POD[recording] if attach else None, refresh_interval=0.1,
                      **kw)


async def until(pilot, predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await pilot.pause(0.05)


def settled(recording: str):
    """run_before: every frame read, findings evaluated on all of them, drawn."""

    async def run_before(pilot) -> None:
        app = pilot.app
        await until(pilot, lambda: isinstance(app.screen, AttachedScreen))
        screen = app.screen
        await until(pilot, lambda: screen.findings_frames == FRAMES[recording]
                    and screen.snapshot is not None and bool(screen.snapshot.findings)
                    and screen.snapshot.header.frames == FRAMES[recording])
        seen = screen.refreshes
        await until(pilot, lambda: screen.refreshes >= seen + 2)
        # The "attaching…" toast lasts 3 s: whether it is still up depends on timing.
        app.clear_notifications()
        await pilot.wait_for_scheduled_animations()
        await pilot.pause(0.2)

    return run_before


async def pods_listed(pilot) -> None:
    await until(pilot, lambda: pilot.app.screen.query_one("#pods").row_count > 0)
    await pilot.pause(0.1)


def test_pod_browser(snap_compare):
    assert snap_compare(make_app(), terminal_size=(120, 35), run_before=pods_listed)


def test_pod_browser_all_namespaces_filtered(snap_compare):
    async def run_before(pilot) -> None:
        await pods_listed(pilot)
        await pilot.press("slash", *"node-2")

    assert snap_compare(make_app(namespace=None), terminal_size=(100, 30), run_before=run_before)


def test_help(snap_compare):
    async def run_before(pilot) -> None:
        await pods_listed(pilot)
        await pilot.press("question_mark")
        await pilot.pause(0.2)

    assert snap_compare(make_app(), terminal_size=(100, 30), run_before=run_before)


@pytest.mark.parametrize(
    ("recording", "size"),
    [("leak", (120, 35)), ("cpu", (100, 30)), ("mutex", (200, 60))],
    ids=["leak-120x35", "cpu-100x30", "mutex-200x60"],
)
def test_attached(snap_compare, recording, size):
    app = make_app(recording, attach=True)
    assert snap_compare(app, terminal_size=size, run_before=settled(recording))


def test_attached_high_contrast_frozen(snap_compare):
    async def run_before(pilot) -> None:
        await settled("cpu")(pilot)
        await pilot.press("z")
        screen = pilot.app.screen
        await until(pilot, lambda: screen.snapshot.calltree.frozen)
        seen = screen.refreshes
        await until(pilot, lambda: screen.refreshes >= seen + 1)
        await pilot.pause(0.2)

    app = make_app("cpu", attach=True, high_contrast=True)
    assert snap_compare(app, terminal_size=(120, 35), run_before=run_before)
