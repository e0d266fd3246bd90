"""The pod browser's table: a virtual list that draws only the rows on screen.

Textual's DataTable keeps a renderable per cell and re-measures and re-renders
rows when they change: with thousands of pods a keystroke in the filter took
100-300 ms there. This widget uses the Line API instead (``ScrollView`` +
``render_line``, as Textual's own Log and DataTable do): it holds the model's
lazy ``PodRowsView`` and turns only the visible rows into strips, cached by
their cells, so a keystroke costs the filter plus ~50 lines whatever the number
of pods, and every matching pod is reachable by scrolling.
"""

from __future__ import annotations

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from tui.models.pods import COLUMNS, EMPTY_VIEW, PodRow, PodRowsView

STATUS_STYLES = {
    "Running": "green",
    "Pending": "yellow",
    "CrashLoopBackOff": "bold red",
    "Error": "bold red",
    "Failed": "bold red",
    "Terminating": "dim",
    "Completed": "dim",
}

# Widths of every column but the name (which fills the rest).
FIXED_WIDTHS = {
    "namespace": 11,
    "ready": 5,
    "status": 14,
    "restarts": 8,
    "age": 4,
    "node": 8,
    "cpu": 9,
    "pprof": 5,
}
HEADINGS = tuple(label for _, label in COLUMNS)
NAME_MIN_WIDTH = 16
CELL_PADDING = 1  # blank cells each side of a value, as DataTable draws them
STRIP_CACHE_SIZE = 2000  # rendered rows kept; a screenful is ~50


def _cell_style(column: str, value: str) -> str:
    if column == "status":
        return STATUS_STYLES.get(value, "yellow" if value.startswith("Init") else "")
    if column == "restarts" and value not in ("0", ""):
        return "yellow"
    if column == "pprof" and value != "-":
        return "cyan"
    return ""


def fit(value: str, width: int) -> str:
    """``value`` cut or padded to exactly ``width`` cells; a cut ends in "…"."""
    if cell_len(value) > width:
        return set_cell_size(value, width - 1) + "…" if width > 1 else "…"[:width]
    return set_cell_size(value, width)


class PodTable(ScrollView, can_focus=True):
    """Pods with namespace, name, ready, status, restarts, age, node, CPU limit, pprof.

    ``show(view)`` swaps in a new filtered view; the cursor stays on its pod
    (and on its screen line) when the pod is still shown. Cell values go into
    ``Segment``s as plain text, so markup in pod names is never interpreted (the
    model has already removed escapes and control characters).
    """

    BINDINGS = [
        Binding("enter", "select_cursor", "attach", show=False),
        Binding("up", "cursor_up", "up", show=False),
        Binding("down", "cursor_down", "down", show=False),
        Binding("pageup", "page_up", "page up", show=False),
        Binding("pagedown", "page_down", "page down", show=False),
        Binding("home,ctrl+home", "first", "first", show=False),
        Binding("end,ctrl+end", "last", "last", show=False),
    ]

    COMPONENT_CLASSES = {
        "pod-table--header",
        "pod-table--cursor",
        "pod-table--even-row",
    }

    # DataTable's look, with theme variables only.
    DEFAULT_CSS = """
    PodTable {
        width: 1fr;
        height: 1fr;
        overflow-x: hidden;
        background: $surface;
        color: $foreground;
        &:focus {
            background-tint: $foreground 5%;
            & > .pod-table--cursor {
                background: $block-cursor-background;
                color: $block-cursor-foreground;
                text-style: $block-cursor-text-style;
            }
            & > .pod-table--header {
                background-tint: $foreground 5%;
            }
        }
        &:dark > .pod-table--even-row {
            background: $surface-darken-1 40%;
        }
        & > .pod-table--header {
            text-style: bold;
            background: $panel;
            color: $foreground;
        }
        &:ansi > .pod-table--header {
            background: ansi_bright_blue;
            color: ansi_default;
        }
        & > .pod-table--even-row {
            background: $surface-lighten-1 50%;
        }
        & > .pod-table--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
    }
    """

    class Highlighted(Message):
        """The cursor moved to another pod (``key`` None: the table is empty)."""

        def __init__(self, table: PodTable, key: str | None) -> None:
            super().__init__()
            self.table = table
            self.key = key

        @property
        def control(self) -> PodTable:
            return self.table

    class Selected(Message):
        """``enter`` (or a click on the cursor row) on the pod ``key``."""

        def __init__(self, table: PodTable, key: str) -> None:
            super().__init__()
            self.table = table
            self.key = key

        @property
        def control(self) -> PodTable:
            return self.table

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._rows: PodRowsView = EMPTY_VIEW
        self.cursor_row = 0
        self._highlighted: str | None = None
        self._strips: dict[tuple, Strip] = {}
        self._style_sums: dict[tuple[Style, str], Style] = {}
        self._frame_styles: tuple[int, Style, Style, Style, Style] | None = None

    # ---- data ----------------------------------------------------------------

    @property
    def rows(self) -> PodRowsView:
        """The rows shown (the filtered, sorted view last given to ``show``)."""
        return self._rows

    @property
    def row_count(self) -> int:
        return len(self._rows)

    @property
    def cursor_key(self) -> str | None:
        """The pod key under the cursor, or None when the table is empty."""
        if not self._rows:
            return None
        return self._rows.key(self.cursor_row)

    def keys(self) -> list[str]:
        """Every shown pod key, in order."""
        return [self._rows.key(i) for i in range(len(self._rows))]

    def row(self, key: str) -> PodRow | None:
        """The shown row of the pod ``key``, or None."""
        index = self._rows.index_of(key)
        return None if index is None else self._rows[index]

    def show(self, rows: PodRowsView) -> None:
        """Show ``rows``; the cursor stays on its pod and on its screen line.

        When the pod under the cursor is gone the cursor keeps its row number
        (clamped), as DataTable does when a row is removed. When the user has
        scrolled the cursor out of view, the view stays where it is.
        """
        old_key, old_row = self.cursor_key, self.cursor_row
        line = old_row - self._scroll_row  # the cursor's line on screen
        self._rows = rows
        size = Size(1, len(rows) + 1)  # + the header line
        if size != self.virtual_size:
            self.virtual_size = size
            # The layout pass that follows keeps the scrollbars as they were when
            # the widget's own size did not change (ScrollView._size_updated), so
            # the wheel would not scroll: decide them now, as ScrollView.on_mount does.
            self._refresh_scrollbars()
        index = rows.index_of(old_key) if old_key is not None else None
        self.cursor_row = max(0, min(old_row if index is None else index, len(rows) - 1))
        if 0 <= line < self._page_rows:
            self._scroll_rows_to(self.cursor_row - line)
        elif self.cursor_row != old_row:
            self._scroll_cursor_into_view()
        else:
            # Scrolled away from the cursor (mouse wheel): an update leaves the view be.
            self._scroll_rows_to(self._scroll_row)
        self.refresh()
        self._note_highlight()

    # ---- cursor ----------------------------------------------------------------

    @property
    def _scroll_row(self) -> int:
        return round(self.scroll_y)

    @property
    def _page_rows(self) -> int:
        """Rows that fit under the header."""
        return max(1, self.scrollable_content_region.height - 1)

    def _scroll_rows_to(self, top: int) -> None:
        top = max(0, min(top, self.max_scroll_y))
        if top != self._scroll_row:
            self.scroll_to(y=top, animate=False, force=True)

    def _scroll_cursor_into_view(self) -> None:
        top = self._scroll_row
        if self.cursor_row < top:
            self._scroll_rows_to(self.cursor_row)
        elif self.cursor_row >= top + self._page_rows:
            self._scroll_rows_to(self.cursor_row - self._page_rows + 1)

    def move_cursor(self, row: int) -> None:
        """Put the cursor on ``row`` (clamped) and scroll it into view."""
        old = self.cursor_row
        self.cursor_row = max(0, min(row, len(self._rows) - 1))
        if old != self.cursor_row:
            self.refresh_lines(old + 1)
            self.refresh_lines(self.cursor_row + 1)
        self._scroll_cursor_into_view()
        self._note_highlight()

    def _note_highlight(self) -> None:
        key = self.cursor_key
        if key != self._highlighted:
            self._highlighted = key
            self.post_message(self.Highlighted(self, key))

    def action_cursor_up(self) -> None:
        self.move_cursor(self.cursor_row - 1)

    def action_cursor_down(self) -> None:
        self.move_cursor(self.cursor_row + 1)

    def action_page_up(self) -> None:
        self.move_cursor(self.cursor_row - self._page_rows)

    def action_page_down(self) -> None:
        self.move_cursor(self.cursor_row + self._page_rows)

    def action_first(self) -> None:
        self.move_cursor(0)

    def action_last(self) -> None:
        self.move_cursor(len(self._rows) - 1)

    def action_select_cursor(self) -> None:
        key = self.cursor_key
        if key is not None:
            self.post_message(self.Selected(self, key))

    def on_click(self, event: events.Click) -> None:
        """A click moves the cursor to the row; a click on the cursor row attaches."""
        offset = event.get_content_offset(self)
        if offset is None or offset.y < 1:
            return  # the header
        index = self._scroll_row + offset.y - 1
        if index >= len(self._rows):
            return
        event.stop()
        if index == self.cursor_row:
            self.action_select_cursor()
        else:
            self.move_cursor(index)

    def on_focus(self) -> None:
        self.refresh()  # the cursor's colours differ with focus

    def on_blur(self) -> None:
        self.refresh()

    # ---- drawing ---------------------------------------------------------------

    def _widths(self, width: int) -> tuple[int, ...]:
        # The name takes what the fixed columns leave, so 100 columns need no
        # horizontal scrolling; long names end in "…".
        fixed = sum(FIXED_WIDTHS.values()) + 2 * CELL_PADDING * len(COLUMNS)
        name = max(NAME_MIN_WIDTH, width - fixed)
        return tuple(FIXED_WIDTHS.get(key, name) for key, _ in COLUMNS)

    def _frame(self) -> tuple[int, Style, Style, Style, Style]:
        """Width and (row, cursor row, even row, header) styles, once per frame."""
        if self._frame_styles is None:
            base = self.rich_style  # walks the DOM for the background: not once a line
            self._frame_styles = (
                self.scrollable_content_region.width,
                base,
                base + self.get_component_rich_style("pod-table--cursor"),
                base + self.get_component_rich_style("pod-table--even-row"),
                self.get_component_rich_style("pod-table--header"),
            )
        return self._frame_styles

    def _cell_style(self, base: Style, extra: str) -> Style:
        key = (base, extra)
        style = self._style_sums.get(key)
        if style is None:
            style = self._style_sums[key] = base + Style.parse(extra)
        return style

    def _strip(self, cells: tuple[str, ...], styled: bool, base: Style, width: int) -> Strip:
        cache_key = (cells, styled, base, width)
        strip = self._strips.get(cache_key)
        if strip is not None:
            return strip
        pad = " " * CELL_PADDING
        # Runs of one style become one segment: fewer segments for the compositor.
        segments: list[Segment] = []
        run: list[str] = []
        run_style = base
        for (column, _), value, w in zip(COLUMNS, cells, self._widths(width), strict=True):
            extra = _cell_style(column, value) if styled else ""
            if not extra:
                run += (pad, fit(value, w), pad)
                continue
            run.append(pad)
            segments.append(Segment("".join(run), run_style))
            segments.append(Segment(fit(value, w), self._cell_style(base, extra)))
            run = [pad]
        segments.append(Segment("".join(run), run_style))
        strip = Strip(segments).adjust_cell_length(width, base)
        if len(self._strips) >= STRIP_CACHE_SIZE:
            self._strips.clear()
        self._strips[cache_key] = strip
        return strip

    def render_lines(self, crop: Region) -> list[Strip]:
        self._frame_styles = None  # size, theme or focus may have changed since the last frame
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        width, plain, cursor_style, even, header = self._frame()
        if y == 0:
            return self._strip(HEADINGS, False, header, width)
        index = self._scroll_row + y - 1
        rows = self._rows
        if index >= len(rows):
            return Strip.blank(width, plain)
        if index == self.cursor_row:
            # The cursor's colours win over the cells' own, as in DataTable.
            return self._strip(rows[index].cells, False, cursor_style, width)
        # DataTable's zebra stripes: rows 0, 2, 4, ...
        return self._strip(rows[index].cells, True, even if index % 2 == 0 else plain, width)
