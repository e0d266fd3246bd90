"""Pilot tests of the attached screen on recorded frames: live numbers, freeze, windows,
reset, futex toggle, findings, resizing, stable tree expansion, hostile symbols."""

from __future__ import annotations

import html
import io
import re
import time
from pathlib import Path

from rich.console import Console

from bpf import schema
from tui.app import GoDebugApp
from tui.screens.attached import AttachedScreen, CallTreePane
from tui.sources.recorded import FixedClock, RecordedPodSource, RecordedSessionFactory, load_pods
from tui.widgets.call_tree import CallTreeWidget
from tui.widgets.findings_list import FindingsPane
from tui.widgets.panes import throttle_text

DATA = Path(__file__).parent / "data"
END = 1_795_600_090.5  # just after the recordings' last frame
FRAMES = {name: sum(1 for _ in open(DATA / f"{name}.jsonl")) for name in ("leak", "cpu", "mutex")}
POD = {"leak": "demo/leak-7d9f8", "cpu": "demo/cpu-hog-5c6b7", "mutex": "demo/mutex-84b2c"}


def make_app(recording: str, **kw) -> GoDebugApp:
    source = RecordedPodSource(load_pods(DATA / "pods.json"))
    factory = RecordedSessionFactory({"*": DATA / f"{recording}.jsonl"})
    return GoDebugApp(source, factory, FixedClock(END), namespace="demo",
                      initial_pod=POD[recording], refresh_interval=0.1, **kw)


async def wait_for(pilot, predicate, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await pilot.pause(0.05)


def screen_text(app) -> str:
    svg = app.export_screenshot()
    return html.unescape(re.sub(r"<[^>]+>", "", svg)).replace("\xa0", " ")


async def attached(pilot, app, recording: str) -> AttachedScreen:
    """Wait until every recorded frame is on screen."""
    await wait_for(pilot, lambda: isinstance(app.screen, AttachedScreen))
    screen = app.screen
    await wait_for(pilot, lambda: screen.snapshot is not None
                   and screen.snapshot.header.frames == FRAMES[recording])
    return screen


def stack_frame(t_s: float, *stacks: tuple[tuple[str, ...], int]) -> dict:
    funcs, packed = schema.intern_stacks(stacks)
    return schema.make_frame("cpu_stacks", t=int(t_s * 1e9), interval_ns=10**9, hz=99,
                             samples=sum(c for _, c in stacks), lost=0, funcs=funcs,
                             stacks=packed)


async def test_leak_pod_shows_rising_goroutines_and_header():
    app = make_app("leak")
    async with app.run_test(size=(120, 35)) as pilot:
        screen = await attached(pilot, app, "leak")
        g = screen.snapshot.goroutines
        assert g.count > 150 and g.rate > 1
        await wait_for(pilot, lambda: f"{g.count:,}" in screen_text(app))
        text = screen_text(app)
        assert "demo/leak-7d9f8" in text and "via replay" in text and "link live" in text
        assert "data age 0.5 s" in text


async def test_cpu_pod_shows_throttling_and_hot_function_in_the_tree():
    app = make_app("cpu")
    async with app.run_test(size=(120, 35)) as pilot:
        screen = await attached(pilot, app, "cpu")
        await wait_for(pilot, lambda: "0.20 CPU (20 ms per 100 ms)" in screen_text(app))
        assert screen.snapshot.throttle.container.share > 0.5
        tree = screen.query_one(CallTreeWidget)
        await wait_for(pilot, lambda: "main.fib" in screen_text(app))
        # The hot path is open down to the hot function.
        node = tree.root
        while node.children and node.is_expanded:
            node = node.children[0]
        assert node.data[-1] == "main.fib"
        assert "physical frames (eBPF)" in screen.query_one(CallTreePane).border_title


async def test_freeze_holds_the_tree_and_counting_goes_on():
    app = make_app("cpu")
    async with app.run_test(size=(120, 35)) as pilot:
        screen = await attached(pilot, app, "cpu")
        before = screen.snapshot.calltree.total
        await pilot.press("z")
        await wait_for(pilot, lambda: screen.snapshot.calltree.frozen)
        session = app.session_factory.sessions[0]
        session.inject(stack_frame(END - 0.2, (("runtime.goexit", "main.newWork"), 500)))
        await wait_for(pilot, lambda: screen.snapshot.header.frames == FRAMES["cpu"] + 1)
        assert screen.snapshot.calltree.total == before
        assert "FROZEN" in screen.query_one(CallTreePane).border_subtitle
        await pilot.press("z")
        await wait_for(pilot, lambda: not screen.snapshot.calltree.frozen)
        assert screen.snapshot.calltree.total == before + 500


async def test_window_keys_and_reset():
    app = make_app("mutex")
    async with app.run_test(size=(120, 35)) as pilot:
        screen = await attached(pilot, app, "mutex")
        sixty = screen.snapshot.calltree.total
        await pilot.press("1")
        await wait_for(pilot, lambda: screen.snapshot.calltree.window == "10s")
        assert 0 < screen.snapshot.calltree.total < sixty / 3
        assert "last 10 s" in screen.query_one(CallTreePane).border_title
        await pilot.press("3")
        await wait_for(pilot, lambda: screen.snapshot.calltree.window == "all")
        assert screen.snapshot.calltree.total > sixty
        await pilot.press("w")  # cycles back to 10 s
        await wait_for(pilot, lambda: screen.snapshot.calltree.window == "10s")
        await pilot.press("r")
        await wait_for(pilot, lambda: screen.snapshot.calltree.total == 0)
        assert any("call tree reset" in line.text for line in screen.snapshot.log)


async def test_futex_is_off_until_toggled_and_the_command_is_sent():
    app = make_app("cpu")
    async with app.run_test(size=(120, 35)) as pilot:
        screen = await attached(pilot, app, "cpu")
        assert screen.snapshot.futex.state == "off"
        await wait_for(pilot, lambda: "every syscall on the node" in screen_text(app))
        await pilot.press("f")
        session = app.session_factory.sessions[0]
        assert session.sent[-1] == {"v": 1, "cmd": "enable", "collector": "futex"}
        await wait_for(pilot, lambda: screen.snapshot.futex.state == "on")
        await pilot.press("f")
        assert session.sent[-1]["cmd"] == "disable"
        await wait_for(pilot, lambda: screen.snapshot.futex.state == "off")


async def test_findings_show_and_selecting_one_highlights_its_pane():
    app = make_app("cpu")
    async with app.run_test(size=(120, 35)) as pilot:
        screen = await attached(pilot, app, "cpu")
        await wait_for(pilot, lambda: bool(screen.snapshot.findings))
        top = screen.snapshot.findings[0]
        assert top.severity == "critical" and top.pane == "throttle"
        pane = screen.query_one(FindingsPane)
        pane.query_one("#findings-list").focus()
        await pilot.press("down", "up")
        await wait_for(pilot, lambda: screen.query_one("#throttle").has_class("related"))
        await wait_for(pilot, lambda: "CPU throttled" in screen_text(app))


async def test_finding_with_a_stack_opens_it_in_the_call_tree():
    path = ("runtime.goexit", "main.deep", "main.deeper")

    def engine(frames):
        return [{"id": "T1", "severity": "warning", "title": "Hot [b]deep[/b]",
                 "evidence": ["deep path"], "pane": "calltree", "path": list(path)}]

    app = make_app("cpu", findings_engine=engine)
    async with app.run_test(size=(120, 35)) as pilot:
        screen = await attached(pilot, app, "cpu")
        app.session_factory.sessions[0].inject(stack_frame(END - 0.3, (path, 30)))
        await wait_for(pilot, lambda: screen.snapshot.calltree.find(path) is not None)
        await wait_for(pilot, lambda: bool(screen.snapshot.findings))
        screen.query_one("#findings-list").focus()
        await pilot.press("enter")
        tree = screen.query_one(CallTreeWidget)
        await wait_for(pilot, lambda: tree.cursor_node is not None
                       and tree.cursor_node.data == path)
        assert screen.query_one("#calltree-pane").has_class("related")
        await wait_for(pilot, lambda: "Hot [b]deep[/b]" in screen_text(app))


async def test_expansion_and_cursor_survive_updates():
    app = make_app("mutex")
    async with app.run_test(size=(120, 35)) as pilot:
        screen = await attached(pilot, app, "mutex")
        tree = screen.query_one(CallTreeWidget)
        await wait_for(pilot, lambda: tree.root.children and tree.root.children[0].is_expanded)
        tree.focus()
        await pilot.press("down", "down")  # the user takes over: the tree stops following
        chosen = tree.cursor_node.data
        expanded_before = {n.data for n in _walk(tree.root) if n.is_expanded}
        refreshes = screen.refreshes
        session = app.session_factory.sessions[0]
        for i in range(3):
            frame = stack_frame(END - 0.1 + i * 0.01, (("runtime.goexit", "main.other"), 50))
            session.inject(frame)
        await wait_for(pilot, lambda: screen.refreshes >= refreshes + 3
                       and screen.snapshot.header.frames == FRAMES["mutex"] + 3)
        assert tree.cursor_node.data == chosen
        assert {n.data for n in _walk(tree.root) if n.is_expanded} >= expanded_before


def _walk(node):
    yield node
    for child in node.children:
        yield from _walk(child)


async def test_hostile_symbols_and_log_lines_render_literally():
    app = make_app("cpu")
    async with app.run_test(size=(160, 40)) as pilot:
        screen = await attached(pilot, app, "cpu")
        session = app.session_factory.sessions[0]
        evil = "main.[bold red]evil[/]\x1b[2J"
        session.inject(stack_frame(END - 0.1, (("runtime.goexit", evil), 5000)))
        session.inject(schema.make_frame("log", t=int((END - 0.1) * 1e9), level="warn",
                                         msg="[blink]agent[/blink] said \x1b[31mhi"))
        await wait_for(pilot, lambda: screen.snapshot.header.frames == FRAMES["cpu"] + 2)
        await wait_for(pilot, lambda: "main.[bold red]evil[/]" in screen_text(app))
        text = screen_text(app)
        assert "[blink]agent[/blink] said hi" in text
        assert "\x1b" not in text


async def test_throttle_pane_shows_window_averages_beside_the_last_interval():
    app = make_app("cpu")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await attached(pilot, app, "cpu")
        (_, c10, _), (_, c60, p60) = screen.snapshot.throttle.windows
        assert c10.share is not None and c60.share is not None and p60.share is not None
        await wait_for(pilot, lambda: "60 s avg" in screen_text(app))
        numbers = screen.query_one("#throttle-numbers")
        console = Console(width=numbers.size.width, record=True, file=io.StringIO())
        console.print(throttle_text(screen.snapshot.throttle))  # what the pane was given
        text = console.export_text()
        assert len(max(text.splitlines(), key=len)) <= numbers.size.width
        assert "last 1 s" in text and "10 s avg" in text and "60 s avg" in text
        container = next(line for line in text.splitlines() if "container %" in line)
        assert f"{c10.share * 100:.0f}%" in container and f"{c60.share * 100:.0f}%" in container


async def test_log_lines_folded_in_late_go_to_their_place_in_time():
    app = make_app("cpu")
    async with app.run_test(size=(160, 40)) as pilot:
        screen = await attached(pilot, app, "cpu")
        session = app.session_factory.sessions[0]
        session.inject(schema.make_frame("log", t=int((END - 30) * 1e9), level="info",
                                         msg="stamped earlier, read later"))
        await wait_for(pilot, lambda: screen.snapshot.header.frames == FRAMES["cpu"] + 1)
        times = [line.t for line in screen.snapshot.log]
        assert times == sorted(times)
        log = screen.query_one("#log")
        await wait_for(pilot, lambda: any("stamped earlier" in "".join(s.text for s in line)
                                          for line in log.lines))
        written = ["".join(s.text for s in line) for line in log.lines]
        stamps = [w[:8] for w in written if re.match(r"\d\d:\d\d:\d\d ", w)]
        assert stamps == sorted(stamps)


async def test_resizing_between_small_and_large_terminals():
    app = make_app("mutex")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await attached(pilot, app, "mutex")
        for size in ((100, 30), (200, 60), (100, 30)):
            await pilot.resize_terminal(*size)
            await pilot.pause(0.2)
            assert screen.size == size
            for wid in ("#goroutines", "#throttle", "#futex", "#calltree-pane", "#findings",
                        "#log", "#session-header"):
                region = screen.query_one(wid).region
                assert region.width > 10 and region.height >= 1, (wid, size, region)
                assert region.right <= size[0] and region.bottom <= size[1], (wid, size, region)
            tree = screen.query_one("#calltree-pane").region
            assert tree.width >= (50 if size[0] == 100 else 100)
        assert screen.has_class("short") and screen.has_class("narrow")
        await wait_for(pilot, lambda: "main.checksumAll" in screen_text(app))


async def test_high_contrast_theme_toggles():
    app = make_app("leak", high_contrast=True)
    async with app.run_test(size=(120, 35)) as pilot:
        await attached(pilot, app, "leak")
        assert app.theme == "godebug-high-contrast"
        await pilot.press("T")
        assert app.theme == "textual-dark"


async def test_record_writes_a_recording_that_reads_back(tmp_path):
    from tui.record import read_recording

    path = tmp_path / "incident.rec.gz"
    app = make_app("leak", record=path)
    async with app.run_test(size=(120, 35)) as pilot:
        await attached(pilot, app, "leak")
        await pilot.press("escape")  # detaching closes the recording
        await wait_for(pilot, lambda: not isinstance(app.screen, AttachedScreen))
    deadline = time.monotonic() + 10
    while True:
        try:
            rec = read_recording(path)
            if len(rec.frames) == FRAMES["leak"]:
                break
        except Exception:
            pass
        assert time.monotonic() < deadline, "recording not complete"
        time.sleep(0.1)
    assert rec.pod.name == "leak-7d9f8"
    assert rec.frames[0]["kind"] == "hello"


class _Health:
    def __init__(self, state, bad=0, error=""):
        self.state, self.bad_lines, self.last_error = state, bad, error
        self.description = "ssh 10.88.0.2 (node-1)"


class _SessionWithHealth:
    def __init__(self, health):
        self._h = health

    def health(self):
        return self._h


def test_link_health_goes_into_the_header():
    from tui.models.session_state import SessionModel
    from tui.screens.attached import with_link_health

    m = SessionModel(pod="p", transport="ssh")
    m.add(schema.make_frame("goroutines", t=10**9, count=3, source="pprof_index"))
    header = m.snapshot(1.5).header
    h = with_link_health(header, _SessionWithHealth(_Health("reconnecting", 2, "timed out")))
    assert (h.link, h.link_detail, h.unparsed) == ("reconnecting", "timed out", 2)
    assert h.transport == "ssh 10.88.0.2 (node-1)"
    # Attached: the model's own live/stale view stands.
    assert with_link_health(header, _SessionWithHealth(_Health("attached"))).link == "live"
