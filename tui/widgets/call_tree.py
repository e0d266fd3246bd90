"""The live call tree: a top-down Tree whose expansion and cursor survive updates.

Nodes are keyed by their path from the root. On each snapshot a parent's
children are updated in place when their order is unchanged; when the order
changed they are rebuilt, re-expanding what was expanded, and the cursor is put
back on the node (by path) it was on. Collapsed subtrees are filled lazily when
opened, so a deep tree costs only what is on screen.
"""

from __future__ import annotations

import re

from rich.text import Text
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from tui.models.calltree import EMPTY_VIEW, CallNode, CallTreeView, Path

_UNRESOLVED = re.compile(r"^0x[0-9a-fA-F]+( \[.*\])?$")


def node_label(node: CallNode, total: int, related: bool = False) -> Text:
    """``cum% flat%  name``; unresolved addresses dim, the finding's path marked."""
    total = total or 1
    t = Text(no_wrap=True, overflow="ellipsis")
    cum = node.cum / total * 100
    t.append(f"{cum:5.1f}%", style="bold red" if cum >= 50 else ("bold" if cum >= 20 else ""))
    flat = node.flat / total * 100
    t.append(f" {flat:5.1f}% ", style="yellow" if flat >= 10 else "dim")
    name_style = "dim italic" if _UNRESOLVED.match(node.name) else ""
    if related:
        name_style = "bold reverse"
    t.append(node.name, style=name_style)
    return t


def _descendants(node: TreeNode[Path]) -> list[TreeNode[Path]]:
    out: list[TreeNode[Path]] = []
    stack = list(node.children)
    while stack:
        n = stack.pop()
        out.append(n)
        stack.extend(n.children)
    return out


class CallTreeWidget(Tree[Path]):
    """The Tree itself; data of each node is its path."""

    DEFAULT_CSS = "CallTreeWidget { height: 1fr; background: $surface; }"

    def __init__(self, **kwargs: object) -> None:
        super().__init__(Text("all samples"), data=(), **kwargs)  # type: ignore[arg-type]
        self.show_root = True
        self.guide_depth = 2
        self.view: CallTreeView = EMPTY_VIEW
        self.related: tuple[Path, ...] = ()
        self._user_moved = False

    def on_key(self) -> None:
        self._user_moved = True

    def on_click(self) -> None:
        self._user_moved = True

    def show(self, view: CallTreeView, related: Path = ()) -> None:
        """Render ``view``; ``related`` is a path a finding points at (highlighted)."""
        cursor_path = self.cursor_node.data if self.cursor_node is not None else None
        self.view = view
        self.related = tuple(related[:i] for i in range(1, len(related) + 1))
        self.root.set_label(self._root_label(view))
        self._sync(self.root, view.root)
        if view.total and not self._user_moved and view.hot_path:
            # Follow the hot path until the user takes over the tree: open it, and
            # close what an earlier hot path opened.
            keep = {()} | set(view.hot_path)
            for node in _descendants(self.root):
                if node.is_expanded and node.data not in keep:
                    node.collapse()
            self.expand_path(view.hot_path[-1])
        if cursor_path is not None:
            self._restore_cursor(cursor_path)

    def reset_expansion(self) -> None:
        """After ``r``: the tree follows the hot path again."""
        self._user_moved = False

    def _root_label(self, view: CallTreeView) -> Text:
        t = Text(no_wrap=True)
        t.append(f"{view.total:,} samples", style="bold")
        t.append("  cum%  flat%", style="dim")
        return t

    def _label(self, node: CallNode) -> Text:
        return node_label(node, self.view.total, node.path in self.related)

    def _sync(
        self, tnode: TreeNode[Path], vnode: CallNode, expanded: set[Path] | None = None
    ) -> None:
        """Make ``tnode``'s children show ``vnode``'s; ``expanded`` are paths to re-open
        (given when an ancestor was rebuilt)."""
        wanted = [c.path for c in vnode.children]
        have = [c.data for c in tnode.children]
        if wanted == have and expanded is None:
            for tchild, vchild in zip(tnode.children, vnode.children, strict=True):
                tchild.set_label(self._label(vchild))
                tchild.allow_expand = bool(vchild.children)
                if tchild.is_expanded or tchild.children:
                    self._sync(tchild, vchild)
            return
        if expanded is None:
            # Remember every open node below, not just the children: a rebuild
            # would otherwise close the whole subtree the user had opened.
            expanded = {n.data for n in _descendants(tnode) if n.is_expanded}
        tnode.remove_children()
        for vchild in vnode.children:
            tchild = tnode.add(
                self._label(vchild), data=vchild.path, allow_expand=bool(vchild.children)
            )
            if vchild.path in expanded:
                self._sync(tchild, vchild, expanded)
                tchild.expand()

    def on_tree_node_expanded(self, event: Tree.NodeExpanded[Path]) -> None:
        node = event.node
        vnode = self.view.find(node.data or ())
        if vnode is not None:
            self._sync(node, vnode)

    def expand_path(self, path: Path) -> TreeNode[Path] | None:
        """Open every node down to ``path`` and return the deepest one found."""
        tnode: TreeNode[Path] = self.root
        self.root.expand()
        for depth in range(1, len(path) + 1):
            vnode = self.view.find(path[: depth - 1])
            if vnode is not None and not tnode.children:
                self._sync(tnode, vnode)
            nxt = next((c for c in tnode.children if c.data == path[:depth]), None)
            if nxt is None:
                break
            tnode = nxt
            if nxt.allow_expand:
                if not nxt.children:
                    vchild = self.view.find(nxt.data or ())
                    if vchild is not None:
                        self._sync(nxt, vchild)
                nxt.expand()
        return tnode

    def select_path(self, path: Path) -> None:
        """Open the tree down to ``path`` and put the cursor on it."""
        node = self.expand_path(path)
        if node is not None:
            self._user_moved = True  # the finding's path stays where the user asked
            self._move_to(node)
            self.scroll_to_node(node, animate=False)

    def _move_to(self, node: TreeNode[Path]) -> None:
        # A node's line is only known once the tree's lines are rebuilt after a change;
        # asking for lines by number rebuilds them (move_cursor alone would use a stale line).
        for line in range(self.last_line + 1):
            if self.get_node_at_line(line) is node:
                self.cursor_line = line
                return

    def _restore_cursor(self, path: Path) -> None:
        if self.cursor_node is not None and self.cursor_node.data == path:
            return
        node: TreeNode[Path] = self.root
        for depth in range(1, len(path) + 1):
            nxt = next((c for c in node.children if c.data == path[:depth]), None)
            if nxt is None:
                break
            node = nxt
        self._move_to(node)
