"""Pilot tests of the pod browser on recorded pods: filter, :ns/:ctx, in-place updates,
hostile names, attach and back."""

from __future__ import annotations

import html
import re
import time
from dataclasses import replace
from pathlib import Path

from textual import events

from tui.app import GoDebugApp
from tui.screens.attached import AttachedScreen
from tui.screens.help import HelpScreen
from tui.screens.pods import PodBrowserScreen
from tui.sources.base import PodEvent
from tui.sources.recorded import FixedClock, RecordedPodSource, RecordedSessionFactory, load_pods
from tui.widgets.pod_table import PodTable

DATA = Path(__file__).parent / "data"
NOW = 1_795_600_090.5


def make_app(namespace: str | None = "demo", **kw) -> GoDebugApp:
    source = RecordedPodSource(load_pods(DATA / "pods.json"), status="recorded")
    factory = RecordedSessionFactory({"*": DATA / "leak.jsonl"})
    return GoDebugApp(source, factory, FixedClock(NOW), namespace=namespace,
                      refresh_interval=0.1, **kw)


async def wait_for(pilot, predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await pilot.pause(0.05)


def screen_text(app) -> str:
    """What the terminal shows, as plain text (from the SVG screenshot)."""
    svg = app.export_screenshot()
    return html.unescape(re.sub(r"<[^>]+>", "", svg)).replace("\xa0", " ")


def keys(table: PodTable) -> list[str]:
    return table.keys()


async def test_lists_namespace_and_filters_as_you_type():
    app = make_app()
    async with app.run_test(size=(120, 35)) as pilot:
        table = app.screen.query_one(PodTable)
        await wait_for(pilot, lambda: table.row_count == 6)
        assert all(k.startswith("demo/") for k in keys(table))
        await pilot.press("slash", *"leak")
        assert keys(table) == ["demo/leak-7d9f8"]
        # Words all must match.
        await pilot.press("backspace", "backspace", *"ak", "space", *"node-1")
        assert keys(table) == ["demo/leak-7d9f8"]
        await pilot.press("escape")
        assert table.row_count == 6 and app.screen.query_one("#filter").has_class("hidden")
        await pilot.press("slash", *"fault=throttle", "enter")  # a label
        assert keys(table) == ["demo/cpu-hog-5c6b7"]
        assert table.has_focus


async def test_ns_and_ctx_commands_switch_the_watch():
    app = make_app()
    async with app.run_test(size=(120, 35)) as pilot:
        screen = app.screen
        table = screen.query_one(PodTable)
        await wait_for(pilot, lambda: table.row_count == 6)
        await pilot.press("colon", *"ns payments", "enter")
        await wait_for(pilot, lambda: keys(table) and keys(table)[0].startswith("payments/"))
        assert len(keys(table)) == 3 and screen.namespace == "payments"
        await pilot.press("colon", *"ns all", "enter")
        await wait_for(pilot, lambda: table.row_count == 11)
        await pilot.press("colon", *"ctx staging", "enter")
        await wait_for(pilot, lambda: keys(table) == ["web/frontend-0", "web/frontend-1"])
        assert app.pod_source.current_context == "staging"
        assert "context staging" in screen_text(app)
        await pilot.press("colon", *"ctx nowhere", "enter")
        assert "no context 'nowhere'" in screen.command_message
        assert "known are sandbox, staging" in screen_text(app)


async def test_rows_update_in_place_and_the_cursor_stays_on_its_pod():
    app = make_app()
    async with app.run_test(size=(120, 35)) as pilot:
        table = app.screen.query_one(PodTable)
        await wait_for(pilot, lambda: table.row_count == 6)
        await pilot.press("down", "down", "down", "down")
        assert table.cursor_key == "demo/leak-7d9f8"
        pods = app.screen.model.pods
        crashy = pods["demo/crashy-0a1b2"]
        app.pod_source.push(PodEvent("MODIFIED", pod=replace(crashy, restarts=8)))
        # A new pod sorting before the cursor, and one removed before it.
        app.pod_source.push(PodEvent("ADDED", pod=replace(crashy, name="aaa-new", uid="n")))
        app.pod_source.push(PodEvent("DELETED", pod=pods["demo/cpu-hog-5c6b7"]))
        await wait_for(pilot, lambda: "demo/aaa-new" in keys(table)
                       and "demo/cpu-hog-5c6b7" not in keys(table))
        assert keys(table)[0] == "demo/aaa-new"
        assert table.row("demo/crashy-0a1b2").cell("restarts") == "8"
        assert table.cursor_key == "demo/leak-7d9f8"


async def test_watch_status_shows_in_the_header():
    app = make_app()
    async with app.run_test(size=(120, 35)) as pilot:
        table = app.screen.query_one(PodTable)
        await wait_for(pilot, lambda: table.row_count == 6)
        app.pod_source.push(PodEvent("STATUS", message="reconnecting in 4 s"))
        await wait_for(pilot, lambda: "reconnecting in 4 s" in screen_text(app))


async def test_hostile_pod_names_and_labels_render_literally():
    app = make_app()
    async with app.run_test(size=(140, 35)) as pilot:
        table = app.screen.query_one(PodTable)
        await wait_for(pilot, lambda: table.row_count == 6)
        await pilot.press("slash", *"evil", "enter")
        assert keys(table) == ["demo/evil-[bold red]pod[/]"]
        text = screen_text(app)
        assert "evil-[bold red]pod[/]" in text
        # The label's ANSI colour codes are gone; its markup shows as typed.
        assert "note=red [link=http://x]click[/link]" in text
        assert "\x1b" not in text


async def test_enter_attaches_and_escape_comes_back():
    app = make_app()
    async with app.run_test(size=(120, 35)) as pilot:
        table = app.screen.query_one(PodTable)
        await wait_for(pilot, lambda: table.row_count == 6)
        await pilot.press("slash", *"leak", "enter", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, AttachedScreen))
        session = app.session_factory.sessions[0]
        assert session.info.pod.name == "leak-7d9f8"
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, PodBrowserScreen))
        assert session._closed.is_set()  # detaching closed the session


async def test_initial_pod_attaches_at_once_and_help_opens():
    app = make_app(initial_pod="demo/mutex-84b2c")
    async with app.run_test(size=(120, 35)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, AttachedScreen))
        assert app.screen.session.info.pod.name == "mutex-84b2c"
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await wait_for(pilot, lambda: "unfreeze the call tree" in screen_text(app))
        await pilot.press("escape")
        assert isinstance(app.screen, AttachedScreen)


async def test_attach_failure_is_said_and_the_list_stays():
    app = make_app()
    app.session_factory.recordings.clear()
    async with app.run_test(size=(120, 35), notifications=True) as pilot:
        table = app.screen.query_one(PodTable)
        await wait_for(pilot, lambda: table.row_count == 6)
        await pilot.press("enter")
        await wait_for(pilot, lambda: any("could not attach" in n.message
                                          for n in app._notifications))
        assert isinstance(app.screen, PodBrowserScreen)


async def test_narrowing_removes_many_rows_at_once_and_keeps_the_table_consistent():
    app = make_app(namespace=None)
    async with app.run_test(size=(120, 35)) as pilot:
        table = app.screen.query_one(PodTable)
        await wait_for(pilot, lambda: table.row_count > 6)
        everything = keys(table)
        await pilot.press("slash", *"demo")
        narrowed = keys(table)
        assert narrowed and len(narrowed) < len(everything)
        assert narrowed == [k for k in everything if k.startswith("demo/")]
        # Row indices are consistent after narrowing: each key finds its row.
        assert [table.rows.index_of(k) for k in narrowed] == list(range(len(narrowed)))
        for _ in "demo":
            await pilot.press("backspace")
        assert keys(table) == everything
        assert [table.rows.index_of(k) for k in everything] == list(range(len(everything)))


def many_pods(n: int) -> list:
    """``n`` pods in namespace ``load`` (sorted by name as the table sorts them)."""
    base = next(iter(load_pods(DATA / "pods.json").values()))[0]
    return [replace(base, namespace="load", name=f"svc-{i:05d}", uid=f"u{i}", labels={})
            for i in range(n)]


def many_pods_app(n: int) -> GoDebugApp:
    source = RecordedPodSource(many_pods(n), status="recorded")
    factory = RecordedSessionFactory({"*": DATA / "leak.jsonl"})
    return GoDebugApp(source, factory, FixedClock(NOW), namespace=None, refresh_interval=0.1)


async def test_every_one_of_5000_pods_is_reachable_and_the_cursor_keeps_its_line():
    app = many_pods_app(5000)
    async with app.run_test(size=(100, 30)) as pilot:
        table = app.screen.query_one(PodTable)
        await wait_for(pilot, lambda: table.row_count == 5000)
        assert "pods 5000/5000" in screen_text(app)  # no cap: every pod is in the table
        await pilot.press("end")
        assert table.cursor_key == "load/svc-04999"
        await pilot.pause()
        assert "svc-04999" in screen_text(app)
        table.move_cursor(4000)
        await pilot.pause()
        assert table.cursor_key == "load/svc-04000"
        text = screen_text(app)
        assert "svc-04000" in text and "svc-04999" not in text
        line = table.cursor_row - round(table.scroll_y)
        # Pods appear and go before the cursor: it stays on its pod and its screen line.
        pods = app.screen.model.pods
        app.pod_source.push(PodEvent("ADDED", pod=replace(pods["load/svc-00001"], name="a-new")))
        app.pod_source.push(PodEvent("DELETED", pod=pods["load/svc-00002"]))
        app.pod_source.push(PodEvent("DELETED", pod=pods["load/svc-00003"]))
        await wait_for(pilot, lambda: table.row_count == 4999)
        assert table.cursor_key == "load/svc-04000" and table.cursor_row == 3999
        assert table.cursor_row - round(table.scroll_y) == line
        await pilot.press("pageup", "pageup")
        assert table.cursor_row == 3999 - 2 * (table.size.height - 1)
        await pilot.press("home")
        assert table.cursor_key == "load/a-new" and table.scroll_y == 0


async def test_the_filter_keeps_the_cursor_on_its_pod_while_it_is_shown():
    app = many_pods_app(300)
    async with app.run_test(size=(100, 30)) as pilot:
        table = app.screen.query_one(PodTable)
        await wait_for(pilot, lambda: table.row_count == 300)
        table.move_cursor(123)
        await pilot.press("slash", *"svc-001")
        assert table.row_count == 100 and table.cursor_key == "load/svc-00123"
        await pilot.press("2")
        assert table.row_count == 10 and table.cursor_key == "load/svc-00123"
        await pilot.press("backspace", "backspace", "backspace")
        assert table.row_count == 300 and table.cursor_key == "load/svc-00123"
        # A filter without the pod: the cursor keeps its row number, clamped.
        await pilot.press("escape", "slash", *"-0029")
        assert table.keys() == ["load/svc-00290", "load/svc-00291", "load/svc-00292",
                                "load/svc-00293", "load/svc-00294", "load/svc-00295",
                                "load/svc-00296", "load/svc-00297", "load/svc-00298",
                                "load/svc-00299"]
        assert table.cursor_key == "load/svc-00299"
        await pilot.press(*"xyz")
        assert table.row_count == 0 and table.cursor_key is None
        assert "pods 0/300" in screen_text(app)


async def test_a_click_moves_the_cursor_and_a_click_on_it_attaches():
    app = make_app()
    async with app.run_test(size=(120, 35)) as pilot:
        table = app.screen.query_one(PodTable)
        await wait_for(pilot, lambda: table.row_count == 6)
        assert table.cursor_key == "demo/cpu-hog-5c6b7"
        await pilot.click(PodTable, offset=(20, 5))  # line 0 is the header
        assert table.cursor_key == "demo/leak-7d9f8"
        assert "fault=leak" in screen_text(app)  # the detail line follows the cursor
        await pilot.click(PodTable, offset=(20, 0))  # the header: nothing happens
        await pilot.click(PodTable, offset=(20, 20))  # below the last row: nothing either
        assert table.cursor_key == "demo/leak-7d9f8"
        assert isinstance(app.screen, PodBrowserScreen)
        await pilot.click(PodTable, offset=(20, 5))
        await wait_for(pilot, lambda: isinstance(app.screen, AttachedScreen))
        assert app.screen.session.info.pod.name == "leak-7d9f8"


async def test_hostile_names_reach_the_terminal_as_plain_text():
    pods = [replace(p, name="x-[reverse]\x1b[5mblink[/]\x1b]8;;http://x\x07", labels={})
            for p in next(iter(load_pods(DATA / "pods.json").values()))[:1]]
    app = GoDebugApp(RecordedPodSource(pods), RecordedSessionFactory({}), FixedClock(NOW),
                     namespace=None)
    async with app.run_test(size=(120, 20)) as pilot:
        table = app.screen.query_one(PodTable)
        await wait_for(pilot, lambda: table.row_count == 1)
        await pilot.press("down")
        strip = table.render_line(1)
        assert "x-[reverse]blink[/]" in strip.text
        assert not any(seg.style and (seg.style.reverse or seg.style.blink or seg.style.link)
                       for seg in strip)
        assert "\x1b" not in strip.text
        assert "x-[reverse]blink[/]" in screen_text(app)


async def test_ages_move_on_without_watch_events(monkeypatch):
    monkeypatch.setattr("tui.screens.pods.AGE_REFRESH_S", 0.2)
    app = make_app()
    async with app.run_test(size=(120, 35)) as pilot:
        table = app.screen.query_one(PodTable)
        await wait_for(pilot, lambda: table.row_count == 6)
        assert table.row("demo/leak-7d9f8").cell("age") == "60m"
        app.clock.advance(2 * 3600)
        await wait_for(pilot, lambda: table.row("demo/leak-7d9f8").cell("age") == "3h")
        assert "3h" in screen_text(app)


async def test_an_update_leaves_a_view_scrolled_away_from_the_cursor_alone():
    app = many_pods_app(2000)
    async with app.run_test(size=(100, 30)) as pilot:
        table = app.screen.query_one(PodTable)
        await wait_for(pilot, lambda: table.row_count == 2000)
        # The mouse wheel scrolls the view, not the cursor (Pilot has no wheel helper).
        await pilot._post_mouse_events([events.MouseScrollDown], PodTable, (10, 10))
        await wait_for(pilot, lambda: table.scroll_y > 0)
        assert table.cursor_row == 0
        table.scroll_to(y=1500, animate=False)
        await pilot.pause()
        assert round(table.scroll_y) == 1500 and table.cursor_row == 0
        pods = app.screen.model.pods
        app.pod_source.push(PodEvent("MODIFIED", pod=replace(pods["load/svc-01600"], restarts=9)))
        await wait_for(pilot, lambda: table.row("load/svc-01600").cell("restarts") == "9")
        assert round(table.scroll_y) == 1500 and table.cursor_key == "load/svc-00000"
        assert "svc-01510" in screen_text(app)
