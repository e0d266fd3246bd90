"""Top-down call tree from stack samples, with flat/cum shares and time windows.

Stacks arrive root-first (``bpf.schema.expand_stacks``) with a sample count.
Counts are kept per second so the tree can show the last 10 s, the last 60 s
or everything since attach (or the last ``r`` reset). A node is identified by
its path of function names from the root, so the widget can keep expansion and
selection while numbers change. ``freeze`` keeps showing one tree while samples
keep being counted behind it (py-spy top's model, with k9s' pause).
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field, replace

Stack = tuple[str, ...]
Path = tuple[str, ...]

WINDOWS: dict[str, float | None] = {"10s": 10.0, "60s": 60.0, "all": None}
WINDOW_LABELS = {"10s": "last 10 s", "60s": "last 60 s", "all": "since attach"}


@dataclass(frozen=True)
class CallNode:
    """One function at one place in the tree. ``path`` is its identity."""

    path: Path
    name: str
    flat: int  # samples where this frame was the leaf
    cum: int  # samples with this frame on the stack at this path
    children: tuple[CallNode, ...] = ()  # heaviest first


@dataclass(frozen=True)
class FunctionTotal:
    """py-spy top's row: a function's own and total samples, recursion counted once."""

    name: str
    flat: int
    cum: int


@dataclass(frozen=True)
class CallTreeView:
    """The call tree as one refresh shows it."""

    root: CallNode
    total: int
    window: str
    source: str  # "ebpf", "pprof" or "" before any sample
    frozen: bool
    hot_path: tuple[Path, ...]
    top: tuple[FunctionTotal, ...] = ()
    hidden_nodes: int = 0  # nodes under the display threshold, left out

    @property
    def window_label(self) -> str:
        return WINDOW_LABELS.get(self.window, self.window)

    @property
    def source_label(self) -> str:
        return {"ebpf": "physical frames (eBPF)", "pprof": "pprof CPU profile"}.get(
            self.source, "no samples yet"
        )

    def find(self, path: Path) -> CallNode | None:
        """The node at ``path``, or None if it is not in this tree."""
        node = self.root
        for depth in range(len(path)):
            for child in node.children:
                if child.path[depth] == path[depth]:
                    node = child
                    break
            else:
                return None
        return node


EMPTY_VIEW = CallTreeView(
    root=CallNode(path=(), name="all samples", flat=0, cum=0),
    total=0,
    window="60s",
    source="",
    frozen=False,
    hot_path=(),
)


@dataclass(slots=True)  # tens of thousands per refresh: no per-node __dict__
class _MutableNode:
    flat: int = 0
    cum: int = 0
    children: dict[str, _MutableNode] = field(default_factory=dict)


def build_tree(
    stacks: Counter[Stack] | dict[Stack, int], min_share: float = 0.0, max_depth: int = 128
) -> tuple[CallNode, int, int]:
    """Aggregate root-first stacks into a tree.

    Args:
        stacks: sample count per stack, root first.
        min_share: nodes with a smaller share of all samples are left out
            (their samples still count in their parent's cum).
        max_depth: frames deeper than this are cut (a runaway recursion).

    Returns:
        The root node (path ``()``), the total samples, the number of nodes left out.
    """
    root = _MutableNode()
    for stack, count in stacks.items():
        if count <= 0:
            continue
        root.cum += count
        node = root
        for name in stack[:max_depth]:
            child = node.children.get(name)
            if child is None:
                child = node.children[name] = _MutableNode()
            child.cum += count
            node = child
        node.flat += count
    total = root.cum
    threshold = total * min_share
    hidden = 0

    def freeze(path: Path, name: str, node: _MutableNode) -> CallNode:
        nonlocal hidden
        kids = []
        for child_name, child in sorted(node.children.items(), key=lambda kv: (-kv[1].cum, kv[0])):
            if child.cum < threshold:
                hidden += 1
                continue
            kids.append(freeze(path + (child_name,), child_name, child))
        return CallNode(path=path, name=name, flat=node.flat, cum=node.cum, children=tuple(kids))

    return freeze((), "all samples", root), total, hidden


def hot_path(root: CallNode, min_share: float = 0.05) -> tuple[Path, ...]:
    """Paths from the root down the heaviest child while it holds ``min_share`` of all."""
    out: list[Path] = []
    node = root
    total = root.cum or 1
    while node.children:
        child = node.children[0]
        if child.cum / total < min_share:
            break
        out.append(child.path)
        node = child
    return tuple(out)


def function_totals(
    stacks: Counter[Stack] | dict[Stack, int], limit: int = 20
) -> tuple[FunctionTotal, ...]:
    """py-spy top's flat/cum per function; a recursive function counts once per sample."""
    flat: Counter[str] = Counter()
    cum: Counter[str] = Counter()
    for stack, count in stacks.items():
        if not stack or count <= 0:
            continue
        flat[stack[-1]] += count
        for name in set(stack):
            cum[name] += count
    rows = [FunctionTotal(name, flat[name], cum[name]) for name in cum]
    rows.sort(key=lambda r: (-r.flat, -r.cum, r.name))
    return tuple(rows[:limit])


class CallTreeModel:
    """Counts samples per second and builds the windowed tree on demand.

    Args:
        min_share: display threshold for nodes (share of the window's samples).
        keep_seconds: how many one-second buckets to keep (the longest window).
    """

    def __init__(self, min_share: float = 0.002, keep_seconds: int = 60) -> None:
        self.min_share = min_share
        self.keep_seconds = keep_seconds
        self.window = "60s"
        self.source = ""
        self._buckets: deque[tuple[int, Counter[Stack]]] = deque()
        self._since_attach: Counter[Stack] = Counter()
        # One tuple (and one string per function name) per distinct stack, shared by
        # every bucket: each frame's freshly decoded copies die at once instead of
        # living for a minute in a bucket (memory then grows by distinct stacks, not by
        # frames, and the heap does not fragment under a steady stream).
        self._stacks: dict[Stack, Stack] = {}
        self._names: dict[str, str] = {}
        # Running sum of all kept buckets (the longest window), so a refresh does
        # not re-add 60 one-second Counters at thousands of samples per second.
        self._kept: Counter[Stack] = Counter()
        self._latest = 0.0
        self._frozen: CallTreeView | None = None

    @property
    def frozen(self) -> bool:
        return self._frozen is not None

    def add(self, t: float, stacks: list[tuple[Stack, int]], source: str = "ebpf") -> None:
        """Count samples that ended at wall-clock second ``t``."""
        self.source = source
        sec = int(t)
        self._latest = max(self._latest, t)
        if not self._buckets or self._buckets[-1][0] < sec:
            self._buckets.append((sec, Counter()))
        # A late frame (older than the newest bucket) counts in the newest bucket
        # rather than reordering the deque.
        bucket = self._buckets[-1][1]
        for stack, count in stacks:
            stack = self._intern(stack)
            bucket[stack] += count
            self._since_attach[stack] += count
            self._kept[stack] += count
        cutoff = int(self._latest) - self.keep_seconds
        while self._buckets and self._buckets[0][0] <= cutoff:
            _, old = self._buckets.popleft()
            for stack, count in old.items():
                left = self._kept[stack] - count
                if left > 0:
                    self._kept[stack] = left
                else:
                    del self._kept[stack]

    def _intern(self, stack: Stack) -> Stack:
        """The shared copy of ``stack`` (stored on first sight)."""
        known = self._stacks.get(stack)
        if known is not None:
            return known
        names = self._names
        known = tuple(names.setdefault(name, name) for name in stack)
        self._stacks[known] = known
        return known

    def set_window(self, window: str) -> None:
        if window not in WINDOWS:
            raise ValueError(f"unknown window {window!r}: use one of {', '.join(WINDOWS)}")
        self.window = window

    def reset(self) -> None:
        """Forget every sample so far (``r``); the tree starts again from now."""
        self._buckets.clear()
        self._since_attach.clear()
        self._kept.clear()
        self._stacks.clear()
        self._names.clear()
        if self._frozen is not None:
            self._frozen = None

    def freeze(self, on: bool) -> None:
        """Keep showing the current tree (``z``) until unfrozen; counting continues."""
        self._frozen = None
        if on:
            self._frozen = replace(self.view(), frozen=True)

    def window_stacks(self) -> Counter[Stack]:
        span = WINDOWS[self.window]
        if span is None:
            return self._since_attach
        if span >= self.keep_seconds:
            return self._kept
        out: Counter[Stack] = Counter()
        # Whole seconds: the newest bucket and the span-1 before it.
        first = int(self._latest) - int(span) + 1
        for sec, counts in self._buckets:
            if sec >= first:
                out.update(counts)
        return out

    def view(self) -> CallTreeView:
        """The tree for the current window (or the frozen one)."""
        if self._frozen is not None:
            return self._frozen
        stacks = self.window_stacks()
        root, total, hidden = build_tree(stacks, self.min_share)
        return CallTreeView(
            root=root,
            total=total,
            window=self.window,
            source=self.source,
            frozen=False,
            hot_path=hot_path(root),
            top=function_totals(stacks),
            hidden_nodes=hidden,
        )
