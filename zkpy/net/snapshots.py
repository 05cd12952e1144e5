"""Fuzzy snapshots, as ZooKeeper takes them, without stopping the server.

Every ``snapCount/2 + rand(snapCount/2)`` commits (randomised, as in
ZooKeeper, so members do not all snapshot at once) the server rolls its log
and takes a snapshot: the tree is serialized a slice at a time between reactor
events (the tree keeps changing meanwhile: the logged txns after the
snapshot's starting zxid are replayed over it at recovery, which is idempotent)
and the file is written by a thread.
"""

from __future__ import annotations

import logging
import os
import queue
import random
import time
from collections.abc import Iterator
from typing import Any

from twisted.internet import task, threads
from twisted.python.threadpool import ThreadPool

from zkpy.net import heap
from zkpy.storage.formats import snapshot_name
from zkpy.storage.fs import LOCAL, FileSystem
from zkpy.storage.snapshot import AclUnknown, SnapshotMaker, write_snapshot

log = logging.getLogger("zkpy.storage")

_SLICE = 2000  # nodes serialized per step of a walk
_PAUSE = 0.0  # a walk's next step: the reactor's next turn
_END = object()  # the walk is over: the writer seals the file
_GIVE_UP = object()  # the walk stopped short: the writer drops the file


class _WalkEnded(Exception):
    """The walk stopped before the end (an ACL newer than the map, or shutdown)."""


class FuzzySnapshots:
    """A fuzzy snapshot every ``snapCount/2 + rand(snapCount/2)`` transactions
    (randomised, as in ZooKeeper, so servers do not all snapshot at once): the
    tree is serialized a slice at a time between reactor events, the file
    written by ``pool``. The owner rolls its log when ``counted`` says one is due,
    then calls ``take``."""

    def __init__(self, reactor: Any, core: Any, snap_dir: str, snap_count: int,
                 force_sync: bool, pool: ThreadPool, fs: FileSystem = LOCAL,
                 cooperator: task.Cooperator | None = None) -> None:
        self.reactor = reactor
        self.fs = fs
        self.core = core
        self.snap_dir = snap_dir
        self.snap_count = max(snap_count, 2)
        self.force_sync = force_sync
        self.pool = pool
        self.count = 0
        self.due_at = self._threshold()
        self.running = False
        self.closed = False
        # The slices of a snapshot being written as it is walked, for the writer.
        self._pieces: queue.SimpleQueue[Any] | None = None
        # Walks slices between this reactor's events (for at most 10 ms a turn:
        # Twisted's Cooperator; a test may take one slice a turn).
        self._cooperator = cooperator or task.Cooperator(
            scheduler=lambda work: reactor.callLater(_PAUSE, work))

    def _threshold(self) -> int:
        half = self.snap_count // 2
        return half + random.randrange(max(half, 1))

    def counted(self, n: int = 1) -> bool:
        """Count ``n`` more transactions; True when a snapshot is due now."""
        self.count += n
        if self.count < self.due_at or self.running:
            return False
        self.count = 0
        self.due_at = self._threshold()
        self.running = True
        return True

    def take(self) -> None:
        """Walk the tree a slice per reactor turn and hand each slice to the pool's
        thread, which writes it at once: the file grows as the walk goes, and what
        waits in memory is what the disk has not taken yet, not the whole tree
        serialized (200 MB for a million znodes of 100 B, held until the end
        before). The ACL map precedes the nodes in the file, so it is fixed
        first; a node whose ACL is newer than the map (a client made that ACL
        during the walk) ends the attempt, and the snapshot is taken again with
        the map written last (``_take_whole``)."""
        started = time.monotonic()
        maker = SnapshotMaker(self.core.tree, self.core.session_timeouts())
        maker.acls_first()
        path = os.path.join(self.snap_dir, snapshot_name(maker.zxid))
        log.info("Taking a fuzzy snapshot at zxid 0x%x", maker.zxid)
        pieces: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._pieces = pieces
        raced = [False]  # the walk met an ACL newer than the map

        def steps() -> Iterator[None]:
            try:
                while True:
                    done = maker.step(_SLICE)
                    for chunk in maker.chunks:
                        pieces.put(chunk)
                    maker.chunks.clear()
                    if done:
                        return
                    yield None
            except AclUnknown:
                raced[0] = True
                raise
            finally:  # done, failed, or stopped: the writer hears of it either way
                pieces.put(_END if maker.done else _GIVE_UP)

        def written() -> Iterator[bytes]:
            while True:
                piece = pieces.get()
                if piece is _END:
                    return
                if piece is _GIVE_UP:
                    raise _WalkEnded()
                yield piece

        walk = self._cooperator.cooperate(steps())
        walk.whenDone().addErrback(self._walk_failed)
        d = threads.deferToThreadPool(self.reactor, self.pool, write_snapshot, path,
                                      maker.head(), written(), self.force_sync,
                                      lambda: maker.digest, self.fs)
        d.addCallback(lambda _: self._done(path, maker, started))
        d.addErrback(self._streamed_failed, path, walk, raced, started)

    def _walk_failed(self, failure: Any) -> None:
        if not failure.check(AclUnknown, task.TaskStopped):  # those, the writer reports
            log.error("Snapshot walk failed: %s", failure.getErrorMessage())

    def _streamed_failed(self, failure: Any, path: str, walk: Any, raced: list[bool],
                         started: float) -> None:
        self._pieces = None
        try:
            walk.stop()  # the file failed: no point walking on
        except task.TaskFinished:
            pass
        self._remove(path + ".tmp")
        if self.closed:
            self.running = False
            log.info("Snapshot %s abandoned: the server is stopping", os.path.basename(path))
        elif raced[0]:
            log.info("An ACL was made while the snapshot was written; taking it again with "
                     "its ACL map last")
            self._take_whole(started)
        else:
            self._failed(failure, None)

    def _take_whole(self, started: float) -> None:
        """Serialize the whole tree in slices, then write the file: the ACL map can
        go last in the walk, since it is written after it."""
        maker = SnapshotMaker(self.core.tree, self.core.session_timeouts())
        path = os.path.join(self.snap_dir, snapshot_name(maker.zxid))

        def steps() -> Iterator[None]:
            while not maker.step(_SLICE):
                yield None

        d = self._cooperator.cooperate(steps()).whenDone()
        d.addCallback(lambda _: threads.deferToThreadPool(
            self.reactor, self.pool, write_snapshot, path, maker.head(), maker.chunks,
            self.force_sync, maker.digest, self.fs))
        d.addCallback(lambda _: self._done(path, maker, started))
        d.addErrback(self._failed, maker)

    def _remove(self, path: str) -> None:
        try:
            if self.fs.exists(path):
                self.fs.remove(path)
        except OSError as e:
            log.warning("Cannot remove %s: %s", path, e)

    def close(self) -> None:
        """The server stops: a writer waiting for slices is told there are no more
        (or the pool's thread would wait for them for ever)."""
        self.closed = True
        if self._pieces is not None:
            self._pieces.put(_GIVE_UP)

    def _done(self, path: str, maker: SnapshotMaker, started: float) -> None:
        self.running = False
        self._pieces = None
        # snapshottime: from taking the tree's first slice to the file synced.
        self.core.metrics.summary["snapshottime"].add(int((time.monotonic() - started) * 1000))
        log.info("Snapshot %s written: %d znodes, %d sessions", os.path.basename(path),
                 maker.count, len(maker.sessions))
        maker.chunks.clear()
        heap.give_back()  # the chunks' memory (see zkpy.net.heap)

    def _failed(self, failure: Any, maker: SnapshotMaker | None) -> None:
        self.running = False
        log.error("Snapshot failed: %s", failure.getErrorMessage())
        if maker is not None:
            maker.chunks.clear()
        heap.give_back()
