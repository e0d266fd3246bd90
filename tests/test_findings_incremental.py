"""The findings engine's incremental CPU aggregation (sums kept at feed time,
subtracted as frames leave the window) equals a from-scratch computation.
Pure logic; the real-process tests of the same rules are in test_findings_real.py."""

from __future__ import annotations

from findings_frames import T0, S
from hypothesis import given, settings
from hypothesis import strategies as st

from bpf.schema import intern_stacks, make_frame
from tui.findings import FindingsEngine
from tui.findings.engine import _CpuAgg
from tui.profiles.pprof import top_functions

FUNCS = ["runtime.goexit", "main.main", "main.work", "main.hash", "runtime.mallocgc",
         "runtime.gcDrain", "syscall.Syscall", "runtime.asyncPreempt", "os.(*File).Write",
         "github.com/x/y.(*T).Run"]

stack_st = st.lists(st.sampled_from(FUNCS), min_size=1, max_size=8).map(tuple)
frame_st = st.lists(st.tuples(stack_st, st.integers(0, 50)), min_size=0, max_size=12)


def cpu_frames(frames: list[list[tuple[tuple[str, ...], int]]], gaps: list[int]) -> list[dict]:
    out, t = [], T0
    for stacks, gap in zip(frames, gaps, strict=False):
        t += gap * S
        funcs, packed = intern_stacks(stacks)
        out.append(make_frame("cpu_stacks", t=t, interval_ns=S, hz=99,
                              samples=sum(c for _, c in stacks), lost=0, funcs=funcs,
                              stacks=packed))
    return out


@settings(max_examples=60, deadline=None)
@given(frames=st.lists(frame_st, min_size=1, max_size=40),
       gaps=st.lists(st.integers(1, 9), min_size=40, max_size=40),
       window_s=st.sampled_from([5.0, 20.0, 60.0]))
def test_incremental_equals_from_scratch(frames, gaps, window_s):
    feed = cpu_frames(frames, gaps)
    eng = FindingsEngine(window_s=window_s)
    for i, f in enumerate(feed):
        eng.feed(f)
        if i % 7 == 3:
            eng.evaluate()  # interleaved evaluations must not disturb the sums
    # From scratch: a fresh engine fed only the frames still in the window.
    kept = [f for f in feed if f["t"] >= eng.last_t - eng.window_ns]
    fresh = FindingsEngine(window_s=window_s)
    for f in kept:
        fresh.feed(f)
    assert eng.evaluate() == fresh.evaluate()
    # And the running sums equal a direct aggregation of the kept frames' stacks.
    pairs = [(tuple(f["funcs"][i] for i in ids), c) for f in kept for c, ids in f["stacks"]]
    want = _CpuAgg.of(pairs)
    got = eng._cpu_sum
    assert (got.stacks, got.flat, got.cum, got.samples) == \
        (want.stacks, want.flat, want.cum, want.samples)
    # The flat/cum rows equal pprof's top_functions on the expanded stacks.
    view = want.view()
    assert view.rows == top_functions(list(view), None)


def test_window_shares_one_tuple_per_distinct_stack_and_forgets_old_ones():
    eng = FindingsEngine(window_s=5.0)
    a = ("runtime.goexit", "main.main", "main.work")
    for i in range(20):  # the same stack in 20 frames: decoded afresh each time
        eng.feed(cpu_frames([[(a, 3)]], [1])[0] | {"t": T0 + (i + 1) * S})
    held = {id(st) for _t, (_fr, agg) in eng._w["cpu"].frames for st in agg.stacks}
    assert len(held) == 1  # one shared tuple, not one per frame
    # A long run of distinct stacks that leave the window: the intern table is
    # rebuilt from what the window still holds, so it stays bounded.
    for i in range(20_000):
        stack = ("runtime.goexit", f"main.f{i}")
        eng.feed(cpu_frames([[(stack, 1)]], [1])[0] | {"t": T0 + (21 + i) * S})
    assert len(eng._stacks) <= 2 * len(eng._cpu_sum.stacks) + 4097
