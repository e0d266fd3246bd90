"""Export bundles: every profile opens in `go tool pprof -top` and its top
function matches the console's call tree; report, folded stacks, redaction."""

from __future__ import annotations

import base64
import json
import tarfile

import pytest
from findings_frames import APP, T0, S, cpu
from findings_local import faultsvc, pprof_top

from bpf.schema import make_frame
from tui.export import build_bundle, export_bundle, export_session
from tui.findings import FindingsEngine
from tui.findings.report import Report
from tui.models.calltree import CallTreeModel
from tui.profiles import Profile, cpu_profile_stacks


def _name(s: str) -> str:
    return s.removesuffix(" (inline)")


def profile_frame(kind: str, data: bytes, t: int, seconds: int = 0) -> dict:
    return make_frame("profile", t=t, id=f"x-{kind}", profile=kind, seconds=seconds,
                      data=base64.b64encode(data).decode(), size=len(data), empty=False, note="")


@pytest.fixture(scope="module")
def real_frames(go_bin):
    """Profiles of a CPU-heavy faultsvc, as profile frames (as the agent sends them)."""
    with faultsvc(go_bin, "cpu") as svc:
        frames = [profile_frame("cpu", svc.get("profile?seconds=2", timeout=30), T0 + 2 * S, 2)]
        for kind, q in (("heap", "heap"), ("goroutine", "goroutine"),
                        ("mutex", "mutex?seconds=1"), ("block", "block?seconds=1")):
            frames.append(profile_frame(kind, svc.get(q), T0 + 3 * S, 1 if "seconds" in q else 0))
    return frames + cpu(5, [(APP + ("main.hashPassword", "crypto/sha256.block"), 40),
                            (APP + ("main.handle",), 5)])


@pytest.mark.slow
def test_every_exported_profile_opens_and_matches_the_call_tree(real_frames, go_tool, tmp_path):
    eng = FindingsEngine()
    for f in real_frames:
        eng.feed(f)
    rep = Report(eng.evaluate(), target={"namespace": "local", "pod": "cpu"})
    out = export_bundle(tmp_path / "bundle", real_frames, rep, svg="<svg>token=abc</svg>")
    names = {p.name for p in out.iterdir()}
    for kind in ("cpu", "heap", "goroutine", "mutex", "block", "cpu-ebpf"):
        assert f"{kind}.pb.gz" in names and f"{kind}.folded" in names, kind
    assert {"findings.json", "findings.md", "screenshot.svg", "MANIFEST.txt"} <= names
    for pb in sorted(out.glob("*.pb.gz")):
        prof = Profile.from_file(str(pb))
        if prof.empty:
            continue
        rows = pprof_top(go_tool, pb)  # raises if pprof cannot open it
        assert rows, pb.name
    # The console's call tree on the same pprof CPU frame names the same leader
    model = CallTreeModel()
    model.add(T0 / 1e9, cpu_profile_stacks(real_frames[0]), "pprof")
    top = model.view().top[0].name
    assert _name(pprof_top(go_tool, out / "cpu.pb.gz")[0][2]) == top
    # and for the eBPF samples, exported as cpu-ebpf.pb.gz
    model = CallTreeModel()
    for f in real_frames:
        if f["kind"] == "cpu_stacks":
            from bpf.schema import expand_stacks

            model.add(f["t"] / 1e9, expand_stacks(f), "ebpf")
    assert _name(pprof_top(go_tool, out / "cpu-ebpf.pb.gz")[0][2]) == model.view().top[0].name
    assert model.view().top[0].name == "crypto/sha256.block"
    # report files
    doc = json.loads((out / "findings.json").read_text())
    assert doc["schema"] == "go-k8s-debug/diagnose-report" and doc["findings"]
    assert "GKD006-cpu-hotspot" in (out / "findings.md").read_text()
    assert "abc" not in (out / "screenshot.svg").read_text()
    folded = (out / "cpu-ebpf.folded").read_text().splitlines()
    assert folded[0].endswith(" 200") or any(" 200" in line for line in folded)


def test_archive_and_cpu_from_ebpf_when_no_pprof(tmp_path):
    frames = cpu(3, [(APP + ("main.spin",), 10)])
    path = export_bundle(tmp_path / "out.tar.gz", frames)
    assert path.name == "out.tar.gz"
    with tarfile.open(path) as tar:
        members = {m.name for m in tar.getmembers()}
        assert "out/cpu.pb.gz" in members and "out/cpu-ebpf.pb.gz" in members
        data = tar.extractfile("out/cpu.pb.gz").read()
    p = Profile.from_bytes(data)
    assert p.top(n=1)[0].name == "main.spin" and p.total("samples") == 30


def test_bad_profile_frames_are_skipped_with_a_note():
    bad = make_frame("profile", t=T0, id="h", profile="heap", seconds=0,
                     data=base64.b64encode(b"junk").decode(), size=4, empty=False, note="")
    files = build_bundle([bad])
    assert "heap.pb.gz" not in files
    assert b"heap: skipped, not a valid profile" in files["MANIFEST.txt"]


def test_export_session_redacts_planted_secrets(tmp_path):
    from tui.profiles.writer import build_profile

    secret = build_profile([("goroutine", "count")],
                           [(APP + ("main.call /v1?password=hunter2",), [4])])
    import gzip

    frames = [profile_frame("goroutine", gzip.compress(secret.SerializeToString()), T0)]
    frames += cpu(3, [(APP + ("main.spin Authorization: Bearer abc.def",), 10)])
    out = export_session(tmp_path / "b", frames, svg="<svg>Bearer zzz</svg>")
    for p in out.iterdir():
        raw = p.read_bytes()
        if p.suffix == ".gz":
            import gzip as gz

            raw = gz.decompress(raw)
        assert b"hunter2" not in raw and b"abc.def" not in raw and b"zzz" not in raw, p.name
