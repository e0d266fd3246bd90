"""Pod table model: filter as you type, order, row keys, hostile names."""

from __future__ import annotations

from tui.models.pods import PodTableModel, format_age, pod_row
from tui.models.text import clean
from tui.sources.base import PodEvent, PodInfo


def pod(ns: str, name: str, **kw) -> PodInfo:
    base = dict(uid="u", status="Running", ready="1/1", restarts=0, created=1000.0,
                node="node-1", cpu_limit="500m", pprof_port=6060)
    base.update(kw)
    return PodInfo(namespace=ns, name=name, **base)


def test_filter_matches_all_words_across_fields_and_labels():
    m = PodTableModel()
    m.apply(PodEvent("RESET", pods=(
        pod("demo", "leak-1", labels={"fault": "leak"}),
        pod("demo", "cpu-1", node="node-2"),
        pod("prod", "api-1", status="CrashLoopBackOff"),
    )))
    m.set_filter("demo")
    assert [r.key for r in m.rows(2000)] == ["demo/cpu-1", "demo/leak-1"]
    m.set_filter("fault=leak")
    assert [r.key for r in m.rows(2000)] == ["demo/leak-1"]
    m.set_filter("DEMO node-2")
    assert [r.key for r in m.rows(2000)] == ["demo/cpu-1"]
    m.set_filter("crashloop")
    assert [r.key for r in m.rows(2000)] == ["prod/api-1"]
    m.set_filter("nothing-matches")
    assert m.rows(2000) == []


def test_events_add_modify_delete_by_key():
    m = PodTableModel()
    m.apply(PodEvent("RESET", pods=(pod("a", "x"),)))
    m.apply(PodEvent("ADDED", pod=pod("a", "y")))
    m.apply(PodEvent("MODIFIED", pod=pod("a", "x", restarts=3)))
    m.apply(PodEvent("DELETED", pod=pod("a", "y")))
    m.apply(PodEvent("STATUS", message="reconnecting in 4 s"))
    rows = m.rows(2000)
    assert [r.key for r in rows] == ["a/x"]
    assert rows[0].cell("restarts") == "3"
    assert m.status_message == "reconnecting in 4 s"


def test_row_cells_are_kubectl_like():
    r = pod_row(pod("demo", "p", cpu_limit=None, pprof_port=None, node=None), now=1000 + 7200)
    assert r.cell("age") == "2h"
    assert r.cell("cpu") == "-" and r.cell("pprof") == "-" and r.cell("node") == "<none>"
    assert [format_age(s) for s in (5, 600, 10_000, 500_000)] == ["5s", "10m", "2h", "5d"]


def test_hostile_names_keep_markup_text_and_lose_escapes():
    r = pod_row(pod("demo", "evil-[bold red]pod[/]\x1b[31m\x07"), now=1000)
    assert r.cell("name") == "evil-[bold red]pod[/]?"
    assert "\x1b" not in clean("\x1b]8;;http://x\x07link\x1b]8;;\x07")
    assert clean("a\u202eb") == "a?b"  # right-to-left override can't reorder the line
    assert clean("x" * 600, limit=10) == "x" * 9 + "…"


def test_typing_narrows_and_widens_like_a_fresh_filter():
    """The model filters the last matches while the text grows; every step must
    equal a fresh model's answer, also after backspace and pod changes."""
    pods = tuple(pod(f"ns{i % 3}", f"svc-{i % 7}-{i}", labels={"tier": "be" if i % 2 else "fe"})
                 for i in range(60))
    m = PodTableModel()
    m.apply(PodEvent("RESET", pods=pods))

    def fresh(text: str, extra=()) -> list[str]:
        f = PodTableModel()
        f.apply(PodEvent("RESET", pods=pods + tuple(extra)))
        f.set_filter(text)
        return [r.key for r in f.rows(2000)]

    for text in ("s", "svc", "svc-3", "svc-3 ", "svc-3 t", "svc-3 tier=b", "svc-3", "ns1",
                 "NS1 svc-2", ""):
        m.set_filter(text)
        assert [r.key for r in m.rows(2000)] == fresh(text), text
    m.set_filter("svc-3")
    m.rows(2000)
    late = pod("ns0", "svc-3-late")
    m.apply(PodEvent("ADDED", pod=late))
    m.set_filter("svc-3-")
    assert [r.key for r in m.rows(2000)] == fresh("svc-3-", (late,))
    assert "ns0/svc-3-late" in [r.key for r in m.rows(2000)]
    # limit builds only the first rows; match_count still counts all.
    m.set_filter("svc")
    assert len(m.rows(2000, limit=5)) == 5 and m.match_count == 61


def test_view_builds_rows_lazily_with_ages_at_its_moment_and_finds_keys():
    m = PodTableModel()
    m.apply(PodEvent("RESET", pods=tuple(pod("ns", f"p{i}", created=1000.0 - i * 60)
                                          for i in range(5))))
    m.set_filter("p")
    view = m.view(1000.0 + 3600)
    assert len(view) == 5 and m.match_count == 5
    assert [view.key(i) for i in range(5)] == [f"ns/p{i}" for i in range(5)]
    assert view[0].cell("age") == "60m" and view[4].cell("age") == "64m"
    assert [r.key for r in view[1:3]] == ["ns/p1", "ns/p2"]
    assert view.index_of("ns/p3") == 3 and view.index_of("ns/nope") is None
    # A later change makes a new view; the old one stays as it was.
    m.apply(PodEvent("DELETED", pod=pod("ns", "p0")))
    assert len(m.view(1000.0)) == 4 and len(view) == 5 and view.index_of("ns/p0") == 0
