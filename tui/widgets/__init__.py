"""Widgets of the console. They render snapshots from ``tui.models`` and do no I/O."""
