"""Export: the evidence of a session as files another engineer can open.

A bundle (a directory, or a ``.tar.gz``/``.tgz`` archive when the target name
ends so) holds:

- ``cpu.pb.gz``, ``heap.pb.gz``, ``goroutine.pb.gz``, ``mutex.pb.gz``,
  ``block.pb.gz``: the newest non-empty profile of each kind as fetched from
  the app's pprof (``go tool pprof FILE`` opens them);
- ``cpu-ebpf.pb.gz``: the eBPF CPU samples of the session as a CPU profile
  (and ``cpu.pb.gz`` itself when no pprof CPU profile was fetched);
- ``*.folded``: folded stacks (``root;child;leaf N``) of each profile, for
  flamegraph.pl, speedscope, inferno;
- ``findings.json`` (the diagnose report schema) and ``findings.md``;
- ``screenshot.svg`` when the console exported (it passes its SVG);
- ``MANIFEST.txt``: what each file is and the wall-clock window it covers.

Everything written passes through ``tui.redact`` (profile string tables
included), so tokens and passwords that reached a symbol, a label or a path
do not leave with the bundle.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import os
import tarfile
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tui.findings.model import fmt_window
from tui.profiles.pprof import Profile, ProfileError
from tui.profiles.writer import cpu_profile_from_frames
from tui.redact import redact_obj, redact_profile_bytes, redact_text

PROFILE_KINDS = ("cpu", "heap", "goroutine", "mutex", "block")
# The sample type whose folded stacks are most useful per kind.
FOLDED_TYPE = {"cpu": "cpu", "heap": "inuse_space", "goroutine": None, "mutex": "delay",
               "block": "delay", "cpu-ebpf": "samples"}


def _profile_frames(frames: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for f in frames:
        if f.get("kind") == "profile" and f.get("data") and not f.get("empty"):
            out[str(f.get("profile"))] = f
    return out


def build_bundle(frames: list[dict[str, Any]], report: Any = None,
                 svg: str | None = None) -> dict[str, bytes]:
    """The bundle's files as ``{name: bytes}`` (redacted), without writing anything."""
    files: dict[str, bytes] = {}
    manifest: list[str] = []
    redactions = 0

    def add_profile(name: str, data: bytes, what: str) -> None:
        nonlocal redactions
        try:
            clean, n = redact_profile_bytes(data)
            prof = Profile.from_bytes(clean)
        except ProfileError as e:
            manifest.append(f"{name}: skipped, not a valid profile ({e})")
            return
        redactions += n
        files[f"{name}.pb.gz"] = clean if clean[:2] == b"\x1f\x8b" else prof.to_bytes()
        st = FOLDED_TYPE.get(name)
        try:
            folded = prof.folded(st) if st else prof.folded()
        except ProfileError:
            folded = prof.folded()
        files[f"{name}.folded"] = folded.encode()
        manifest.append(f"{name}.pb.gz: {what}; {name}.folded: its folded stacks")

    for kind, f in sorted(_profile_frames(frames).items()):
        if kind not in PROFILE_KINDS:
            continue
        try:
            data = base64.b64decode(f["data"])
        except (binascii.Error, ValueError):
            manifest.append(f"{kind}: skipped, its frame's data is not base64")
            continue
        t = int(f["t"])
        secs = float(f.get("seconds") or 0)
        start = t - int(secs * 1e9)
        window = fmt_window(start, t) if secs else f"as of {fmt_window(t, t).split('–')[0]} UTC"
        add_profile(kind, data, f"pprof {kind} profile as fetched, {window}")

    cpu_frames = [f for f in frames if f.get("kind") == "cpu_stacks"]
    if cpu_frames:
        prof = cpu_profile_from_frames(cpu_frames)
        if not prof.empty:
            win = fmt_window(prof.time_ns, prof.time_ns + prof.duration_ns)
            what = f"eBPF CPU samples of {win} as a CPU profile"
            add_profile("cpu-ebpf", prof.to_bytes(), what)
            if "cpu.pb.gz" not in files:
                add_profile("cpu", prof.to_bytes(), what + " (no pprof CPU profile was fetched)")

    if report is not None:
        d = redact_obj(report.to_dict())
        files["findings.json"] = (json.dumps(d, indent=2, ensure_ascii=False) + "\n").encode()
        files["findings.md"] = redact_text(report.to_markdown()).encode()
        manifest.append("findings.json: the report (schema go-k8s-debug/diagnose-report v1); "
                        "findings.md: the same as markdown")
    if svg:
        files["screenshot.svg"] = redact_text(svg).encode()
        manifest.append("screenshot.svg: the console as it was when exported")
    head = [f"go-k8s-debug export, {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}",
            f"secrets redacted: {redactions} in profiles (rules: tui/redact.py, README)", ""]
    files["MANIFEST.txt"] = ("\n".join(head + manifest) + "\n").encode()
    return files


def write_bundle(target: str | Path, files: dict[str, bytes]) -> Path:
    """A directory, or a gzipped tar when ``target`` ends in .tar.gz/.tgz."""
    target = Path(target)
    if target.name.endswith((".tar.gz", ".tgz")):
        target.parent.mkdir(parents=True, exist_ok=True)
        base = target.name.removesuffix(".tar.gz").removesuffix(".tgz")
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".export-")
        try:
            with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
                for name, data in sorted(files.items()):
                    ti = tarfile.TarInfo(f"{base}/{name}")
                    ti.size = len(data)
                    ti.mtime = int(time.time())
                    ti.mode = 0o644
                    tar.addfile(ti, io.BytesIO(data))
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target
    target.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (target / name).write_bytes(data)
    return target


def export_bundle(target: str | Path, frames: list[dict[str, Any]], report: Any = None,
                  svg: str | None = None) -> Path:
    """Build and write a bundle; returns where it went."""
    return write_bundle(target, build_bundle(frames, report, svg))


def export_session(target: str | Path, frames: list[dict[str, Any]],
                   svg: str | None = None, info: Any = None) -> Path:
    """For the console's export key: evaluate the findings on the frames it has,
    then write the bundle (profiles, folded stacks, report, screenshot)."""
    from tui.findings.engine import FindingsEngine
    from tui.findings.report import Report

    eng = FindingsEngine()
    for f in frames:
        eng.feed(f)
    findings = eng.evaluate()
    target_d: dict[str, Any] = {}
    if info is not None:
        target_d = {"namespace": info.pod.namespace, "pod": info.pod.name, "uid": info.pod.uid,
                    "node": info.node, "container": info.container, "transport": info.transport}
    ts = [int(f["t"]) for f in frames if f.get("t")]
    rep = Report(findings, target=target_d, start_ns=min(ts, default=0), end_ns=max(ts, default=0))
    return export_bundle(target, frames, rep, svg)
