"""Benchmark results as Markdown sections in docs/benchmarks.md.

Each benchmark owns one section between ``<!-- bench:NAME -->`` markers, so
running one benchmark replaces its own section and keeps the others.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md"

HEADER = """# Benchmarks

Measured by `make bench` (`python -m tests.bench.run [NAME ...]`, as root), which rewrites the
section of each benchmark it runs and keeps the others. Every comparison is made within one run:
the overhead benchmarks load two identical services at the same time and attach the agent to
each in turn (so whatever else the machine does hits both alike), with agent-free control
windows beside them as the noise floor; the side-by-side benchmark rotates the tools. Ratios are
medians over the rounds, with min and max.

The machine these numbers come from is a shared 2-core VM that was heavily loaded by other work
while they were taken (the load average is in each section): absolute requests/s and start-up
times are pessimistic, and an effect smaller than the control row's spread is not resolved.

"""


@dataclass
class Table:
    """One Markdown table: columns, rows of cells already formatted as text."""

    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        self.rows.append([str(c) for c in cells])

    def markdown(self) -> str:
        def esc(cell: str) -> str:
            return cell.replace("|", "\\|").replace("\n", " ")

        lines = ["| " + " | ".join(self.columns) + " |", "|" + "---|" * len(self.columns)]
        lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in self.rows]
        return "\n".join(lines)


@dataclass
class Section:
    """What one benchmark reports: a title, its goal, tables and notes."""

    name: str
    title: str
    goal: str = ""
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _cmd_version(argv: list[str]) -> str:
    exe = shutil.which(argv[0])
    if not exe:
        return "not installed"
    try:
        out = subprocess.run([exe, *argv[1:]], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0].strip() if text else "?"


def machine() -> str:
    """One line describing where the numbers were measured."""
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    mem_gib = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30
    go = _cmd_version(["go", "version"]).replace("go version ", "")
    wrk = _cmd_version(["wrk", "-v"]).split(" [")[0]
    return (
        f"{os.cpu_count()} CPUs ({cpu}), {mem_gib:.0f} GiB, Linux {platform.release()}, "
        f"load average {load} at start; {go}; {wrk}"
    )


def render(section: Section, started: float, command: str, machine_line: str) -> str:
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started))
    took = time.time() - started
    parts = [
        f"<!-- bench:{section.name} -->",
        f"## {section.title}",
        "",
        f"Run {when} ({took:.0f} s) on {machine_line}. Command: `{command}`.",
    ]
    if section.goal:
        parts += ["", f"Goal: {section.goal}"]
    for t in section.tables:
        parts += ["", t.markdown()]
    if section.notes:
        parts += [""] + [f"- {n}" for n in section.notes]
    parts += [f"<!-- /bench:{section.name} -->", ""]
    return "\n".join(parts)


SECTION = re.compile(r"<!-- bench:([\w-]+) -->.*?<!-- /bench:\1 -->\n?", re.S)


def write(sections: dict[str, str], doc: Path = DOC, order: list[str] | None = None) -> None:
    """Replace (or add) each named section in the benchmarks document.

    The header is the harness's own text and is refreshed; sections from
    earlier runs are kept; sections are laid out in ``order`` (the harness's
    list of benchmarks), unknown ones after.
    """
    text = doc.read_text() if doc.exists() else ""
    kept = {m.group(1): m.group(0) for m in SECTION.finditer(text)}
    kept.update(sections)
    rank = {n: i for i, n in enumerate(order or [])}
    names = sorted(kept, key=lambda n: (rank.get(n, len(rank)), list(kept).index(n)))
    body = "\n".join(kept[n].rstrip("\n") + "\n" for n in names)
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(HEADER + body)
