"""Render findings as a report (text, markdown, JSON) and map them to an exit code.

Exit codes of ``go-k8s-debug diagnose`` (the README copies this table):

| code | meaning |
|---|---|
| 0 | healthy: every measured rule is fine (info findings are allowed) |
| 1 | warning: at least one warning, no critical finding |
| 2 | critical: at least one critical finding |
| 3 | could not measure: the target or its node was unreachable, or no rule had data |
| 64 | usage error: bad arguments (EX_USAGE) |

JSON report (``--format json``), schema ``go-k8s-debug/diagnose-report`` v1
(also in ``docs/diagnose-schema.json``)::

    {
      "schema": "go-k8s-debug/diagnose-report", "version": 1,
      "tool_version": "0.1.0",
      "target": {"namespace": str, "pod": str, "uid": str, "node": str|null,
                 "container": str, "transport": str},
      "window": {"start_ns": int, "end_ns": int, "duration_s": float},
      "status": "healthy"|"warning"|"critical"|"not_measured",
      "exit_code": 0|1|2|3,
      "findings": [{"rule_id": str, "severity": "critical"|"warning"|"info"|"not_measured",
                    "title": str, "evidence": [str], "advice": str,
                    "related": {"pane": str, "stack": [str], "profile": str},
                    "score": float, "window": {"start_ns": int, "end_ns": int}}],
      "profiles": {"cpu"|"heap"|...: {"fetched": bool, "empty": bool, "note": str}},
      "errors": [{"code": str, "msg": str, "hint": str}],
      "frames": {"received": int, "bad": int}
    }

Findings are worst first; ``findings[0]`` is the headline.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tui.findings.model import Finding, fmt_window, sort_findings

EXIT_HEALTHY, EXIT_WARNING, EXIT_CRITICAL, EXIT_UNMEASURED, EXIT_USAGE = 0, 1, 2, 3, 64
REPORT_SCHEMA = "go-k8s-debug/diagnose-report"
REPORT_VERSION = 1


def status_of(findings: Sequence[Finding], reachable: bool = True) -> str:
    if not reachable:
        return "not_measured"
    sev = {f.severity for f in findings}
    if "critical" in sev:
        return "critical"
    if "warning" in sev:
        return "warning"
    if findings and sev <= {"not_measured"}:
        return "not_measured"
    if not findings:
        return "not_measured"
    return "healthy"


EXIT_FOR_STATUS = {"healthy": EXIT_HEALTHY, "warning": EXIT_WARNING, "critical": EXIT_CRITICAL,
                   "not_measured": EXIT_UNMEASURED}


@dataclass
class Report:
    """Everything a diagnose run found, ready to render."""

    findings: list[Finding]
    target: dict[str, Any] = field(default_factory=dict)
    start_ns: int = 0
    end_ns: int = 0
    reachable: bool = True
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)
    frames_received: int = 0
    frames_bad: int = 0
    tool_version: str = ""

    def __post_init__(self) -> None:
        self.findings = sort_findings(list(self.findings))

    @property
    def status(self) -> str:
        return status_of(self.findings, self.reachable)

    @property
    def exit_code(self) -> int:
        return EXIT_FOR_STATUS[self.status]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": REPORT_SCHEMA,
            "version": REPORT_VERSION,
            "tool_version": self.tool_version or tool_version(),
            "target": dict(self.target),
            "window": {"start_ns": self.start_ns, "end_ns": self.end_ns,
                       "duration_s": round(max(0, self.end_ns - self.start_ns) / 1e9, 3)},
            "status": self.status,
            "exit_code": self.exit_code,
            "findings": [f.to_dict() for f in self.findings],
            "profiles": self.profiles,
            "errors": [{k: e.get(k, "") for k in ("code", "msg", "hint")} for e in self.errors],
            "frames": {"received": self.frames_received, "bad": self.frames_bad},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    def _head(self) -> tuple[str, str]:
        t = self.target
        who = f"{t.get('namespace', '?')}/{t.get('pod', '?')}"
        when = fmt_window(self.start_ns, self.end_ns) if self.end_ns else "no data"
        return who, when

    def to_text(self) -> str:
        who, when = self._head()
        out = [f"go-k8s-debug diagnose {who}: {self.status.upper().replace('_', ' ')}",
               f"window {when}, node {self.target.get('node') or '?'}, "
               f"via {self.target.get('transport') or '?'}", ""]
        for e in self.errors:
            out.append(f"! {e.get('code', '')}: {e.get('msg', '')} {e.get('hint', '')}".rstrip())
        if self.errors:
            out.append("")
        for f in self.findings:
            out.append(f"[{f.severity.upper().replace('_', ' ')}] {f.rule_id}: {f.title}")
            for line in f.evidence:
                out.append(f"    - {line}")
            if f.advice:
                out.append(f"    → {f.advice}")
            out.append("")
        return _plain("\n".join(out).rstrip() + "\n")

    def to_markdown(self) -> str:
        who, when = self._head()
        out = [f"# go-k8s-debug diagnose `{_md(who)}`: **{self.status.replace('_', ' ')}**", "",
               f"Window {when}; node `{_md(str(self.target.get('node') or '?'))}`; "
               f"transport {_md(str(self.target.get('transport') or '?'))}.", ""]
        if self.errors:
            out.append("## Errors")
            out.extend(f"- `{_md(e.get('code', ''))}`: {_md(e.get('msg', ''))} "
                       f"{_md(e.get('hint', ''))}" for e in self.errors)
            out.append("")
        out.append("| severity | rule | finding |")
        out.append("|---|---|---|")
        for f in self.findings:
            out.append(f"| {f.severity} | {f.rule_id} | {_md(f.title)} |")
        out.append("")
        for f in self.findings:
            if f.severity == "not_measured" and not f.evidence:
                continue
            out.append(f"## {f.rule_id}: {_md(f.title)}")
            out.append("")
            out.extend(f"- {_md(line)}" for line in f.evidence)
            if f.advice:
                out += ["", f"**Next:** {_md(f.advice)}"]
            if f.related.stack:
                out += ["", "```", *(_plain(s) for s in f.related.stack), "```"]
            out.append("")
        return _plain("\n".join(out).rstrip() + "\n")

    def render(self, fmt: str) -> str:
        return {"json": self.to_json, "markdown": self.to_markdown, "text": self.to_text}[fmt]()


def _plain(s: str) -> str:
    """Drop control characters (ANSI escapes from hostile symbols) except newlines/tabs."""
    return "".join(c for c in s if c in "\n\t" or (ord(c) >= 32 and ord(c) != 127))


def _md(s: str) -> str:
    return _plain(s).replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def tool_version() -> str:
    try:
        from importlib.metadata import version

        return version("go-k8s-debug")
    except Exception:  # noqa: BLE001 - not installed (running from a checkout)
        return "0.0.0"


def now_ns() -> int:
    return time.time_ns()
