"""The `?` screen: every key, k9s-style."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

POD_KEYS = (
    ("/", "filter pods as you type (namespace, name, status, node, labels)"),
    (":ns NAME", "switch namespace (:ns all for every namespace)"),
    (":ctx NAME", "switch kubeconfig context"),
    ("↑ ↓ pgup pgdn home end", "move the cursor (the mouse wheel scrolls; click twice to attach)"),
    ("enter", "attach to the pod under the cursor"),
    ("esc", "clear the filter / go back"),
    ("T", "toggle the high-contrast theme (for shared screens)"),
    ("?", "this help"),
    ("q", "quit"),
)
ATTACHED_KEYS = (
    ("z", "freeze / unfreeze the call tree (counting goes on)"),
    ("1 2 3", "call tree window: last 10 s, last 60 s, since attach"),
    ("w", "cycle the call tree window"),
    ("r", "reset the call tree"),
    ("f", "turn futex wait tracing on/off (costs every syscall on the node)"),
    ("e", "export profiles, findings, screenshot (.tar.gz)"),
    ("tab", "move between panes; enter on a finding shows its evidence"),
    ("esc", "detach and go back to the pods"),
)


def keys_table(title: str, keys: tuple[tuple[str, str], ...]) -> Table:
    table = Table(title=title, title_justify="left", show_header=False, box=None, padding=(0, 2))
    for key, what in keys:
        table.add_row(Text(key, style="bold"), Text(what))
    return table


class HelpScreen(ModalScreen[None]):
    """Keys of both screens; any of esc, q, ? closes it."""

    BINDINGS = [
        Binding("escape,q,question_mark", "dismiss", "close"),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Static(keys_table("Pods", POD_KEYS))
            yield Static(keys_table("Attached pod", ATTACHED_KEYS))
