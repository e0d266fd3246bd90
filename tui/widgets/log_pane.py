"""The log pane: what the console and the agent did, in an operator's words."""

from __future__ import annotations

import time

from rich.text import Text
from textual.widgets import RichLog

from tui.models.session_state import LogLine, SessionSnapshot

LEVEL_STYLES = {"info": "", "warn": "yellow", "warning": "yellow", "error": "bold red"}


def log_text(line: LogLine) -> Text:
    t = Text()
    t.append(time.strftime("%H:%M:%S ", time.gmtime(line.t)), style="dim")
    if line.level != "info":
        t.append(f"{line.level} ", style=LEVEL_STYLES.get(line.level, ""))
    t.append(line.text, style=LEVEL_STYLES.get(line.level, ""))
    return t


class LogPane(RichLog):
    """Appends new log lines from each snapshot; never interprets markup in them."""

    DEFAULT_CSS = "LogPane { border: round $foreground 35%; height: 1fr; }"

    def __init__(self, **kwargs: object) -> None:
        super().__init__(
            max_lines=500, wrap=True, markup=False, highlight=False, min_width=20, **kwargs
        )  # type: ignore[arg-type]
        self._last: LogLine | None = None
        self._reorders = 0

    def on_mount(self) -> None:
        self.border_title = "Log"

    def show(self, snap: SessionSnapshot) -> None:
        lines = snap.log
        start = 0
        if snap.log_reorders != self._reorders:
            # A line went in before lines already written (it was stamped earlier
            # but folded in later): write the whole log again, in time order.
            self._reorders = snap.log_reorders
            self.clear()
            self._last = None
        if self._last is not None:
            # Lines are immutable and kept in order; resume after the last one written.
            for i in range(len(lines) - 1, -1, -1):
                if lines[i] is self._last:
                    start = i + 1
                    break
        for line in lines[start:]:
            self.write(log_text(line))
        if lines:
            self._last = lines[-1]
