"""The frame/command protocol, property-based: what is encoded decodes to the same
thing, and no line of garbage raises anything but FrameError."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bpf import schema

json_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.text(max_size=30) \
    | st.floats(allow_nan=False, allow_infinity=False)
json_values = st.recursive(
    json_scalars,
    lambda kids: st.lists(kids, max_size=4)
    | st.dictionaries(st.text(max_size=10), kids, max_size=4),
    max_leaves=15,
)


@st.composite
def frames(draw):
    kind = draw(st.sampled_from(schema.FRAME_KINDS))
    fields = {f: draw(json_values) for f in schema.FRAME_FIELDS[kind]}
    extra = draw(st.dictionaries(st.text(min_size=1, max_size=8).filter(
        lambda k: k not in ("v", "t", "kind")), json_values, max_size=3))
    fields.update({k: v for k, v in extra.items() if k not in fields})
    t = draw(st.integers(0, 2**63 - 1))
    return schema.make_frame(kind, t=t, **fields)


@st.composite
def commands(draw):
    cmd = draw(st.sampled_from(schema.COMMANDS))
    fields = {f: draw(json_values) for f in schema.COMMAND_FIELDS[cmd]}
    return schema.make_command(cmd, **fields)


@given(frames())
@settings(max_examples=200, deadline=None)
def test_frame_round_trip(frame) -> None:
    line = schema.encode(frame)
    assert line.endswith("\n") and "\n" not in line[:-1]
    assert line.isascii()  # hostile names cannot put raw control bytes on the wire
    assert schema.decode_frame(line) == frame
    assert schema.decode_frame(line.encode()) == frame


@given(commands())
@settings(deadline=None)
def test_command_round_trip(cmd) -> None:
    assert schema.decode_command(schema.encode(cmd)) == cmd


@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
@settings(max_examples=300, deadline=None)
def test_garbage_raises_frame_error_only(data: bytes) -> None:
    for fn in (schema.decode_frame, schema.decode_command):
        try:
            fn(data)
        except schema.FrameError:
            pass


@given(json_values)
@settings(deadline=None)
def test_any_json_raises_frame_error_only(value) -> None:
    line = json.dumps(value)
    for fn in (schema.decode_frame, schema.decode_command):
        try:
            out = fn(line)
        except schema.FrameError:
            continue
        assert isinstance(out, dict)


@given(frames(), st.sampled_from(["v", "t", "kind"]))
@settings(deadline=None)
def test_a_frame_without_its_envelope_is_refused(frame, key) -> None:
    del frame[key]
    with pytest.raises(schema.FrameError):
        schema.decode_frame(schema.encode(frame))


def test_missing_required_field_and_newer_version() -> None:
    with pytest.raises(schema.FrameError, match="missing"):
        schema.decode_frame('{"v":1,"t":5,"kind":"bye","reason":"x"}')
    with pytest.raises(schema.FrameError, match="newer"):
        schema.decode_frame('{"v":99,"t":5,"kind":"bye","reason":"x","detached":0}')
    with pytest.raises(schema.FrameError):
        schema.make_frame("nonsense")
    with pytest.raises(schema.FrameError):
        schema.make_command("profile", id="x")


stack_frames = st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=8).map(tuple)


@given(st.lists(st.tuples(stack_frames, st.integers(1, 10**6)), max_size=30))
@settings(deadline=None)
def test_intern_expand_stacks(stacks) -> None:
    funcs, packed = schema.intern_stacks(stacks)
    assert len(funcs) == len(set(funcs))  # each name crosses the wire once
    frame = schema.make_frame("cpu_stacks", interval_ns=1, hz=49, samples=0, lost=0,
                              funcs=funcs, stacks=packed)
    back = schema.decode_frame(schema.encode(frame))
    assert schema.expand_stacks(back) == [(tuple(f), c) for f, c in stacks]


@given(st.lists(st.text(max_size=5), max_size=3), json_values)
@settings(deadline=None)
def test_expand_bad_indices_raises_frame_error(funcs, stacks) -> None:
    frame = {"funcs": funcs, "stacks": stacks}
    try:
        schema.expand_stacks(frame)
    except schema.FrameError:
        pass


def test_profile_frame_carries_the_profile_as_served():
    import base64

    from bpf.schema import decode_frame, encode, profile_frame

    raw = b"\x1f\x8b gzipped bytes"
    f = decode_frame(encode(profile_frame("p1", "heap", 0, raw, False, t=5, source="pod_proxy")))
    assert base64.b64decode(f["data"]) == raw and f["size"] == len(raw)
    assert (f["id"], f["profile"], f["t"], f["source"]) == ("p1", "heap", 5, "pod_proxy")


def test_empty_profile_notes_name_the_line_that_enables_them():
    from bpf.schema import empty_profile_note

    assert "SetMutexProfileFraction(5)" in empty_profile_note("mutex", mutex_fraction=0)
    assert "SetMutexProfileFraction(5)" in empty_profile_note("mutex")  # unknown: say how
    assert "enabled but no goroutine waited" in empty_profile_note("mutex", mutex_fraction=5)
    assert "SetBlockProfileRate" in empty_profile_note("block")
    assert "these 7 s" in empty_profile_note("cpu", 7)
    assert empty_profile_note("heap") == ""
