"""The one disk writer: Zab's persist ops carried out in order, with group commit.

``DiskWriter`` is the ``zkpy.zab.driver.Disk`` of every server, standalone or
ensemble member. Ops handed to it (txn appends, epoch files, TRUNC, SNAP, log
rolls before a snapshot) are written in order by one thread; whatever
accumulated while the previous batch was being written goes out as the next
batch, with one fsync for all of it (group commit: under load many
transactions share an fsync, and none waits longer than one sync behind the
one before it). Only once a batch is synced does ``on_synced`` release the
messages that promise durability (``send_after_persist``: ACKs, ACKEPOCH,
LEADERINFO, a leader's own ACKs, which is how a write becomes committable).
A follower's ACKs to its leader leave from the log thread as soon as their
batch is synced (``send_from_thread``: ``QuorumLinks.send_from_thread``), as
ZooKeeper's SendAckRequestProcessor does: the reactor gets the rest.

A batch whose messages all left that way, with nothing submitted behind it,
finishes quietly: the log thread does not wake the reactor for it. What is
left of it (its figures, the driver's ``Persisted``) is bookkeeping, and
the reactor takes it at its next event (``drain``: the member calls it
before each step, ``submit`` before anything else, and a reader of the
figures such as mntr first of all; Zab's tick comes every tickTime). Woken
for it, a follower's event loop ran once more per write at the moment the
leader needed a core to commit (three servers on two cores).

With forceSync on, a batch goes to the log thread as soon as there is one
(the driver hands a step's writes over after its sends: a leader's just
after its PROPOSALs leave); with it off a write only copies
into the page cache: it is done on the reactor at the end of the turn,
cheaper than two thread hops.
A write that fails stops the server: one that cannot persist cannot
acknowledge anything.

Metrics (``metrics``: the core's ``ServerMetrics``, when set): each batch's
fsync time, size and write time, and each transaction's time from being handed
over to being written and to being synced, measured here with a monotonic
clock and recorded on the reactor thread once the batch is done (ZooKeeper's
SyncRequestProcessor and FileTxnLog figures; see ``DiskTimes``).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from zkpy.storage.fs import LOCAL, FileSystem
from zkpy.storage.opwriter import OpWriter, Roll
from zkpy.zab.driver import Durable
from zkpy.zab.events import PersistOp

log = logging.getLogger("zkpy.storage")

__all__ = ["DiskWriter", "LogThread", "Roll"]


class LogThread:
    """The log writer's thread: one thread running its jobs in order.

    The part of Twisted's ``ThreadPool`` the disk writer uses
    (``callInThreadWithCallback``, ``stop``), without what it does not need:
    every batch went through Twisted's context capture, its worker team's
    coordinator and a ``Deferred`` on the way back, a few dozen Python calls
    on the reactor thread per batch, and a replicated write waits for two
    batches in series (the leader's and a follower's). The result comes back
    through ``on_result(ok, result_or_Failure)`` called on this thread, as
    Twisted's pool calls it.
    """

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name)
        self._thread.start()

    def callInThreadWithCallback(self, on_result: Callable[[bool, Any], None],
                                 f: Callable[..., Any], *args: Any) -> None:
        self._jobs.put((on_result, f, args))

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            on_result, f, args = job
            try:
                result = f(*args)
            except BaseException:
                on_result(False, Failure())
            else:
                on_result(True, result)

    def stop(self) -> None:
        """Finish the jobs handed over so far, then end the thread."""
        self._jobs.put(None)
        if threading.current_thread() is not self._thread:
            self._thread.join()


@dataclass
class DiskTimes:
    """What one batch took, on the monotonic clock (seconds)."""

    started: float = 0.0  # the write began
    written: float = 0.0  # everything was written, before the fsync
    synced: float = 0.0  # the fsync returned
    # (time handed over, transactions) for each submit in the batch
    queued: list[tuple[float, int]] = field(default_factory=list)


#: FileTxnLog's fsync.warningthresholdms default: a slower fsync is counted (srvr).
FSYNC_WARNING_MS = 1000


def _ms(seconds: float) -> int:
    """Whole milliseconds, truncated (as TimeUnit.NANOSECONDS.toMillis)."""
    return int(seconds * 1000) if seconds > 0 else 0


class DiskWriter:
    """The Driver's ``Disk``: persist ops in order, sync, then release what waited."""

    def __init__(self, reactor: Any, snap_dir: str, log_dir: str, last_zxid: int, *,
                 prealloc_bytes: int, force_sync: bool, pool: Any = None,
                 snap_pool: Any = None, fs: FileSystem = LOCAL) -> None:
        self.reactor = reactor
        self.snap_dir = snap_dir
        self.log_dir = log_dir
        self.force_sync = force_sync
        self.fs = fs
        # What a batch writes and syncs is zkpy.storage.opwriter's to decide.
        self.opwriter = OpWriter(snap_dir, log_dir, last_zxid, prealloc_bytes=prealloc_bytes,
                            force_sync=force_sync, fs=fs)
        self.writer = self.opwriter.writer
        # The log writer's sync, timed for fsynctime (the same sync, on the same thread).
        self._plain_sync = self.writer.sync
        self._sync_seconds = 0.0
        self.writer.sync = self._timed_sync  # type: ignore[method-assign]
        self._ops: list[PersistOp | Roll] = []
        self._after: list[Durable] = []
        self._queued: list[tuple[float, int]] = []  # (when, how many txns) per submit
        self._busy = False
        # Batches that finished quietly (see the module's doc): (last zxid, times).
        self._quiet: deque[tuple[int, DiskTimes]] = deque()
        # Held by the log thread while it decides a batch is quiet (nothing
        # submitted behind it) and by the reactor while it adds to or takes
        # the next batch: either the thread sees the new ops and wakes the
        # reactor, or the reactor's submit finds the quiet batch.
        self._lock = threading.Lock()
        self.metrics: Any = None  # the core's ServerMetrics, or None
        self.on_synced: Any = None  # (after sends, last zxid) -> None
        # On the log thread, after a sync: sends what it can of a batch's
        # ``after`` and returns the rest for ``on_synced`` (None: all of it).
        self.send_from_thread: Callable[[list[Durable]], list[Durable]] | None = None
        # One thread writes the log; another writes snapshots (tests pass their own).
        if pool is None:
            pool = LogThread("zkpy-txnlog")
        if snap_pool is None:
            snap_pool = ThreadPool(minthreads=0, maxthreads=1, name="zkpy-snapshot")
            snap_pool.start()
        self.pool = pool
        self.snap_pool = snap_pool
        self.batches = 0

    def submit(self, ops: list[Any], after: list[Durable]) -> None:
        if ops:
            if self.metrics is not None:  # what this submit found waiting ahead of it
                self.metrics.summary["sync_processor_queue_size"].add(len(self._ops))
            self._queued.append((time.monotonic(), len(ops)))
        with self._lock:
            self._ops.extend(ops)
            self._after.extend(after)
        if self._quiet:
            self.drain()  # which hands the next batch over itself
        if not self._busy:
            self._kick()

    def drain(self) -> None:
        """Finish the batches the log thread finished quietly (on the reactor)."""
        quiet = self._quiet
        while quiet:
            last, times = quiet.popleft()
            self._written(last, [], times)

    def _kick(self) -> None:
        self._busy = True
        # With fsync the batch goes to the log thread at once: what the rest of
        # the turn submits shares the next one (group commit as ZooKeeper's
        # SyncRequestProcessor). Taken at the end of the turn instead (callLater(0))
        # the leader's own write started 110-130 us after its PROPOSALs' sends
        # at p50 (on loopback a send runs the receiver's side too), and its own
        # ACK was last in a third of the quorums: its first ACK -> COMMIT hop
        # took 1/0.72 as long (bench.hops, 5 pairs). Handed over just after the
        # step's sends (the driver's order since 5977bf7), that hop is 1.15x
        # (0.79-1.17) and the REQUEST -> PROPOSAL hop 0.75x (0.67-0.75): the
        # whole write 0.97x (0.96-1.00; bench.hops, 3 pairs). Without fsync a
        # write only copies into the page cache: cheaper done here at the end of
        # the turn than the two thread hops.
        if self.force_sync:
            self._hand_over()
        else:
            self.reactor.callLater(0, self._write_here)

    def _hand_over(self) -> None:
        ops, after, times = self._take_batch()
        self.pool.callInThreadWithCallback(self._back_from_thread(times), self._write_and_send,
                                           ops, after, times)

    def _write_and_send(self, ops: list[Any], after: list[Durable], times: DiskTimes
                        ) -> tuple[int, list[Durable], bool]:
        """On the log thread: the batch written and synced, then what may leave
        from here sent (a follower's ACKs); the rest is the reactor's. True
        last if everything did leave from here (a batch that may be quiet)."""
        last = self._write(ops, times)
        send = self.send_from_thread
        if send is not None and after:
            after = send(after)
            return last, after, not after
        return last, after, False

    def _back_from_thread(self, times: DiskTimes) -> Callable[[bool, Any], None]:
        """What the log thread calls with a batch's outcome: the reactor takes it."""
        call = self.reactor.callFromThread

        def back(ok: bool, result: Any) -> None:
            if ok:
                last, after, sent = result
                if sent:
                    with self._lock:
                        if not self._ops and not self._after:
                            self._quiet.append((last, times))
                            return
                call(self._written, last, after, times)
            else:
                call(self._failed, result)
        return back

    def _take_batch(self) -> tuple[list[Any], list[Durable], DiskTimes]:
        """Everything submitted so far, as one batch: its ops, what waits for its
        sync, and its times (when each submit was handed over)."""
        with self._lock:
            ops, self._ops = self._ops, []
            after, self._after = self._after, []
        times = DiskTimes(queued=self._queued)
        self._queued = []
        return ops, after, times

    def _write_here(self) -> None:
        ops, after, times = self._take_batch()
        try:
            last = self._write(ops, times)
        except Exception:
            self._failed(Failure())
            return
        self._written(last, after, times)

    def _write(self, ops: list[Any], times: DiskTimes) -> int:
        times.started = time.monotonic()
        last = self.opwriter.write(ops)
        times.synced = time.monotonic()
        times.written = times.synced - self._sync_seconds  # before the batch's last sync
        return last

    def _timed_sync(self) -> None:
        """The log writer's sync, timed (fsynctime is the batch's last one)."""
        started = time.monotonic()
        self._plain_sync()
        self._sync_seconds = time.monotonic() - started

    def _written(self, last: int, after: list[Durable], times: DiskTimes) -> None:
        self._busy = False
        self.batches += 1
        # What waited for the sync goes first: on a leader it is its own ACK,
        # often the one a commit waits for, and the batch's figures can wait.
        if self.on_synced is not None:
            self.on_synced(after, last)
        if self.metrics is not None and times.queued:
            record_batch(self.metrics, times, self.force_sync)
        stored, self.opwriter.snapshot_seconds = self.opwriter.snapshot_seconds, []
        if self.metrics is not None:
            for seconds in stored:  # a learner's snapshot stored after a SNAP
                self.metrics.summary["snapshottime"].add(_ms(seconds))
        # What was submitted meanwhile goes next, unless on_synced's own steps
        # already handed a batch over: one batch at a time.
        if not self._busy and (self._ops or self._after):
            self._kick()

    def _failed(self, failure: Any) -> None:
        log.critical("Cannot write to %s: %s; stopping the server (a member that cannot "
                     "persist cannot acknowledge anything)", self.log_dir,
                     failure.getErrorMessage())
        self.reactor.stop()

    def close(self) -> None:
        self.pool.stop()
        self.snap_pool.stop()
        self.opwriter.close()


def record_batch(metrics: Any, times: DiskTimes, fsynced: bool) -> None:
    """One synced batch in ZooKeeper's terms: FileTxnLog's fsync time (when it
    fsyncs), SyncRequestProcessor's batch size, flush time and processing time
    (writing the batch, once per batch: zkpy writes a batch in one call), and per
    transaction its queue time and queue-and-flush time (the transactions of one
    submit were handed over together). The queue each submit found ahead of it
    (sync_processor_queue_size) is recorded by ``submit``."""
    s = metrics.summary
    n = sum(count for _, count in times.queued)
    if fsynced:
        fsync_ms = _ms(times.synced - times.written)
        s["fsynctime"].add(fsync_ms)
        if fsync_ms > FSYNC_WARNING_MS:
            metrics.fsync_threshold_exceed_count += 1
    s["sync_processor_batch_size"].add(n)
    s["sync_processor_queue_flush_time_ms"].add(_ms(times.synced - times.started))
    s["sync_process_time"].add(_ms(times.written - times.started))
    queue_time, queue_and_flush = s["sync_processor_queue_time_ms"], s[
        "sync_processor_queue_and_flush_time_ms"]
    for handed, count in times.queued:
        queue_time.extend([_ms(times.started - handed)] * count)
        queue_and_flush.extend([_ms(times.synced - handed)] * count)
    metrics.sync_processor_request_queued += n
