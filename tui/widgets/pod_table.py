"""The pod browser's live table, updated in place by row key."""

from __future__ import annotations

from rich.text import Text
from textual._two_way_dict import TwoWayDict
from textual.widgets import DataTable
from textual.widgets.data_table import CellKey, ColumnKey, RowKey

from tui.models.pods import COLUMNS, PodRow

STATUS_STYLES = {
    "Running": "green",
    "Pending": "yellow",
    "CrashLoopBackOff": "bold red",
    "Error": "bold red",
    "Failed": "bold red",
    "Terminating": "dim",
    "Completed": "dim",
}


def _cell(column: str, value: str) -> Text:
    # Text, never markup: a pod named "[bold]x" must show those characters.
    style = ""
    if column == "status":
        style = STATUS_STYLES.get(value, "yellow" if value.startswith("Init") else "")
    elif column == "restarts" and value not in ("0", ""):
        style = "yellow"
    elif column == "pprof" and value != "-":
        style = "cyan"
    return Text(value, style=style, no_wrap=True, overflow="ellipsis")


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


class PodTable(DataTable[Text]):
    """Pods with namespace, name, ready, status, restarts, age, node, CPU limit, pprof."""

    DEFAULT_CSS = """
    PodTable { height: 1fr; }
    """

    def __init__(self, **kwargs: object) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)  # type: ignore[arg-type]
        self._shown: dict[str, PodRow] = {}

    def on_mount(self) -> None:
        for key, label in COLUMNS:
            self.add_column(label, key=key, width=FIXED_WIDTHS.get(key))

    def on_resize(self) -> None:
        # The name takes what the fixed columns leave, so 100 columns need no
        # horizontal scrolling; long names end in "…".
        fixed = sum(FIXED_WIDTHS.values()) + 2 * self.cell_padding * len(COLUMNS)
        column = self.columns.get(ColumnKey("name"))
        if column is not None:
            column.auto_width = False
            column.width = max(16, self.size.width - fixed - 2)
            self.refresh()

    @property
    def cursor_key(self) -> str | None:
        """The row key under the cursor, or None when the table is empty."""
        if not self.row_count:
            return None
        try:
            return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except Exception:  # noqa: BLE001 - a cursor past the end after removals
            return None

    def sync(self, rows: list[PodRow]) -> None:
        """Make the table show ``rows`` in order, touching only what changed.

        Stale rows are removed, changed cells updated, new rows added; the table
        is re-sorted only when the order differs, and the cursor stays on the
        pod it was on (dolphie's keyed update; rebuilding would lose it).
        """
        keep = self.cursor_key
        wanted = {r.key: r for r in rows}
        stale = [k for k in self._shown if k not in wanted]
        with self.app.batch_update():
            if stale:
                self._remove_rows(stale)
                for key in stale:
                    del self._shown[key]
            for row in rows:
                old = self._shown.get(row.key)
                if old is None:
                    self.add_row(
                        *(_cell(c, v) for (c, _), v in zip(COLUMNS, row.cells, strict=True)),
                        key=row.key,
                    )
                elif old.cells != row.cells:
                    for (col, _), new, prev in zip(COLUMNS, row.cells, old.cells, strict=True):
                        if new != prev:
                            self.update_cell(row.key, col, _cell(col, new))
                self._shown[row.key] = row
            order = [r.key for r in rows]
            if [row.key.value for row in self.ordered_rows] != order:
                position = {k: i for i, k in enumerate(order)}
                self.sort(key=_RowOrder(self, position))
            if keep is not None and keep in wanted:
                index = self.get_row_index(keep)
                if index != self.cursor_row:
                    self.move_cursor(row=index, animate=False, scroll=True)


    def _remove_rows(self, keys: list[str]) -> None:
        """Remove many rows at once.

        DataTable.remove_row re-indexes every remaining row and re-validates the
        cursor and hover per call: O(rows) each, ~5-15 ms a row at 500 rows, so
        a keystroke that drops a few hundred rows took seconds. This does the same
        bookkeeping once for the whole batch. It touches DataTable internals
        (textual 8.x, pinned <9 in pyproject); if they change, fall back.
        """
        try:
            locations = self._row_locations
            data = self._data
            updated = self._updated_cells
        except AttributeError:
            for key in keys:
                self.remove_row(key)
            return
        gone = {RowKey(k) for k in keys}
        remaining = sorted((locations.get(k), k) for k in locations if k not in gone)
        self._row_locations = TwoWayDict({k: i for i, (_, k) in enumerate(remaining)})
        for key in gone:
            for column_key in data.get(key, ()):
                updated.discard(CellKey(key, column_key))
            self.rows.pop(key, None)
            data.pop(key, None)
        self._require_update_dimensions = True
        self.check_idle()
        self.cursor_coordinate = self.cursor_coordinate
        self.hover_coordinate = self.hover_coordinate
        self._update_count += 1
        self.refresh(layout=True)


class _RowOrder:
    """Sort key for DataTable.sort: a row's position in the model's order.

    DataTable.sort hands the key function the row's cells, not its key, so the
    position is looked up from the name cells (namespace, name), which are unique.
    """

    def __init__(self, table: PodTable, position: dict[str, int]) -> None:
        self.position = {}
        for key, index in position.items():
            row = table._shown[key]
            self.position[(row.cells[0], row.cells[1])] = index

    def __call__(self, cells: tuple[Text, ...]) -> int:
        return self.position.get((cells[0].plain, cells[1].plain), 1 << 30)
