"""``python -m tests.bench.run [NAME ...] [--quick]``: run benchmarks, write docs/benchmarks.md.

With no names, every benchmark but the hour-long ``console_hour`` runs. A
benchmark that cannot run here (not root, the agent or a tool missing) gets a
section saying why, and the others still run.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from tests.bench import (
    agent_cost,
    bench_attach,
    bench_console_live,
    bench_pod_filter,
    overhead,
    report,
    side_by_side,
)
from tests.bench.procs import BenchError

# Run only when named (an hour each): `make bench BENCH=console_hour`.
LONG = ("console_hour",)

BENCHMARKS: dict[str, tuple[str, Callable[[bool], report.Section]]] = {
    "overhead": ("Overhead on the target: default collectors", overhead.default_collectors),
    "overhead_futex_uprobe": (
        "Overhead on the target: defaults + futex waits + uprobe goroutines",
        overhead.futex_and_uprobes,
    ),
    "overhead_futex": ("Overhead on the target: defaults + futex waits", overhead.futex_only),
    "overhead_uprobe": (
        "Overhead on the target: defaults + uprobe goroutine counter", overhead.uprobe_only
    ),
    "agent_cost": ("Agent cost: CPU and memory while attached", agent_cost.cost),
    "first_frame": ("Time to first frame", agent_cost.first_frame),
    "side_by_side": ("CPU sampling side by side: agent, bcc profile, bpftrace", side_by_side.run),
    "console_live": (
        "Console under load: 10,000 stack samples/s, all panes live",
        bench_console_live.live_load,
    ),
    "console_hour": (
        "Console memory over an hour: 10,000 stack samples/s, all panes live",
        bench_console_live.console_hour,
    ),
    "console_pod_filter": (
        "Pod browser with 5,000 pods: filter as you type",
        bench_pod_filter.pod_filter,
    ),
    "attach_ssh": (
        "Attach over SSH: from `enter` to the first live numbers",
        bench_attach.attach_ssh,
    ),
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.bench.run", description=__doc__)
    p.add_argument(
        "names",
        nargs="*",
        help="benchmarks to run (default: all but " + ", ".join(LONG) + "): "
        + ", ".join(BENCHMARKS),
    )
    p.add_argument("--quick", action="store_true", help="fewer, shorter rounds (a smoke run)")
    p.add_argument("--out", default=str(report.DOC), help="Markdown file to update")
    args = p.parse_args(argv)
    names = args.names or [n for n in BENCHMARKS if n not in LONG]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        p.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    command = "python -m tests.bench.run " + shlex.join(sys.argv[1:] if argv is None else argv)
    machine = report.machine()
    failed = 0
    for name in names:
        title, fn = BENCHMARKS[name]
        print(f"==> {name}: {title}", file=sys.stderr, flush=True)
        started = time.time()
        try:
            section = fn(args.quick)
        except BenchError as e:
            failed += 1
            section = report.Section(name, title, notes=[f"Not measured: {e}"])
        except Exception as e:
            failed += 1
            traceback.print_exc()
            why = f"Not measured: the benchmark failed: {e!r}"
            section = report.Section(name, title, notes=[why])
        body = report.render(section, started, command.strip(), machine)
        report.write({name: body}, doc=Path(args.out), order=list(BENCHMARKS))
        print(body, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
