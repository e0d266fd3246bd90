"""Call tree aggregation, windows, freeze and reset (pure model, no Textual)."""

from __future__ import annotations

from collections import Counter

import pytest

from tui.models.calltree import CallTreeModel, build_tree, function_totals, hot_path

MAIN = ("runtime.goexit", "main.main")


def stacks(*pairs: tuple[tuple[str, ...], int]) -> list[tuple[tuple[str, ...], int]]:
    return list(pairs)


def test_tree_sums_cum_and_flat_top_down():
    root, total, hidden = build_tree(Counter({
        MAIN + ("main.work", "main.fib"): 6,
        MAIN + ("main.work",): 2,
        MAIN + ("main.idle",): 2,
    }))
    assert total == 10 and hidden == 0
    (goexit,) = root.children
    (main,) = goexit.children
    work, idle = main.children  # heaviest first
    assert (work.name, work.cum, work.flat) == ("main.work", 8, 2)
    assert (idle.name, idle.cum, idle.flat) == ("main.idle", 2, 2)
    assert work.children[0].path == MAIN + ("main.work", "main.fib")
    assert work.children[0].flat == 6


def test_recursion_is_separate_nodes_but_counted_once_per_function():
    rec = MAIN + ("main.fib", "main.fib", "main.fib")
    root, total, _ = build_tree(Counter({rec: 4}))
    node = root
    for _ in range(5):
        node = node.children[0]
    assert node.name == "main.fib" and node.flat == 4 and node.cum == 4
    tops = {r.name: r for r in function_totals(Counter({rec: 4, MAIN: 4}))}
    assert tops["main.fib"].cum == 4  # not 12
    assert tops["main.fib"].flat == 4
    assert tops["main.main"].cum == 8 and tops["main.main"].flat == 4


def test_min_share_hides_small_nodes_but_keeps_parent_totals():
    root, total, hidden = build_tree(Counter({MAIN + ("big",): 999, MAIN + ("tiny",): 1}), 0.01)
    main = root.children[0].children[0]
    assert [c.name for c in main.children] == ["big"]
    assert main.cum == 1000 and hidden == 1


def test_hot_path_follows_heaviest_child():
    root, _, _ = build_tree(Counter({MAIN + ("a", "b"): 70, MAIN + ("c",): 30}))
    assert hot_path(root)[-1] == MAIN + ("a", "b")


def test_unresolved_frames_are_kept_as_address_and_module():
    root, _, _ = build_tree(Counter({("0x7f3a2b1c4d5e [libc.so.6]",): 3}))
    assert root.children[0].name == "0x7f3a2b1c4d5e [libc.so.6]"


def test_windows_select_recent_seconds():
    m = CallTreeModel(min_share=0)
    for sec in range(100, 200):  # 100 s of one sample per second of "old"
        m.add(sec + 0.5, [(("old",), 1)])
    for sec in range(200, 205):
        m.add(sec + 0.5, [(("new",), 10)])
    m.set_window("10s")
    v = m.view()
    names = {c.name: c.cum for c in v.root.children}
    assert names["new"] == 50 and names["old"] == 5  # old seconds 195..199 fall in the window
    m.set_window("60s")
    assert {c.name: c.cum for c in m.view().root.children}["old"] == 55
    m.set_window("all")
    v = m.view()
    assert {c.name: c.cum for c in v.root.children} == {"old": 100, "new": 50}
    assert v.window_label == "since attach"
    with pytest.raises(ValueError, match="unknown window"):
        m.set_window("5m")


def test_buckets_are_bounded_for_flat_memory():
    m = CallTreeModel(keep_seconds=60)
    for sec in range(10_000):
        m.add(float(sec), [(("x",), 1)])
    assert len(m._buckets) <= 61


def test_freeze_keeps_the_tree_while_counting_goes_on():
    m = CallTreeModel(min_share=0)
    m.add(100.0, [(("a",), 5)])
    m.freeze(True)
    m.add(101.0, [(("b",), 50)])
    v = m.view()
    assert v.frozen and v.total == 5 and [c.name for c in v.root.children] == ["a"]
    m.freeze(False)
    v = m.view()
    assert not v.frozen and v.total == 55 and v.root.children[0].name == "b"


def test_reset_forgets_everything():
    m = CallTreeModel()
    m.add(100.0, [(("a",), 5)])
    m.reset()
    assert m.view().total == 0
    m.add(101.0, [(("b",), 1)])
    m.set_window("all")
    assert [c.name for c in m.view().root.children] == ["b"]


def test_find_by_path_is_stable_identity():
    m = CallTreeModel(min_share=0)
    m.add(1.0, [(MAIN + ("a",), 1)])
    path = MAIN + ("a",)
    first = m.view().find(path)
    m.add(2.0, [(MAIN + ("z",), 10)])
    second = m.view().find(path)
    assert first is not None and second is not None
    assert first.path == second.path == path and second.cum == 1
    assert m.view().find(MAIN + ("missing",)) is None


def test_each_distinct_stack_is_stored_once_however_many_frames_bring_it():
    m = CallTreeModel()
    for sec in range(100, 130):
        # Every frame decodes fresh strings and tuples, as JSON frames do.
        fresh = tuple("".join(["main.", name]) for name in ("main", "work", "fib"))
        m.add(sec + 0.5, [(fresh, 2), (fresh[:2], 1)])
    keys = {id(k) for _, bucket in m._buckets for k in bucket}
    assert len(keys) == 2  # one tuple per distinct stack, shared by all 30 buckets
    names = {id(n) for _, bucket in m._buckets for k in bucket for n in k}
    assert len(names) == 3
    assert m.window_stacks()[("main.main", "main.work", "main.fib")] == 60
    m.reset()
    assert not m._stacks and not m._names
