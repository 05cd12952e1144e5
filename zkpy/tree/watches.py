"""Watches: one-shot, persistent and persistent-recursive, per connection.

Like Apache ZooKeeper 3.8 there are two tables, data watches (getData and
exists) and child watches (getChildren); a persistent watch (addWatch) sits in
both. A watcher is whatever object the caller registers (the server uses its
connection objects); ``trigger`` returns the watchers to notify and never
sends anything itself.

Rules kept from ZooKeeper (``WatchManager``):
- a one-shot watch fires once and is dropped; a persistent one stays;
- a persistent-recursive watch on an ancestor sees NodeCreated, NodeDeleted
  and NodeDataChanged below it, never NodeChildrenChanged;
- one connection gets one event per change even when it watches the path in
  both tables (NodeDeleted);
- registering again on the same path replaces the mode (the last call wins).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from zkpy.jute.protocol import EventType, WatcherType

# EventType members read per request, kept as module constants: on Python 3.11
# reading an enum member goes through EnumType.__getattr__'s hook.
_EventType_NodeChildrenChanged: Final = EventType.NodeChildrenChanged
_EventType_NodeDeleted: Final = EventType.NodeDeleted

STANDARD = 0
PERSISTENT = 1
PERSISTENT_RECURSIVE = 2

DATA = 0
CHILD = 1


def _ancestors(path: str) -> Iterable[str]:
    while path != "/":
        path = path[:path.rfind("/")] or "/"
        yield path


class WatchTable:
    """One table (data or child): path -> {watcher: mode}."""

    def __init__(self) -> None:
        self.by_path: dict[str, dict[Any, int]] = {}
        self.by_watcher: dict[Any, set[str]] = {}
        self.recursive = 0  # how many recursive registrations exist (skip the walk when 0)

    def add(self, path: str, watcher: Any, mode: int) -> None:
        entries = self.by_path.get(path)
        if entries is None:
            entries = self.by_path[path] = {}
        old = entries.get(watcher)
        if old == PERSISTENT_RECURSIVE:
            self.recursive -= 1
        if mode == PERSISTENT_RECURSIVE:
            self.recursive += 1
        entries[watcher] = mode
        paths = self.by_watcher.get(watcher)
        if paths is None:
            paths = self.by_watcher[watcher] = set()
        paths.add(path)

    def remove(self, path: str, watcher: Any, modes: Iterable[int] | None = None) -> bool:
        entries = self.by_path.get(path)
        if not entries or watcher not in entries:
            return False
        mode = entries[watcher]
        if modes is not None and mode not in modes:
            return False
        del entries[watcher]
        if mode == PERSISTENT_RECURSIVE:
            self.recursive -= 1
        if not entries:
            del self.by_path[path]
        paths = self.by_watcher.get(watcher)
        if paths is not None:
            paths.discard(path)
            if not paths:
                del self.by_watcher[watcher]
        return True

    def remove_watcher(self, watcher: Any) -> None:
        for path in list(self.by_watcher.get(watcher, ())):
            self.remove(path, watcher)

    def trigger(self, path: str, etype: int, out: dict[Any, None]) -> None:
        """Add to ``out`` (an ordered set) every watcher this event reaches."""
        entries = self.by_path.get(path)
        if entries:
            for w, mode in list(entries.items()):
                if mode == PERSISTENT_RECURSIVE and etype == _EventType_NodeChildrenChanged:
                    continue
                out[w] = None
                if mode == STANDARD:
                    self.remove(path, w)
        if self.recursive:
            for parent in _ancestors(path):
                entries = self.by_path.get(parent)
                if entries and etype != _EventType_NodeChildrenChanged:
                    for w, mode in entries.items():
                        if mode == PERSISTENT_RECURSIVE:
                            out[w] = None

    def count(self) -> int:
        return sum(len(e) for e in self.by_path.values())


class WatchManager:
    def __init__(self) -> None:
        self.data = WatchTable()
        self.child = WatchTable()

    def add_data(self, path: str, watcher: Any) -> None:
        self.data.add(path, watcher, STANDARD)

    def add_child(self, path: str, watcher: Any) -> None:
        self.child.add(path, watcher, STANDARD)

    def add_persistent(self, path: str, watcher: Any, recursive: bool) -> None:
        mode = PERSISTENT_RECURSIVE if recursive else PERSISTENT
        self.data.add(path, watcher, mode)
        self.child.add(path, watcher, mode)

    def remove_watcher(self, watcher: Any) -> None:
        self.data.remove_watcher(watcher)
        self.child.remove_watcher(watcher)

    def trigger(self, path: str, etype: int) -> list[Any]:
        """Watchers to notify of (etype, path), in registration order, each once."""
        out: dict[Any, None] = {}
        if etype == _EventType_NodeChildrenChanged:
            self.child.trigger(path, etype, out)
        elif etype == _EventType_NodeDeleted:
            self.data.trigger(path, etype, out)
            self.child.trigger(path, etype, out)
        else:
            self.data.trigger(path, etype, out)
        return list(out)

    def _tables_and_modes(self, wtype: int) -> list[tuple[WatchTable, tuple[int, ...] | None]]:
        if wtype == WatcherType.Children:
            return [(self.child, None)]
        if wtype == WatcherType.Data:
            return [(self.data, None)]
        if wtype == WatcherType.Persistent:
            return [(self.data, (PERSISTENT,)), (self.child, (PERSISTENT,))]
        if wtype == WatcherType.PersistentRecursive:
            return [(self.data, (PERSISTENT_RECURSIVE,)), (self.child, (PERSISTENT_RECURSIVE,))]
        return [(self.child, None), (self.data, None)]

    def remove(self, path: str, watcher: Any, wtype: int) -> bool:
        removed = False
        for table, modes in self._tables_and_modes(wtype):
            if table.remove(path, watcher, modes):
                removed = True
        return removed

    def watched(self, path: str, wtype: int) -> bool:
        """What checkWatches answers: is ``path`` watched in the tables of ``wtype``?

        ZooKeeper 3.8's WatchManager.containsWatcher answers true when the
        exact path has any watcher in the table ("at the leaf node, all watcher
        types match"), whichever session set it, so a session may be told a
        watch exists that only another session holds. Clients follow that
        answer (the Java client's removeWatches checks, then drops its own
        watcher locally), so zkpy answers as ZooKeeper does.
        """
        return any(bool(table.by_path.get(path))
                   for table, _ in self._tables_and_modes(wtype))

    def count(self) -> int:
        return self.data.count() + self.child.count()

    def paths_of(self, watcher: Any) -> set[str]:
        return self.data.by_watcher.get(watcher, set()) | self.child.by_watcher.get(watcher, set())
