"""A simulated file system that keeps only what a real disk could keep.

``SimFS`` is a ``zkpy.storage.fs.FileSystem`` in memory that tracks, per file
and per directory, what is durable:

- a file holds its durable bytes and the writes and truncations made since
  its last ``sync`` (reads see all of them, as the page cache does);
- a directory holds its durable entries and the changes made since its last
  ``sync_dir``: new names (files and directories created), renames within it,
  removals. Syncing a file never makes its name durable.

``power_cut(rng)`` keeps what a real disk could: for every file a prefix of
its unsynced writes (none, some, all), the last one kept torn at any byte;
for every directory a prefix of its unsynced changes; then anything no
longer reachable from the root is gone, and so are the open files.
``crash()`` is a process kill instead: nothing is lost, open files die.

Faults on demand: ``cut_at(n)`` makes the n-th mutating operation from now
raise ``PowerCut`` before it happens (the caller then calls ``power_cut``),
so cuts land between any two writes, syncs or renames of a batch
(``cut_at(n, power=False)``: the process is killed there, ``crash``);
``fail(kind)`` makes the next write or sync raise EIO, and a failed sync
drops the unsynced writes for good (they stay readable until the power
goes, as on Linux after a failed fsync).
"""

from __future__ import annotations

import errno
import posixpath
import random
from dataclasses import dataclass, field
from typing import Any


class PowerCut(BaseException):  # noqa: N818 - not an error: the simulated power went off
    """The power went off in the middle of a file operation (``SimFS.cut_at``),
    or (``power`` False) the process was killed there. A BaseException, so no
    ``except Exception`` in the code under test eats it."""

    def __init__(self, message: str, power: bool = True) -> None:
        super().__init__(message)
        self.power = power


@dataclass
class _Node:
    ino: int
    is_dir: bool
    data: bytearray = field(default_factory=bytearray)  # what reads see
    durable: bytearray = field(default_factory=bytearray)
    pending: list[tuple[Any, ...]] = field(default_factory=list)  # ("w", off, b) | ("t", n)
    entries: dict[str, int] = field(default_factory=dict)
    durable_entries: dict[str, int] = field(default_factory=dict)
    dpending: list[tuple[Any, ...]] = field(default_factory=list)  # link/unlink/rename


def _apply(buf: bytearray, op: tuple[Any, ...]) -> None:
    if op[0] == "w":
        _, off, data = op
        if off > len(buf):
            buf.extend(bytes(off - len(buf)))
        buf[off:off + len(data)] = data
    else:
        size = op[1]
        if size < len(buf):
            del buf[size:]
        else:
            buf.extend(bytes(size - len(buf)))


def _apply_entry(entries: dict[str, int], op: tuple[Any, ...]) -> None:
    if op[0] == "link":
        entries[op[1]] = op[2]
    elif op[0] == "unlink":
        entries.pop(op[1], None)
    else:  # rename src -> dst
        ino = entries.pop(op[1], None)
        if ino is not None:
            entries[op[2]] = ino


class SimFile:
    """An open file of a ``SimFS`` (dead after a crash or power cut)."""

    def __init__(self, fs: SimFS, ino: int) -> None:
        self.fs = fs
        self.ino = ino
        self.gen = fs.gen
        self.pos = 0
        self.closed = False

    def _node(self, kind: str | None) -> _Node:
        if self.closed or self.gen != self.fs.gen:
            raise OSError(errno.EBADF, "file closed (or its process died)")
        if kind is not None:
            self.fs._tick(kind)
        return self.fs.nodes[self.ino]

    def write(self, data: bytes) -> None:
        self.fs._write(self._node("write"), self.pos, bytes(data))
        self.pos += len(data)

    def pwrite(self, data: bytes, offset: int) -> None:
        self.fs._write(self._node("write"), offset, bytes(data))

    def truncate(self, size: int) -> None:
        node = self._node("truncate")
        node.pending.append(("t", size))
        _apply(node.data, ("t", size))

    def sync(self) -> None:
        self.fs._sync(self._node(None))

    def close(self) -> None:
        self.closed = True


class SimFS:
    def __init__(self) -> None:
        self.nodes: dict[int, _Node] = {1: _Node(1, True)}
        self._next = 2
        self.gen = 0
        self.ops = 0
        self._cut_at: int | None = None
        self._cut_power = True
        self._failing: dict[str, int] = {}
        self.dead = False
        self.stats: dict[str, int] = {}

    # -- faults ---------------------------------------------------------------------------

    def cut_at(self, n: int | None, power: bool = True) -> None:
        """The ``n``-th mutating operation from now raises PowerCut (None: never);
        ``power`` False: the process is killed there instead (SIGKILL)."""
        self._cut_at = None if n is None else self.ops + max(n, 1)
        self._cut_power = power

    def fail(self, kind: str, count: int = 1) -> None:
        """The next ``count`` operations of ``kind`` ("write", "sync") fail with EIO."""
        self._failing[kind] = self._failing.get(kind, 0) + count

    def no_more_faults(self) -> None:
        """Forget scheduled cuts and failures."""
        self._cut_at = None
        self._failing.clear()

    def _tick(self, kind: str) -> None:
        if self.dead:
            raise PowerCut("the power is off")
        self.ops += 1
        if self._cut_at is not None and self.ops >= self._cut_at:
            self._cut_at = None
            self.dead = True
            what = "power cut" if self._cut_power else "process killed"
            raise PowerCut(f"{what} before {kind} (operation {self.ops})", self._cut_power)
        if self._failing.get(kind):
            self._failing[kind] -= 1
            if kind == "sync":
                raise OSError(errno.EIO, "simulated fsync failure")
            raise OSError(errno.EIO, f"simulated {kind} failure")

    def crash(self) -> None:
        """The process died (SIGKILL): nothing is lost, its open files are closed."""
        self.gen += 1
        self.dead = False
        self._cut_at = None

    def power_cut(self, rng: random.Random | None = None) -> dict[str, int]:
        """Keep only what a disk could have kept (``rng`` chooses; without one,
        nothing unsynced is kept: the harshest cut); returns what was lost."""
        lost = {"writes": 0, "torn": 0, "dir_changes": 0}
        for node in self.nodes.values():
            if node.is_dir:
                k = _choose(rng, len(node.dpending))
                lost["dir_changes"] += len(node.dpending) - k
                entries = dict(node.durable_entries)
                for op in node.dpending[:k]:
                    _apply_entry(entries, op)
                node.entries, node.durable_entries, node.dpending = entries, dict(entries), []
                continue
            k = _choose(rng, len(node.pending))
            lost["writes"] += len(node.pending) - k
            buf = bytearray(node.durable)
            for i, op in enumerate(node.pending[:k]):
                if i == k - 1 and op[0] == "w" and op[2] and rng and rng.random() < 0.5:
                    op = ("w", op[1], op[2][:rng.randrange(len(op[2]))])
                    lost["torn"] += 1
                _apply(buf, op)
            node.data, node.durable, node.pending = buf, bytearray(buf), []
        self._collect()
        self.crash()
        for key, value in lost.items():
            self.stats[key] = self.stats.get(key, 0) + value
        return lost

    def _collect(self) -> None:
        seen, stack = {1}, [1]
        while stack:
            for ino in self.nodes[stack.pop()].entries.values():
                if ino not in seen and ino in self.nodes:
                    seen.add(ino)
                    if self.nodes[ino].is_dir:
                        stack.append(ino)
        self.nodes = {ino: n for ino, n in self.nodes.items() if ino in seen}

    # -- paths ----------------------------------------------------------------------------

    def _lookup(self, path: str) -> _Node | None:
        node = self.nodes[1]
        for part in _parts(path):
            if not node.is_dir:
                return None
            ino = node.entries.get(part)
            if ino is None:
                return None
            node = self.nodes[ino]
        return node

    def _get(self, path: str) -> _Node:
        node = self._lookup(path)
        if node is None:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
        return node

    def _parent(self, path: str) -> tuple[_Node, str]:
        parts = _parts(path)
        if not parts:
            raise OSError(errno.EINVAL, "the root", path)
        parent = self._get("/" + "/".join(parts[:-1]))
        if not parent.is_dir:
            raise NotADirectoryError(errno.ENOTDIR, "Not a directory", path)
        return parent, parts[-1]

    def _new(self, is_dir: bool) -> _Node:
        node = _Node(self._next, is_dir)
        self.nodes[node.ino] = node
        self._next += 1
        return node

    def _link(self, parent: _Node, name: str, node: _Node) -> None:
        parent.entries[name] = node.ino
        parent.dpending.append(("link", name, node.ino))

    # -- the FileSystem interface -----------------------------------------------------------

    def create(self, path: str) -> SimFile:
        self._tick("create")
        parent, name = self._parent(path)
        node = self._lookup(path)
        if node is None:
            node = self._new(False)
            self._link(parent, name, node)
        elif node.is_dir:
            raise IsADirectoryError(errno.EISDIR, "Is a directory", path)
        elif node.data:
            node.pending.append(("t", 0))
            del node.data[:]
        return SimFile(self, node.ino)

    def open_rw(self, path: str) -> SimFile:
        node = self._get(path)
        if node.is_dir:
            raise IsADirectoryError(errno.EISDIR, "Is a directory", path)
        return SimFile(self, node.ino)

    def read(self, path: str) -> bytes:
        node = self._get(path)
        if node.is_dir:
            raise IsADirectoryError(errno.EISDIR, "Is a directory", path)
        return bytes(node.data)

    def exists(self, path: str) -> bool:
        return self._lookup(path) is not None

    def isdir(self, path: str) -> bool:
        node = self._lookup(path)
        return node is not None and node.is_dir

    def size(self, path: str) -> int:
        return len(self._get(path).data)

    def listdir(self, path: str) -> list[str]:
        node = self._get(path)
        if not node.is_dir:
            raise NotADirectoryError(errno.ENOTDIR, "Not a directory", path)
        return list(node.entries)

    def mkdir(self, path: str) -> None:
        self._tick("mkdir")
        parent, name = self._parent(path)
        if name in parent.entries:
            raise FileExistsError(errno.EEXIST, "File exists", path)
        self._link(parent, name, self._new(True))

    def makedirs(self, path: str) -> None:
        parts = _parts(path)
        for i in range(1, len(parts) + 1):
            sub = "/" + "/".join(parts[:i])
            if not self.isdir(sub):
                self.mkdir(sub)
                self.sync_dir(posixpath.dirname(sub))

    def replace(self, src: str, dst: str) -> None:
        self._tick("rename")
        sparent, sname = self._parent(src)
        dparent, dname = self._parent(dst)
        if sparent is not dparent:
            raise NotImplementedError("SimFS renames within one directory only")
        ino = sparent.entries.get(sname)
        if ino is None:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", src)
        if sname == dname:
            return
        del sparent.entries[sname]
        sparent.entries[dname] = ino
        sparent.dpending.append(("rename", sname, dname))

    def remove(self, path: str) -> None:
        self._tick("remove")
        parent, name = self._parent(path)
        node = self._get(path)
        if node.is_dir:
            raise IsADirectoryError(errno.EISDIR, "Is a directory", path)
        del parent.entries[name]
        parent.dpending.append(("unlink", name))

    def rmdir(self, path: str) -> None:
        self._tick("rmdir")
        parent, name = self._parent(path)
        node = self._get(path)
        if not node.is_dir:
            raise NotADirectoryError(errno.ENOTDIR, "Not a directory", path)
        if node.entries:
            raise OSError(errno.ENOTEMPTY, "Directory not empty", path)
        del parent.entries[name]
        parent.dpending.append(("unlink", name))

    def sync_file(self, path: str) -> None:
        self._sync(self._get(path))

    def sync_dir(self, path: str) -> None:
        self._sync(self._get(path or "/"))

    # -- internals and inspection -------------------------------------------------------------

    def _write(self, node: _Node, off: int, data: bytes) -> None:
        node.pending.append(("w", off, data))
        _apply(node.data, ("w", off, data))

    def _sync(self, node: _Node) -> None:
        try:
            self._tick("sync")
        except OSError:
            # Linux after a failed fsync: the dirty pages are marked clean, the
            # writes stay readable but never reach the disk.
            node.pending = []
            raise
        if node.is_dir:
            node.durable_entries = dict(node.entries)
            node.dpending = []
            return
        for op in node.pending:
            _apply(node.durable, op)
        node.pending = []

    def unsynced(self) -> int:
        """How many changes (writes, truncations, directory changes) are not durable."""
        return sum(len(n.pending) + len(n.dpending) for n in self.nodes.values())

    def files(self, top: str = "/") -> dict[str, bytes]:
        """Every file under ``top`` (path -> what a read returns)."""
        out: dict[str, bytes] = {}
        stack = [(top.rstrip("/") or "/", self._get(top))]
        while stack:
            path, node = stack.pop()
            for name, ino in node.entries.items():
                child = self.nodes[ino]
                sub = posixpath.join(path, name)
                if child.is_dir:
                    stack.append((sub, child))
                else:
                    out[sub] = bytes(child.data)
        return out


def _parts(path: str) -> list[str]:
    if not path.startswith("/"):
        raise ValueError(f"SimFS paths are absolute: {path!r}")
    return [p for p in posixpath.normpath(path).split("/") if p]


def _choose(rng: random.Random | None, n: int) -> int:
    """How many of ``n`` unsynced changes survive: often none or all, else any prefix."""
    if n == 0 or rng is None:
        return 0
    r = rng.random()
    if r < 0.3:
        return 0
    if r < 0.55:
        return n
    return rng.randint(0, n)
