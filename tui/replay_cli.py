"""`go-k8s-debug replay FILE`: open the console on a recording.

    go-k8s-debug replay incident.rec.gz                # as recorded
    go-k8s-debug replay incident.rec.gz --speed 4 --start 90s
    go-k8s-debug replay incident.rec.gz --report json  # no UI: the findings, as diagnose

The console runs on the recording's clock; pause/resume and seek are on the
replay session (``tui.sources.replay``). ``--report`` evaluates the findings
over the whole recording and exits with diagnose's exit codes.
"""

from __future__ import annotations

import argparse
import sys

from tui.diagnose_cli import UsageError, _Parser, parse_duration
from tui.findings.report import EXIT_UNMEASURED, EXIT_USAGE


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="go-k8s-debug replay", description="Open the console on a recording.")
    p.add_argument("file", help="a recording written with --record")
    p.add_argument("--speed", type=float, default=1.0,
                   help="playback speed (1 = as recorded, 0 = as fast as possible)")
    p.add_argument("--start", type=parse_duration, default=None, metavar="OFFSET",
                   help="start this far into the recording (e.g. 90s)")
    p.add_argument("--paused", action="store_true", help="open paused")
    p.add_argument("--report", choices=("text", "json", "markdown"),
                   help="print the findings of the whole recording instead of opening the UI")
    p.add_argument("--export", metavar="DIR", help="with --report: also write an export bundle")
    return p


def report_of(recording) -> object:  # -> Report
    """The findings of a whole recording, as ``diagnose`` would have reported them."""
    from tui.findings.engine import FindingsEngine
    from tui.findings.report import Report

    frames = recording.frames
    span_s = (recording.end_ns - recording.start_ns) / 1e9 if frames else 0
    eng = FindingsEngine(window_s=max(60.0, span_s + 5))
    for f in frames:
        eng.feed(f)
    findings = eng.evaluate(recording.end_ns) if frames else []
    info = recording.session_info()
    profiles = {}
    for f in frames:
        if f.get("kind") == "profile":
            profiles[str(f["profile"])] = {"fetched": True, "empty": bool(f.get("empty")),
                                           "note": str(f.get("note") or "")}
    reachable = any(f.severity != "not_measured" for f in findings)
    return Report(
        findings,
        target={"namespace": info.pod.namespace, "pod": info.pod.name, "uid": info.pod.uid,
                "node": info.node, "container": info.container,
                "transport": recording.header.get("transport") or "replay"},
        start_ns=recording.start_ns, end_ns=recording.end_ns, reachable=reachable,
        profiles=profiles,
        errors=[{k: str(f.get(k, "")) for k in ("code", "msg", "hint")}
                for f in frames if f.get("kind") == "error" and f.get("origin") != "console"],
        frames_received=len(frames), frames_bad=eng.bad_frames + recording.unparsed,
    )


def main(argv: list[str] | None = None) -> int:
    from tui.record import RecordingError, read_recording

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.speed < 0:
            raise UsageError("--speed must be 0 or more")
    except UsageError as e:
        parser.print_usage(sys.stderr)
        sys.stderr.write(f"go-k8s-debug replay: {e}\n")
        return EXIT_USAGE
    try:
        rec = read_recording(args.file)
    except (RecordingError, OSError) as e:
        sys.stderr.write(f"go-k8s-debug replay: {e}\n")
        return EXIT_UNMEASURED if isinstance(e, RecordingError) else EXIT_USAGE
    if rec.unparsed:
        sys.stderr.write(f"go-k8s-debug replay: {rec.unparsed} lines of {args.file} are not "
                         "frames and were skipped\n")
    if args.report:
        rep = report_of(rec)
        if args.export:
            from tui.export import export_bundle

            where = export_bundle(args.export, rec.frames, rep)
            sys.stderr.write(f"go-k8s-debug replay: exported to {where}\n")
        sys.stdout.write(rep.render(args.report))  # type: ignore[attr-defined]
        return rep.exit_code  # type: ignore[attr-defined]

    try:
        app = make_app(rec, speed=args.speed or None, start_s=args.start or 0.0,
                       paused=args.paused, label=args.file)
    except ImportError as e:
        sys.stderr.write(f"go-k8s-debug replay: the console UI is not available ({e})\n")
        return EXIT_USAGE
    app.run()
    return int(getattr(app, "return_code", 0) or 0)


def make_app(rec, speed: float | None = 1.0, start_s: float = 0.0, paused: bool = False,
             label: str = "recording"):
    """The console on a recording: its one pod listed and attached at once,
    frames from a ``ReplaySession``, the clock of the recording."""
    from tui.app import GoDebugApp
    from tui.sources.recorded import RecordedPodSource
    from tui.sources.replay import ReplayClock, ReplaySessionFactory

    factory = ReplaySessionFactory(rec, speed=speed, start_s=start_s, paused=paused)
    pod = rec.pod
    source = RecordedPodSource({"recording": [pod]}, status=f"replay of {label}")
    app = GoDebugApp(source, factory, ReplayClock(factory), namespace=pod.namespace,
                     initial_pod=pod.key)
    app.replay = factory  # the console's replay keys reach the session through this
    return app


if __name__ == "__main__":
    sys.exit(main())
