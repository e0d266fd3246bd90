"""Pilot tests of the console's evidence: profile requests, the export key, and
a finding's stack (as the findings engine sets it) opened in the call tree."""

from __future__ import annotations

import json
import tarfile

from test_app_attached import END, attached, make_app, screen_text, stack_frame, wait_for

from tui.findings.model import Finding, Related
from tui.widgets.call_tree import CallTreeWidget, node_label


async def test_live_session_asks_for_the_four_profiles_once_each():
    app = make_app("leak")
    async with app.run_test(size=(120, 35)) as pilot:
        screen = await attached(pilot, app, "leak")
        session = app.session_factory.sessions[0]

        def profile_cmds():
            return [c for c in session.sent if c.get("cmd") == "profile"]

        await wait_for(pilot, lambda: len(profile_cmds()) == 4)
        cmds = profile_cmds()
        assert sorted(c["profile"] for c in cmds) == ["block", "goroutine", "heap", "mutex"]
        assert all(c["seconds"] == 0 and c["v"] == 1 for c in cmds)
        # The clock stands still: nothing is due again, and nothing is asked twice.
        await pilot.pause(0.5)
        assert len(profile_cmds()) == 4
        # The agent answers that pprof is unreachable: the console stops and says so.
        session.inject({"v": 1, "kind": "error", "t": int(END * 1e9), "code": "no_pprof",
                        "msg": "nothing listens on 127.0.0.1:6060", "hint": "serve pprof",
                        "fatal": False, "id": cmds[0]["id"], "collector": "profiles"})
        await wait_for(pilot, lambda: screen.profiles.state == "stopped")
        await wait_for(pilot, lambda: "not asking for pprof profiles" in screen_text(app))


async def test_export_key_writes_an_archive_with_findings_and_screenshot(tmp_path):
    app = make_app("leak", export_dir=tmp_path)
    async with app.run_test(size=(120, 35)) as pilot:
        screen = await attached(pilot, app, "leak")
        await pilot.press("e")
        await wait_for(pilot, lambda: screen.last_export is not None, timeout=30)
        path = screen.last_export
        assert path.parent == tmp_path and path.exists()
        assert path.name.startswith("godebug-demo-leak-7d9f8-") and path.name.endswith(".tar.gz")
        with tarfile.open(path) as tar:
            names = {m.name.split("/", 1)[1] for m in tar.getmembers()}
            assert {"findings.json", "screenshot.svg", "MANIFEST.txt"} <= names
            base = path.name.removesuffix(".tar.gz")
            report = json.load(tar.extractfile(f"{base}/findings.json"))
            svg = tar.extractfile(f"{base}/screenshot.svg").read().decode()
        assert report["target"]["pod"] == "leak-7d9f8"
        assert any("goroutine" in json.dumps(f).lower() for f in report["findings"])
        assert "<svg" in svg and "leak-7d9f8" in svg
        await wait_for(pilot, lambda: "exported to" in screen_text(app))


async def test_export_failure_is_told_in_plain_words(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the export directory should be")
    app = make_app("leak", export_dir=blocker)
    async with app.run_test(size=(120, 35)) as pilot:
        screen = await attached(pilot, app, "leak")
        await pilot.press("e")
        await wait_for(pilot, lambda: "export failed: could not write" in screen_text(app))
        assert screen.last_export is None


async def test_engine_finding_related_stack_expands_and_highlights_the_path():
    path = ("runtime.goexit", "main.worker", "sync.(*Mutex).Lock")

    def engine(frames):
        return [Finding("GKD003-lock-contention", "warning", "Lock contention",
                        evidence=("mutex delay",), advice="shorten the critical section",
                        related=Related("calltree", path, "mutex"))]

    app = make_app("cpu", findings_engine=engine)
    async with app.run_test(size=(120, 35)) as pilot:
        screen = await attached(pilot, app, "cpu")
        app.session_factory.sessions[0].inject(stack_frame(END - 0.3, (path, 30)))
        await wait_for(pilot, lambda: screen.snapshot.calltree.find(path) is not None)
        await wait_for(pilot, lambda: bool(screen.snapshot.findings))
        assert screen.snapshot.findings[0].path == path
        screen.query_one("#findings-list").focus()
        await pilot.press("enter")
        tree = screen.query_one(CallTreeWidget)
        await wait_for(pilot, lambda: tree.cursor_node is not None
                       and tree.cursor_node.data == path)
        node = tree.cursor_node
        while node.parent is not None and node.parent.data:
            assert node.parent.is_expanded
            node = node.parent
        assert tree.related[-1] == path
        label = node_label(screen.snapshot.calltree.find(path), 1, path in tree.related)
        assert any("reverse" in str(span.style) for span in label.spans)


async def test_answered_profile_reaches_the_export(tmp_path):
    import base64
    import gzip

    from tui.profiles.writer import build_profile

    msg = build_profile([("goroutine", "count")],
                        [(("runtime.goexit", "main.(*leaker).wait"), [150])])
    data = gzip.compress(msg.SerializeToString())
    app = make_app("leak", export_dir=tmp_path)
    async with app.run_test(size=(120, 35)) as pilot:
        screen = await attached(pilot, app, "leak")
        session = app.session_factory.sessions[0]
        await wait_for(pilot, lambda: "goroutine" in screen.profiles.in_flight())
        req = next(c["id"] for c in session.sent if c.get("profile") == "goroutine")
        session.inject({"v": 1, "kind": "profile", "t": int(END * 1e9), "id": req,
                        "profile": "goroutine", "seconds": 0, "size": len(data),
                        "empty": False, "note": "", "data": base64.b64encode(data).decode()})
        await wait_for(pilot, lambda: "goroutine" not in screen.profiles.in_flight())
        await pilot.press("e")
        await wait_for(pilot, lambda: screen.last_export is not None, timeout=30)
        with tarfile.open(screen.last_export) as tar:
            base = screen.last_export.name.removesuffix(".tar.gz")
            folded = tar.extractfile(f"{base}/goroutine.folded").read().decode()
        assert "runtime.goexit;main.(*leaker).wait 150" in folded
