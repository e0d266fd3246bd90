"""Make untrusted strings safe to show: pod names, labels, symbols, log lines.

Widgets wrap these in ``rich.text.Text`` (never markup strings), so ``[bold]``
stays literal; this module removes what ``Text`` would still pass to the
terminal: ANSI escapes and other control characters.
"""

from __future__ import annotations

import re

# CSI/OSC sequences first, so "\x1b[31m" disappears whole instead of leaving "[31m".
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def clean(value: object, limit: int = 500) -> str:
    """Return ``value`` as one printable line: escapes removed, controls shown as ``?``.

    Args:
        value: anything; ``None`` becomes ``""``.
        limit: longest result; longer strings end in ``…``.
    """
    if value is None:
        return ""
    s = _ANSI.sub("", str(value))
    s = s.replace("\n", " ").replace("\t", " ")
    s = _CONTROL.sub("?", s)
    if len(s) > limit:
        s = s[: limit - 1] + "…"
    return s
