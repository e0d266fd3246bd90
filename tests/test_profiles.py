"""pprof decoding and writing: real profiles from a real Go process, checked
against `go tool pprof -top`; plus unit tests of the edge cases."""

from __future__ import annotations

import gzip

import pytest
from findings_local import faultsvc, pprof_top

from tui.profiles import (
    Profile,
    ProfileError,
    call_tree,
    cpu_profile_from_frames,
    cpu_profile_from_stacks,
    folded_stacks,
    write_profile,
)
from tui.profiles import profile_pb2 as pb


def _ns(text: str) -> float:
    """pprof's printed duration (``1540ms``, ``3.56s``, ``20us``) in ns."""
    import re

    m = re.fullmatch(r"([\d.]+)(ns|us|µs|ms|s|mins|hrs)", text)
    assert m, text
    mult = {"ns": 1, "us": 1e3, "µs": 1e3, "ms": 1e6, "s": 1e9, "mins": 60e9, "hrs": 3600e9}
    return float(m.group(1)) * mult[m.group(2)]


def _name(row_name: str) -> str:
    return row_name.removesuffix(" (inline)")


@pytest.mark.slow
def test_real_cpu_profile_matches_go_tool_pprof(go_bin, go_tool, tmp_path):
    with faultsvc(go_bin, "cpu") as svc:
        data = svc.get("profile?seconds=2", timeout=30)
        gr = svc.get("goroutine")
        heap = svc.get("heap")
        mutex = svc.get("mutex")
    path = tmp_path / "cpu.pb.gz"
    path.write_bytes(data)
    p = Profile.from_bytes(data)
    assert [str(s) for s in p.sample_types] == ["samples/count", "cpu/nanoseconds"]
    assert p.default_sample_type == "cpu"
    assert 1.9e9 < p.duration_ns < 3e9
    assert p.period == 10_000_000
    ours = p.top(n=5)
    theirs = pprof_top(go_tool, path)
    assert ours and theirs
    # Same leader, same flat value (pprof prints ms)
    assert _name(theirs[0][2]) == ours[0].name
    assert abs(_ns(theirs[0][0]) - ours[0].flat) <= 5_000_000
    # cum of the leader agrees too
    assert abs(_ns(theirs[0][1]) - ours[0].cum) <= 5_000_000
    # totals: sum of all stacks = the profile's total
    assert p.total() == sum(v for _, v in p.stacks())
    # other kinds decode with their own sample types
    assert [s.type for s in Profile.from_bytes(gr).sample_types] == ["goroutine"]
    hp = Profile.from_bytes(heap)
    assert hp.default_sample_type == "inuse_space"
    assert hp.sample_index("alloc_space") == 1
    mp = Profile.from_bytes(mutex)
    assert [s.type for s in mp.sample_types] == ["contentions", "delay"]
    assert Profile.from_bytes(gr).total() >= 3  # main, the load workers, the servers


@pytest.mark.slow
def test_profile_written_from_stacks_opens_in_go_tool_pprof(go_tool, tmp_path):
    stacks = [(("runtime.goexit", "main.main", "main.hashPassword", "crypto/sha256.block"), 80),
              (("runtime.goexit", "main.main", "main.handle"), 15),
              (("runtime.goexit", "0x7f0012 [libc.so.6]"), 4)]
    path = tmp_path / "ebpf.pb.gz"
    write_profile(cpu_profile_from_stacks(stacks, hz=49, time_ns=1_764_100_000_000_000_000,
                                          duration_ns=2_000_000_000), str(path))
    rows = pprof_top(go_tool, path)
    assert _name(rows[0][2]) == "crypto/sha256.block"
    # 80 samples at 49 Hz = 80 * 20.408163 ms
    assert abs(_ns(rows[0][0]) - 80 * round(1e9 / 49)) < 1e6
    back = Profile.from_file(str(path))
    assert back.top(n=1)[0].name == "crypto/sha256.block"
    assert back.total("samples") == 99


def test_inlined_lines_expand_caller_first():
    msg = pb.Profile()
    msg.string_table.extend(["", "samples", "count", "main.outer", "main.inlined", "main.leaf"])
    st = msg.sample_type.add()
    st.type, st.unit = 1, 2
    for fid, name in ((1, 3), (2, 4), (3, 5)):
        f = msg.function.add()
        f.id, f.name = fid, name
    loc = msg.location.add()  # one location: inlined callee first, caller last
    loc.id = 1
    for fid in (2, 1):
        ln = loc.line.add()
        ln.function_id = fid
    loc2 = msg.location.add()
    loc2.id = 2
    loc2.line.add().function_id = 3
    s = msg.sample.add()
    s.location_id.extend([2, 1])  # leaf first
    s.value.append(7)
    p = Profile.from_bytes(gzip.compress(msg.SerializeToString()))
    assert p.stacks() == [(("main.outer", "main.inlined", "main.leaf"), 7)]
    assert p.folded() == "main.outer;main.inlined;main.leaf 7\n"
    top = {r.name: r for r in p.top()}
    assert top["main.leaf"].flat == 7 and top["main.outer"].cum == 7


def test_raw_and_gzip_and_empty_inputs():
    msg = cpu_profile_from_stacks([(("a", "b"), 2)], hz=100)
    raw = msg.SerializeToString()
    assert Profile.from_bytes(raw).total() == Profile.from_bytes(gzip.compress(raw)).total()
    empty = Profile.from_bytes(b"")
    assert empty.empty and empty.stacks() == [] and empty.folded() == ""


@pytest.mark.parametrize("bad", [b"not a profile at all", gzip.compress(b"\xff\xff\xff"),
                                 b"\x1f\x8b\x08\x00garbage", gzip.compress(b"hello")[:12]])
def test_bad_data_raises_a_clear_error(bad):
    with pytest.raises(ProfileError) as e:
        Profile.from_bytes(bad)
    assert "profile" in str(e.value)


def test_unknown_sample_type_names_the_ones_it_has():
    p = Profile(cpu_profile_from_stacks([(("a",), 1)], hz=100))
    with pytest.raises(ProfileError, match="samples/count, cpu/nanoseconds"):
        p.stacks("inuse_space")


def test_folded_stacks_merge_and_escape():
    out = folded_stacks([(("a", "b;c"), 1), (("a", "b;c"), 2), (("x\ny",), 1)])
    assert out == "a;b:c 3\nx y 1\n"


def test_call_tree_cum_flat_and_hot_path():
    root = call_tree([(("m", "a", "b"), 5), (("m", "a"), 2), (("m", "c"), 1)])
    assert root.cum == 8
    a = root.children["m"].children["a"]
    assert (a.cum, a.flat) == (7, 2)
    assert root.hottest_path() == ("m", "a", "b")


def test_cpu_profile_from_ebpf_frames_scales_and_windows():
    from bpf.schema import intern_stacks, make_frame

    funcs, st = intern_stacks([(("main.main", "main.spin"), 49)])
    frames = [make_frame("cpu_stacks", t=10_000_000_000 + i * 1_000_000_000,
                         interval_ns=1_000_000_000, hz=49, samples=49, lost=0, funcs=funcs,
                         stacks=st) for i in range(3)]
    p = cpu_profile_from_frames(frames)
    assert p.total("samples") == 147
    assert p.duration_ns == 3_000_000_000 and p.time_ns == 9_000_000_000
    assert p.period == round(1e9 / 49)


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as hst  # noqa: E402


@settings(max_examples=300, deadline=None)
@given(hst.binary(max_size=400))
def test_arbitrary_bytes_decode_or_raise_profile_error(data):
    for blob in (data, gzip.compress(data)):
        try:
            p = Profile.from_bytes(blob)
        except ProfileError:
            continue
        # whatever decodes must be usable without other exceptions
        for i in range(len(p.sample_types)):
            p.stacks(i)
            p.folded(i)
            p.top(i)
