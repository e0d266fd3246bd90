"""Take the README's screenshots from a real sandbox run.

    sudo .venv/bin/python screenshots/capture.py [--keep]      (or: make screenshots)

Starts the sandbox with its demo pods (unless one is already up), opens the
console on namespace ``demo`` exactly as ``make demo`` does, attaches over SSH to
a few demo pods, waits until their panes carry live numbers, and saves an SVG
(and a PNG, when rsvg-convert is installed) of each screen into screenshots/.
Nothing here is staged: every number on the pictures came from the run.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SIZE = (150, 46)

# (file name, pod to attach or None for the pod browser, seconds of live data to wait for)
SHOTS = [
    ("pods", None, 0.0),
    # Long enough for bcc to compile the CPU sampler on a busy machine and for a
    # minute of samples to fill the call tree's window.
    ("leak", "demo/leak", 75.0),
    ("cpu", "demo/cpu", 75.0),
    ("mutex", "demo/mutex", 75.0),
]


def _build_app(sandbox, initial_pod: str | None):
    from tui.app import GoDebugApp
    from tui.session import KubeSessionFactory
    from tui.sources.base import SystemClock
    from tui.sources.kube import KubePodSource
    from tui.transports.ssh import SSHOptions

    source = KubePodSource(str(sandbox.admin_kubeconfig), None)
    factory = KubeSessionFactory(
        source, transport="ssh", ssh_options=SSHOptions(config=[str(sandbox.ssh_config)])
    )
    app = GoDebugApp(
        pod_source=source,
        session_factory=factory,
        clock=SystemClock(),
        namespace="demo",
        initial_pod=initial_pod,
    )
    return app, source


async def _shoot(sandbox, name: str, pod: str | None, wait_s: float) -> Path:
    app, source = _build_app(sandbox, pod)
    svg = HERE / f"{name}.svg"
    try:
        async with app.run_test(size=SIZE) as pilot:
            deadline = time.monotonic() + max(wait_s, 5.0)
            while time.monotonic() < deadline:
                await pilot.pause(1.0)
            app.save_screenshot(filename=svg.name, path=str(HERE))
    finally:
        source.stop()
    return svg


def _to_png(svg: Path) -> None:
    if not shutil.which("rsvg-convert"):
        return
    # librsvg collapses runs of spaces unless told to keep them; the console's
    # columns are made of spaces.
    text = svg.read_text().replace("<svg ", '<svg xml:space="preserve" ', 1)
    subprocess.run(
        ["rsvg-convert", "-o", str(svg.with_suffix(".png"))], input=text.encode(), check=True
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--keep", action="store_true", help="leave the sandbox up afterwards")
    p.add_argument("--only", nargs="*", help="take only these shots")
    args = p.parse_args(argv)

    from demo.sandbox.api import Sandbox

    sandbox = Sandbox()
    started = False
    if not sandbox.is_up():
        print("starting the sandbox with its demo pods ...", file=sys.stderr)
        sandbox.up(nodes=2, demo=True)
        started = True
    try:
        for name, pod, wait_s in SHOTS:
            if args.only and name not in args.only:
                continue
            print(f"screenshot {name} ({pod or 'pod browser'}) ...", file=sys.stderr)
            svg = asyncio.run(_shoot(sandbox, name, pod, wait_s))
            _to_png(svg)
            print(f"  wrote {svg.relative_to(HERE.parent)}", file=sys.stderr)
    finally:
        if started and not args.keep:
            sandbox.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
