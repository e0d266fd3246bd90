"""What a rule produces: one ``Finding``, frozen, safe to hand to any thread."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

SEVERITIES = ("critical", "warning", "info", "not_measured")
SEVERITY_RANK = {"critical": 3, "warning": 2, "info": 1, "not_measured": 0}
PANES = ("throttle", "goroutines", "futex", "calltree", "findings")


@dataclass(frozen=True)
class Related:
    """Where the console should look: a pane and optionally a stack (root first)
    to expand and highlight in the call tree."""

    pane: str
    stack: tuple[str, ...] = ()
    profile: str = ""  # which profile the stack came from: cpu|goroutine|mutex|block|heap|ebpf


@dataclass(frozen=True)
class Finding:
    rule_id: str
    severity: str
    title: str
    evidence: tuple[str, ...] = ()
    advice: str = ""
    related: Related = field(default_factory=lambda: Related("findings"))
    #: Orders findings of the same severity: larger is worse. Rule-specific scale 0..1.
    score: float = 0.0
    #: Wall-clock window (ns) the evidence covers; (0, 0) when none.
    window: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        if self.severity not in SEVERITY_RANK:
            raise ValueError(f"unknown severity {self.severity!r}")
        # Frozen dataclasses need object.__setattr__ to normalise a list into a tuple.
        if not isinstance(self.evidence, tuple):
            object.__setattr__(self, "evidence", tuple(self.evidence))

    # Aliases in the console model's vocabulary (tui.models.session_state.to_finding).
    @property
    def id(self) -> str:
        return self.rule_id

    @property
    def next_step(self) -> str:
        return self.advice

    @property
    def pane(self) -> str:
        return self.related.pane

    @property
    def path(self) -> tuple[str, ...]:
        return self.related.stack

    @property
    def rank(self) -> tuple[int, float]:
        return (SEVERITY_RANK[self.severity], self.score)

    @property
    def is_problem(self) -> bool:
        return self.severity in ("critical", "warning")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["evidence"] = list(self.evidence)
        d["related"] = {
            "pane": self.related.pane,
            "stack": list(self.related.stack),
            "profile": self.related.profile,
        }
        d["window"] = {"start_ns": self.window[0], "end_ns": self.window[1]}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Finding:
        rel = d.get("related") or {}
        win = d.get("window") or {}
        return cls(
            rule_id=d["rule_id"],
            severity=d["severity"],
            title=d["title"],
            evidence=tuple(d.get("evidence", ())),
            advice=d.get("advice", ""),
            related=Related(rel.get("pane", "findings"), tuple(rel.get("stack", ())),
                            rel.get("profile", "")),
            score=float(d.get("score", 0.0)),
            window=(int(win.get("start_ns", 0)), int(win.get("end_ns", 0))),
        )


def sort_findings(findings: list[Finding]) -> list[Finding]:
    """Worst first: severity, then score, then rule id for a stable order."""
    return sorted(findings, key=lambda f: (-f.rank[0], -f.rank[1], f.rule_id))


def fmt_clock(t_ns: int) -> str:
    """``21:45:01`` UTC: evidence windows are wall-clock so eBPF and pprof line up."""
    return time.strftime("%H:%M:%S", time.gmtime(t_ns / 1e9))


def fmt_window(start_ns: int, end_ns: int) -> str:
    secs = max(0.0, (end_ns - start_ns) / 1e9)
    return f"{fmt_clock(start_ns)}–{fmt_clock(end_ns)} UTC ({secs:.0f} s)"


def fmt_ns(ns: float) -> str:
    """A duration in the unit an operator reads fastest."""
    ns = float(ns)
    if ns >= 1e9:
        return f"{ns / 1e9:.2f} s"
    if ns >= 1e6:
        return f"{ns / 1e6:.1f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.1f} µs"
    return f"{ns:.0f} ns"


def fmt_bytes(n: float) -> str:
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"
