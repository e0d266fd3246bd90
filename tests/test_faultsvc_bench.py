"""The `make bench` harness: its parsers and report writer, and one real load window."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from demo import build_binaries

# tests/ is not a package: the harness is run as `python -m tests.bench.run` from the
# checkout, so import it the same way whether pytest was started as a script or a module.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.bench import procs, report, side_by_side  # noqa: E402
from tests.bench.stats import abba  # noqa: E402


def test_abba_alternates_so_drift_falls_on_both_sides() -> None:
    order = abba(4, "off", "on")
    assert order == ["off", "on", "on", "off", "off", "on", "on", "off"]
    assert order.count("off") == order.count("on")


def test_wrk_summary_is_parsed() -> None:
    text = (
        "Running 3s test @ http://127.0.0.1:1/api/items\n"
        "  28463 requests in 3.03s, 31.05MB read\nRequests/sec:   9394.29\n"
    )
    assert procs._parse_wrk(text) == (28463, 3.03)
    assert procs._parse_wrk("  12 requests in 950.00ms, 1KB read\n") == (12, 0.95)
    # Past a minute wrk switches units.
    assert procs._parse_wrk("  5000000 requests in 1.50m, 3GB read\n") == (5000000, 90.0)
    assert procs._parse_wrk("  9 requests in 850.00us, 1KB read\n") == (9, 0.00085)
    with pytest.raises(procs.BenchError, match="cannot read wrk"):
        procs._parse_wrk("garbage")


def test_tool_outputs_are_counted() -> None:
    folded = ["faultsvc;runtime.goexit;main.hashPassword 40\n", "faultsvc;runtime.goexit;a.b 2\n"]
    assert side_by_side._parse("bcc profile", folded) == (42, "main.hashPassword")
    bpftrace = [
        "Attaching 1 probe...\n", "\n", "\n",
        "@[\n", "    main.hashPassword+35\n", "    main.serveLogin+80\n", "]: 30\n",
        "@[\n", "    runtime.futex+35\n", "]: 5\n",
    ]
    assert side_by_side._parse("bpftrace", bpftrace) == (35, "main.hashPassword")


def test_report_replaces_only_its_own_section(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    t = report.Table(["tool", "value"])
    t.add("a|b", "1")
    first = report.Section("one", "First", tables=[t], notes=["n1"])
    report.write({"one": report.render(first, 0, "cmd", "machine")}, doc)
    report.write({"two": report.render(report.Section("two", "Second"), 0, "cmd", "m")}, doc)
    again = report.Section("one", "First again")
    report.write({"one": report.render(again, 0, "cmd", "machine")}, doc)
    text = doc.read_text()
    assert text.startswith("# Benchmarks")
    assert "First again" in text and "## First\n" not in text and "## Second" in text
    assert text.count("<!-- bench:one -->") == 1
    assert text.index("bench:one") < text.index("bench:two")
    report.write({"two": report.render(report.Section("two", "Second"), 0, "c", "m")}, doc,
                 order=["two", "one"])
    text = doc.read_text()
    assert text.index("bench:two") < text.index("bench:one") and "First again" in text


def test_table_escapes_pipes() -> None:
    t = report.Table(["x"])
    t.add("a|b")
    assert "a\\|b" in t.markdown()


def test_machine_line_names_cpus_and_kernel() -> None:
    line = report.machine()
    assert "CPUs" in line and "Linux" in line and "load average" in line


@pytest.mark.slow
def test_one_real_load_window(go_tool: str) -> None:
    build_binaries.main(["faultsvc"])
    with procs.faultsvc("healthy") as svc:
        load = procs.run_load(svc, 1)
    assert load.requests > 100 and 0.5 < load.seconds < 5
    assert load.target_cpu_s > 0
