"""The frames an export needs, kept in bounded memory while attached.

Profiles: the newest two of each kind (two heap profiles give the allocation
rate). Everything else (cpu_stacks, goroutines, gc, throttle, ...): the last
``window_s`` seconds by frame time. The newest ``hello`` always stays.
Pure logic: no Textual, no I/O.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping
from typing import Any

WINDOW_S = 60.0
PROFILES_PER_KIND = 2
MAX_FRAMES = 20_000  # a hard cap whatever the frame rate


class EvidenceBuffer:
    """Frames for ``tui.export.export_session``; ``add`` and ``frames`` may run on
    different threads."""

    def __init__(self, window_s: float = WINDOW_S) -> None:
        self.window_s = window_s
        self._lock = threading.Lock()
        self._hello: dict[str, Any] | None = None
        self._profiles: dict[str, deque[dict[str, Any]]] = {}
        self._recent: deque[dict[str, Any]] = deque(maxlen=MAX_FRAMES)

    def add(self, frame: Mapping[str, Any]) -> None:
        f = dict(frame)
        kind = f.get("kind")
        with self._lock:
            if kind == "hello":
                self._hello = f
            elif kind == "profile":
                key = str(f.get("profile"))
                self._profiles.setdefault(key, deque(maxlen=PROFILES_PER_KIND)).append(f)
            else:
                self._recent.append(f)
                newest = f.get("t")
                if isinstance(newest, int):
                    cutoff = newest - int(self.window_s * 1e9)
                    while self._recent and int(self._recent[0].get("t") or 0) < cutoff:
                        self._recent.popleft()

    def frames(self) -> list[dict[str, Any]]:
        """The kept frames, oldest first."""
        with self._lock:
            out = [self._hello] if self._hello else []
            rest = [f for q in self._profiles.values() for f in q] + list(self._recent)
        rest.sort(key=lambda f: int(f.get("t") or 0))
        return out + rest
