"""``zkpy.net.snapshots.FuzzySnapshots``: a snapshot is written while the tree is walked.

The reactor is ``task.Clock`` (each ``advance(TURN)`` is a turn: one slice of the
walk) and the file is written by a real one-thread pool, whose results come back
through ``callFromThread`` when the test pumps them. What is held here: the file
grows while the walk is still going (the serialized tree is not held whole in
memory); the file loads as the tree; an ACL made during the walk makes the
snapshot be taken again with its ACL map last, and that file holds the new node;
a server stopping while the writer waits for slices does not leave its thread
waiting for ever, nor a half-written file.
"""

from __future__ import annotations

import os
import queue
import time
from collections.abc import Callable
from typing import Any

import pytest
from twisted.internet import task
from twisted.python.threadpool import ThreadPool

from zkpy.jute import schema as S
from zkpy.jute.protocol import Op
from zkpy.net.snapshots import FuzzySnapshots
from zkpy.server.metrics import ServerMetrics
from zkpy.storage.snapshot import load_snapshot
from zkpy.tree.datatree import DataTree

OPEN = [S.ACL(31, S.Id("world", "anyone"))]
TURN = 1.0


class ThreadedClock(task.Clock):
    """``task.Clock`` whose ``callFromThread`` calls wait for ``pump``, which
    advances the clock a turn at a time."""

    def __init__(self) -> None:
        super().__init__()
        self.from_threads: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def callFromThread(self, f: Any, *a: Any, **kw: Any) -> None:
        self.from_threads.put((f, a, kw))

    def pump(self, until: Callable[[], bool], turns: bool = True, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not until():
            if turns:
                self.advance(TURN)
            try:
                f, a, kw = self.from_threads.get(timeout=0.005)
            except queue.Empty:
                pass
            else:
                f(*a, **kw)
            assert time.monotonic() < deadline, "timed out"


class Core:
    def __init__(self) -> None:
        self.tree = DataTree()
        self.metrics = ServerMetrics()
        self.zxid = 0

    def session_timeouts(self) -> dict[int, int]:
        return {0x1234: 30000}

    def create(self, path: str, acl: Any = OPEN) -> None:
        self.zxid += 1
        hdr = S.TxnHeader(0x1234, self.zxid, self.zxid, 1_700_000_000_000 + self.zxid, Op.create)
        self.tree.apply(hdr, S.CreateTxn(path, b"v" * 50, acl, False, -1))


@pytest.fixture
def rig(tmp_path: Any) -> Any:
    reactor = ThreadedClock()
    pool = ThreadPool(minthreads=1, maxthreads=1, name="test-snapshot")
    pool.start()
    core = Core()
    for top in ("a", "m", "z"):
        core.create(f"/{top}")
        for i in range(3000):
            core.create(f"/{top}/n{i:05d}")
    # One slice of the walk per turn, a turn a second of the clock (``advance(0)``
    # would run the calls each turn schedules for now, the whole walk at once).
    one_slice = task.Cooperator(terminationPredicateFactory=lambda: lambda: True,
                                scheduler=lambda work: reactor.callLater(TURN, work))
    snaps = FuzzySnapshots(reactor, core, str(tmp_path), 100, False, pool,
                           cooperator=one_slice)
    yield reactor, core, snaps, tmp_path
    snaps.close()
    pool.stop()


def _files(directory: Any) -> list[str]:
    return sorted(os.listdir(directory))


def _state(tree: DataTree) -> dict[str, Any]:
    return {p: (n.data, n.acl, n.stat(), sorted(n.children or ())) for p, n in tree.nodes.items()}


def test_the_file_grows_while_the_tree_is_walked_and_loads_as_the_tree(rig: Any) -> None:
    reactor, core, snaps, directory = rig
    want = _state(core.tree)
    snaps.running = True
    snaps.take()
    name = f"snapshot.{core.zxid:x}"
    tmp = os.path.join(directory, name + ".tmp")
    reactor.advance(TURN)  # the first slices (2,000 nodes each) go to the writer
    reactor.advance(TURN)
    deadline = time.monotonic() + 20
    while not (os.path.exists(tmp) and os.path.getsize(tmp) > 100_000):
        assert time.monotonic() < deadline, "nothing written while the walk goes on"
        time.sleep(0.005)
    assert snaps.running  # the walk (9,000 nodes) is not over
    reactor.pump(lambda: not snaps.running)
    assert _files(directory) == [name]
    tree, sessions, _ = load_snapshot(os.path.join(directory, name))
    assert _state(tree) == want
    assert sessions == {0x1234: 30000}
    assert tree.digest == core.tree.digest


def test_an_acl_made_during_the_walk_takes_the_snapshot_again_with_its_map_last(
        rig: Any) -> None:
    reactor, core, snaps, directory = rig
    snaps.running = True
    snaps.take()
    reactor.advance(TURN)  # the walk is in /a
    fresh = [S.ACL(1, S.Id("digest", "someone:hash"))]
    core.create("/z/fresh", fresh)  # met later in the walk, with an ACL the map lacks
    reactor.pump(lambda: not snaps.running)
    names = _files(directory)
    assert len(names) == 1 and not names[0].endswith(".tmp")
    # The second attempt began later: its zxid holds the new node.
    assert names[0] == f"snapshot.{core.zxid:x}"
    tree, _, _ = load_snapshot(os.path.join(directory, names[0]))
    assert tree.nodes["/z/fresh"].acl == tuple(fresh)
    assert _state(tree) == _state(core.tree)


def test_stopping_while_the_writer_waits_frees_its_thread_and_leaves_no_file(rig: Any) -> None:
    reactor, core, snaps, directory = rig
    snaps.running = True
    snaps.take()
    reactor.advance(TURN)
    snaps.close()  # the server stops: no more turns for the walk
    reactor.pump(lambda: not snaps.running, turns=False)
    assert _files(directory) == []
