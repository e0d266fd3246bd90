"""The pod browser: a live table of pods, filter as you type, `:` commands."""

from __future__ import annotations

import threading

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Input, Static

from tui.models.pods import PodTableModel
from tui.models.text import clean
from tui.sources.base import PodEvent
from tui.widgets.pod_table import PodTable

AGE_REFRESH_S = 10.0


class PodEventsArrived(Message):
    """Watch events from the pod source thread, in arrival order."""

    def __init__(self, events: list[PodEvent], generation: int) -> None:
        super().__init__()
        self.events = events
        self.generation = generation


class PodBrowserScreen(Screen[None]):
    """Pods of one namespace (or all), updated live from the pod source's watch."""

    BINDINGS = [
        Binding("slash", "filter", "filter"),
        Binding("colon", "command", "command"),
        Binding("escape", "back", "clear", show=False),
        Binding("question_mark", "app.help", "help"),
        Binding("T", "app.toggle_contrast", "contrast", show=False),
        Binding("q", "app.quit", "quit"),
    ]

    def __init__(self, namespace: str | None, selector: str | None) -> None:
        super().__init__()
        self.namespace = namespace
        self.selector = selector
        self.model = PodTableModel()
        self.matching = 0
        self.command_message = ""  # the last command's answer or error
        self._watch_generation = 0
        self._watch_stop = threading.Event()
        self._sync_pending = False
        self._lines: dict[str, Text] = {}

    def compose(self) -> ComposeResult:
        yield Static(id="pods-status")
        yield PodTable(id="pods")
        yield Static(id="pod-detail")
        yield Input(placeholder="filter: words all must match", id="filter", classes="hidden")
        yield Input(
            placeholder=":ns NAME   :ns all   :ctx NAME   :q", id="command", classes="hidden"
        )
        yield Footer()

    def on_mount(self) -> None:
        self.start_watch()
        self.update_status()
        self.query_one(PodTable).focus()
        # AGE moves on without watch events; a sync redraws only the visible rows.
        self.set_interval(AGE_REFRESH_S, self._refresh_ages)

    def _refresh_ages(self) -> None:
        if not self._sync_pending and self.model.pods:
            self.sync_table()

    def on_unmount(self) -> None:
        self._watch_stop.set()
        self.app.pod_source.stop()

    # ---- watch ---------------------------------------------------------------

    def start_watch(self) -> None:
        """(Re)start the pod watch for the current context, namespace and selector."""
        self._watch_generation += 1
        self.app.pod_source.stop()
        self.model = PodTableModel()
        self.model.set_filter(self.query_one("#filter", Input).value if self.is_mounted else "")
        self._run_pod_watch(self._watch_generation)

    @work(thread=True, exclusive=True, group="pod-watch", exit_on_error=False)
    def _run_pod_watch(self, generation: int) -> None:
        from textual.worker import get_current_worker

        worker = get_current_worker()
        try:
            for event in self.app.pod_source.events(self.namespace, self.selector):
                if worker.is_cancelled or generation != self._watch_generation:
                    return
                # post_message is the thread-safe way to reach the UI.
                self.post_message(PodEventsArrived([event], generation))
        except Exception as e:  # noqa: BLE001 - said in the header; the user can retry with :ns
            self.post_message(
                PodEventsArrived([PodEvent("STATUS", message=f"pod watch failed: {e}")], generation)
            )

    def on_pod_events_arrived(self, message: PodEventsArrived) -> None:
        if message.generation != self._watch_generation:
            return
        for event in message.events:
            self.model.apply(event)
            if self.app.initial_pod:
                for pod in event.pods or ((event.pod,) if event.pod else ()):
                    self.app.pod_listed(pod)
        # Coalesce bursts (a re-list of thousands of pods) into one table update.
        if not self._sync_pending:
            self._sync_pending = True
            self.call_after_refresh(self.sync_table)

    def sync_table(self) -> None:
        """Show the model's filtered rows in the table, in place."""
        self._sync_pending = False
        table = self.query_one(PodTable)
        # A lazy view: the table draws only the rows on screen, so every match is
        # shown (scrollable) and a keystroke costs the same at 50 or 5,000 pods.
        view = self.model.view(self.app.clock.now())
        self.matching = len(view)
        table.show(view)
        self.update_status()
        self.show_detail(table.cursor_key)

    def update_status(self) -> None:
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append(" context ", style="dim")
        t.append(clean(self.app.pod_source.current_context, 60), style="bold")
        t.append("  namespace ", style="dim")
        t.append(clean(self.namespace, 60) if self.namespace else "all", style="bold")
        if self.selector:
            t.append("  selector ", style="dim")
            t.append(clean(self.selector, 60))
        t.append(f"  pods {self.matching}/{len(self.model.pods)}", style="dim")
        if self.model.filter_text:
            t.append("  filter ", style="dim")
            t.append(clean(self.model.filter_text, 40), style="bold yellow")
        watch = self.model.status_message
        if watch:
            t.append("  watch ", style="dim")
            t.append(clean(watch, 80), style="bold yellow")
        if self.command_message:
            t.append("  ")
            error = self.command_message.startswith(("no ", "say "))
            t.append(clean(self.command_message, 120), style="bold red" if error else "")
        self._set_line("#pods-status", t)

    # ---- keys ----------------------------------------------------------------

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.remove_class("hidden")
        box.focus()

    def action_command(self) -> None:
        box = self.query_one("#command", Input)
        box.value = ""
        box.remove_class("hidden")
        box.focus()

    def action_back(self) -> None:
        if self.model.filter_text:
            self.query_one("#filter", Input).value = ""
        self.query_one("#filter", Input).add_class("hidden")
        self.query_one("#command", Input).add_class("hidden")
        self.query_one(PodTable).focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.model.set_filter(event.value)
        self.sync_table()

    @on(Input.Submitted, "#filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        if not event.value:
            event.input.add_class("hidden")
        self.query_one(PodTable).focus()

    @on(Input.Submitted, "#command")
    def _command(self, event: Input.Submitted) -> None:
        event.input.add_class("hidden")
        self.query_one(PodTable).focus()
        self.run_command(event.value)

    def run_command(self, text: str) -> None:
        """Run a k9s-style command: ``ns NAME``, ``ns all``, ``ctx NAME``, ``q``."""
        words = text.strip().lstrip(":").split()
        self.command_message = ""
        if not words:
            return
        verb, args = words[0].lower(), words[1:]
        if verb in ("q", "quit", "exit"):
            self.app.exit()
            return
        if verb in ("ns", "namespace"):
            if not args:
                self.command_message = "say which namespace: :ns NAME, or :ns all"
            else:
                self.namespace = None if args[0] in ("all", "-A", "*") else args[0]
                self.start_watch()
        elif verb in ("ctx", "context"):
            known = self.app.pod_source.contexts()
            if not args or args[0] not in known:
                wanted = " ".join(args)
                self.command_message = f"no context {wanted!r}: known are {', '.join(known)}"
            else:
                self.app.pod_source.use_context(args[0])
                self.start_watch()
        else:
            self.command_message = f"no command {verb!r}: try :ns NAME, :ctx NAME or :q"
        self.update_status()

    @on(PodTable.Highlighted, "#pods")
    def _row_highlighted(self, event: PodTable.Highlighted) -> None:
        self.show_detail(event.key)

    def show_detail(self, key: str | None) -> None:
        """Labels, IP and containers of the pod under the cursor (all plain Text)."""
        pod = self.model.pods.get(key or "")
        t = Text(no_wrap=True, overflow="ellipsis")
        if pod is not None:
            t.append(" labels ", style="dim")
            labels = " ".join(
                f"{clean(k, 60)}={clean(v, 80)}" for k, v in sorted(pod.labels.items())
            )
            t.append(labels or "none")
            t.append("  ip ", style="dim")
            t.append(clean(pod.pod_ip or "none", 40))
            for c in pod.containers:
                t.append("  container ", style="dim")
                t.append(f"{clean(c.name, 40)} ({clean(c.image, 60)})")
        self._set_line("#pod-detail", t)

    def _set_line(self, selector: str, text: Text) -> None:
        # Both lines are one row high (app.tcss): an unchanged line is skipped and a
        # changed one repaints without a layout pass, which would redraw the screen.
        if self._lines.get(selector) != text:
            self._lines[selector] = text
            self.query_one(selector, Static).update(text, layout=False)

    @on(PodTable.Selected, "#pods")
    def _attach_selected(self, event: PodTable.Selected) -> None:
        pod = self.model.pods.get(event.key)
        if pod is not None:
            self.app.attach(pod)
