"""Findings: rules over frames and profiles that say what the numbers mean.

``FindingsEngine.feed(frame)`` for every frame, ``evaluate(now_ns)`` for the
findings, worst first. ``report`` renders them (text, markdown, JSON) and maps
them to the ``diagnose`` exit code. The rule table is in ``engine``'s docstring.
"""

from tui.findings.engine import FindingsEngine, Thresholds, evaluate_frames
from tui.findings.model import SEVERITIES, Finding, Related, sort_findings

__all__ = ["SEVERITIES", "Finding", "FindingsEngine", "Related", "Thresholds", "evaluate_frames",
           "sort_findings"]
