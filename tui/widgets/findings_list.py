"""The findings pane: what the numbers mean, with the evidence, and what to do."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.message import Message
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from tui.models.session_state import Finding, SessionSnapshot
from tui.widgets.panes import Pane

SEVERITY_STYLES = {
    "critical": "bold white on red",
    "warning": "bold black on yellow",
    "info": "bold black on cyan",
    "not_measured": "dim reverse",
}


def finding_prompt(f: Finding) -> Text:
    t = Text(no_wrap=True, overflow="ellipsis")
    t.append(
        f" {f.severity.upper().replace('_', ' ')} ",
        style=SEVERITY_STYLES.get(f.severity, "reverse"),
    )
    t.append(" ")
    t.append(f.title)
    return t


def evidence_text(f: Finding | None) -> Text:
    t = Text()
    if f is None:
        return t
    for line in f.evidence:
        t.append("• ", style="dim")
        t.append(line + "\n")
    if f.next_step:
        t.append("next: ", style="bold")
        t.append(f.next_step)
    return t


class FindingsPane(Pane):
    """A list of findings; the highlighted one shows its evidence below."""

    class Selected(Message):
        """A finding was highlighted; the screen highlights the pane it points at."""

        def __init__(self, finding: Finding | None) -> None:
            super().__init__()
            self.finding = finding

    def compose(self) -> ComposeResult:
        yield OptionList(id="findings-list")
        yield Static(id="findings-evidence")

    def on_mount(self) -> None:
        self.border_title = "Findings"
        self._findings: tuple[Finding, ...] = ()
        self._empty_shown = False

    def show(self, snap: SessionSnapshot) -> None:
        if snap.findings == self._findings and (snap.findings or self._empty_shown):
            return
        self._findings = snap.findings
        options = self.query_one(OptionList)
        keep = None
        if options.highlighted is not None and options.highlighted < options.option_count:
            keep = options.get_option_at_index(options.highlighted).id
        options.clear_options()
        if not snap.findings:
            self._empty_shown = True
            options.add_option(
                Option(
                    Text("No findings yet: rules run every few seconds.", style="dim"),
                    id="none",
                    disabled=True,
                )
            )
            self.query_one("#findings-evidence", Static).update("")
            return
        options.add_options(
            [Option(finding_prompt(f), id=f.id or str(i)) for i, f in enumerate(snap.findings)]
        )
        ids = [f.id or str(i) for i, f in enumerate(snap.findings)]
        options.highlighted = ids.index(keep) if keep in ids else 0
        self._show_evidence(options.highlighted)

    def _show_evidence(self, index: int | None) -> Finding | None:
        f = self._findings[index] if index is not None and index < len(self._findings) else None
        self.query_one("#findings-evidence", Static).update(evidence_text(f))
        return f

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        event.stop()
        finding = self._show_evidence(event.option_index)
        # Moving through the list points at the related pane; a refresh does not.
        if event.option_list.has_focus:
            self.post_message(self.Selected(finding))

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.post_message(self.Selected(self._show_evidence(event.option_index)))
