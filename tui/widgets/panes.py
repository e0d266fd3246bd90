"""The attached screen's panes. Each renders one part of a ``SessionSnapshot``.

Every string that came from the pod or the agent (names, symbols, log lines)
is already cleaned of escapes by the models and is put into ``rich.text.Text``
as plain text, so Rich markup in it is shown, never interpreted.
"""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Sparkline, Static

from tui.models.session_state import (
    FutexView,
    GoroutineView,
    Header,
    SessionSnapshot,
    ThrottleNumbers,
    ThrottleView,
    format_us,
)

LINK_STYLES = {
    "live": "bold green",
    "connecting": "yellow",
    "reconnecting": "bold yellow",
    "stale": "bold yellow",
    "dropped": "bold red",
    "ended": "bold red",
}


def fmt_rate(rate: float | None, unit: str = "/s") -> str:
    if rate is None:
        return "–"
    sign = "+" if rate > 0 else ""
    return f"{sign}{rate:.1f}{unit}"


def fmt_pct(share: float | None) -> str:
    return "–" if share is None else f"{share * 100:.0f}%"


def header_text(h: Header) -> Text:
    """The attached screen's status line: pod, node, transport, link, data age."""
    t = Text(no_wrap=True, overflow="ellipsis")
    t.append(" pod ", style="dim")
    t.append(f"{h.namespace}/{h.pod}", style="bold")
    if h.container:
        t.append(f" [{h.container}]", style="dim")
    t.append("  node ", style="dim")
    t.append(h.node)
    t.append("  via ", style="dim")
    t.append(h.transport or "?")
    t.append("  link ", style="dim")
    t.append(h.link, style=LINK_STYLES.get(h.link, ""))
    if h.link_detail:
        t.append(f" ({h.link_detail})", style="dim")
    t.append("  data age ", style="dim")
    if h.data_age is None:
        t.append("no data yet", style="yellow")
    else:
        t.append(f"{h.data_age:.1f} s", style="bold yellow" if h.data_age > 5 else "")
    t.append(f"  frames {h.frames}", style="dim")
    if h.unparsed:
        t.append(f"  unparsed {h.unparsed}", style="bold red")
    return t


class SessionHeader(Static):
    """One line over the panes: which pod, over which link, how fresh the data is."""

    DEFAULT_CSS = "SessionHeader { height: 1; }"

    def show(self, snap: SessionSnapshot) -> None:
        self.update(header_text(snap.header))


class Pane(Vertical):
    """A bordered pane that takes a snapshot. ``related`` highlights it for a finding."""

    DEFAULT_CSS = """
    Pane { border: round $foreground 35%; height: auto; }
    Pane.related { border: heavy $warning; }
    Pane:focus-within { border: round $accent; }
    """

    def show(self, snap: SessionSnapshot) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class GoroutinePane(Pane):
    """Goroutine count, its rate of change and a sparkline of the last minutes."""

    def compose(self) -> ComposeResult:
        yield Static(id="goroutine-numbers")
        yield Sparkline([], id="goroutine-spark")

    def on_mount(self) -> None:
        self.border_title = "Goroutines"

    def show(self, snap: SessionSnapshot) -> None:
        self.query_one("#goroutine-numbers", Static).update(goroutine_text(snap.goroutines))
        self.query_one("#goroutine-spark", Sparkline).data = list(snap.goroutines.spark)


def goroutine_text(g: GoroutineView) -> Text:
    t = Text(no_wrap=True, overflow="ellipsis")
    if g.count is None:
        t.append("waiting for the first count…", style="dim")
        return t
    t.append(f"{g.count:,}", style="bold")
    t.append("  ")
    style = "bold red" if (g.rate or 0) > 0.5 else ""
    t.append(fmt_rate(g.rate), style=style)
    t.append("  peak ", style="dim")
    t.append(f"{g.peak:,.0f}" if g.peak is not None else "–")
    if g.gc_per_s is not None:
        t.append(f"  GC {g.gc_per_s:.1f}/s", style="dim")
    return t


class ThrottlePane(Pane):
    """CPU throttling by the cgroup quota, for the container and the whole pod."""

    def compose(self) -> ComposeResult:
        yield Static(id="throttle-numbers")
        yield Sparkline([], id="throttle-spark")

    def on_mount(self) -> None:
        self.border_title = "CPU throttling"

    def show(self, snap: SessionSnapshot) -> None:
        self.query_one("#throttle-numbers", Static).update(throttle_text(snap.throttle))
        self.query_one("#throttle-spark", Sparkline).data = list(snap.throttle.spark)
        ver = snap.throttle.cgroup_version
        self.border_subtitle = f"cgroup {ver}" if ver else ""


def _share_cell(n: ThrottleNumbers) -> Text:
    hot = "bold red" if (n.share or 0) >= 0.25 else ""
    return Text(fmt_pct(n.share), style=hot)


def _ms_cell(n: ThrottleNumbers) -> Text:
    hot = "bold red" if (n.share or 0) >= 0.25 else ""
    return Text("–" if n.throttled_ms_per_s is None else f"{n.throttled_ms_per_s:,.0f}", style=hot)


def fmt_span(seconds: float | None) -> str:
    """ "1 s", "2.5 s"; "last" alone when the interval is unknown."""
    if not seconds:
        return ""
    return f"{seconds:.0f} s" if abs(seconds - round(seconds)) < 0.05 else f"{seconds:.1f} s"


def throttle_text(v: ThrottleView) -> Group:
    """Throttled share of CFS periods and throttled time per second, for the last
    interval and averaged over the last 10 s and 60 s; then CPU used and the quota.

    The last interval alone reads 0 % between bursts of a bursty service: the
    averages say how often it is throttled (the findings use the same 60 s sums).
    """
    table = Table.grid(padding=(0, 1))
    table.add_column(style="dim", no_wrap=True)
    columns = [("last " + fmt_span(v.interval_s)).strip(), *(f"{s} s avg" for s, _, _ in v.windows)]
    for _ in columns:
        table.add_column(justify="right", no_wrap=True)
    table.add_row("throttled", *(Text(c, style="dim") for c in columns))
    for name, last, idx in (("container", v.container, 1), ("pod", v.pod, 2)):
        # Share of CFS periods throttled, then throttled CPU-time per second.
        table.add_row(f"{name} %", _share_cell(last), *(_share_cell(w[idx]) for w in v.windows))
        table.add_row("  ms/s", _ms_cell(last), *(_ms_cell(w[idx]) for w in v.windows))
    used = Text(no_wrap=True, overflow="ellipsis")
    used.append("used   ", style="dim")
    for name, n, sep in (("container", v.container, " · "), ("pod", v.pod, "")):
        used.append("–" if n.usage_cores is None else f"{n.usage_cores:.2f} CPU")
        used.append(f" {name}{sep}", style="dim")
    quota = Text(no_wrap=True, overflow="ellipsis")
    quota.append("quota  ", style="dim")
    quota.append(v.container.quota)
    return Group(table, used, quota)


class FutexPane(Pane):
    """Futex waits of the target's threads. Off by default: it costs every syscall on the node."""

    def compose(self) -> ComposeResult:
        yield Static(id="futex-body")

    def on_mount(self) -> None:
        self.border_title = "Futex waits (f)"

    def show(self, snap: SessionSnapshot) -> None:
        self.query_one("#futex-body", Static).update(futex_text(snap.futex))
        self.border_subtitle = snap.futex.state


BAR = "█"


def futex_text(f: FutexView) -> Group | Text:
    if f.state != "on":
        t = Text()
        if f.state == "unavailable":
            t.append("Not available on this node", style="bold")
            if f.reason:
                t.append(f": {f.reason}")
            return t
        if f.state == "failed":
            t.append("Futex tracing failed", style="bold red")
            t.append(f": {f.reason}\n" if f.reason else "\n")
        else:
            t.append("Off. ", style="bold")
        t.append("Press ")
        t.append("f", style="bold reverse")
        t.append(f" to trace futex waits. Cost: {f.cost}. ")
        t.append("Futex waits are parked OS threads, not goroutine lock contention.", style="dim")
        return t
    lines: list[Text | Table] = []
    # The last interval alone can read 0 between bursts: the averages say how busy.
    rates = Table.grid(padding=(0, 1))
    rates.add_column(style="dim", no_wrap=True)
    for _ in range(1 + len(f.windows)):
        rates.add_column(justify="right", no_wrap=True)
    rates.add_row(
        "",
        Text(("last " + fmt_span(f.interval_s)).strip(), style="dim"),
        *(Text(f"{s} s avg", style="dim") for s, _ in f.windows),
    )
    rates.add_row(
        "waits/s",
        Text(f"{f.waits_per_s or 0:,.0f}", style="bold"),
        *(Text("–" if r is None else f"{r:,.0f}") for _, r in f.windows),
    )
    lines.append(rates)
    if f.mean_wait_us is not None:
        lines.append(Text(f"mean wait (last) {format_us(f.mean_wait_us)}", style="dim"))
    biggest = max((c for _, c in f.hist), default=0) or 1
    for label, count in f.hist:
        row = Text(no_wrap=True, overflow="ellipsis")
        row.append(f"{label:>9} ", style="dim")
        row.append(BAR * max(1 if count else 0, round(count / biggest * 18)), style="magenta")
        row.append(f" {count:,}")
        lines.append(row)
    for tid, comm, waits, ms in f.top_threads[:3]:
        row = Text(no_wrap=True, overflow="ellipsis")
        row.append(f"tid {tid:<7}", style="dim")
        row.append(f"{comm:<12} ")
        row.append(f"{waits:,} waits {ms:,.0f} ms")
        lines.append(row)
    return Group(*lines)
