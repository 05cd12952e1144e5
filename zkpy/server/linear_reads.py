"""Linearizable reads on an ensemble member (``linearizableReads=true``): the core's side.

With the setting on, a read that a leader, follower or observer answers is
linearizable without a client ``sync()``: it is answered only once this member
has applied a *read point* that the leader handed out after the read arrived
and confirmed with a quorum (``zkpy.zab.readindex``). Off (the default), none
of this runs: ``ServerCore.read_gate`` is None and reads are answered from the
tree at once, as ZooKeeper answers them.

``ReadGate`` batches: the reads that arrive during one turn of the event loop
share one request for a read point (``Upstream.read_point``: a ``ReadIndex``
step on the leader, a learner sync with session id 0 on a follower or
observer), asked at the end of the turn (``flush``). A follower or observer
keeps one request out at a time, so one request covers every read that came
while the previous one was out and the leader gets at most one per round
trip from each member; the leader asks at every turn, as asking costs it
nothing but a place in the queue of its next confirmation round, which
batches the requests in turn (``zkpy.zab.readindex``). ``reached`` says the
oldest request out is answered: on a follower, the leader's SYNC came after
the COMMITs (INFORMs) of everything committed when it left, on the same FIFO
connection, so the tree already holds the read point; on the leader the tree
holds everything committed.

Session order, as ZooKeeper keeps it: a read waits in its connection's
``pending`` queue as a ``LinearRead`` behind the session's earlier writes and
reads, and is answered in order once both its read point is reached and
everything before it is answered. A write (or auth, or a sync sent to the
leader) that comes after a read still waiting is not routed until that read is
answered (``defer``): otherwise it could commit, and be applied, before the
read is answered, and the read would see a later write of its own session.
Reads after it join the queue as usual. A client's sync is such a read on
every member (``ServerCore.sync_is_local``): a follower does not forward it,
so the SYNC that answers it cannot be overtaken by the COMMIT of a write the
session sent after it, and the read point gives it what ZooKeeper's sync
promises (everything committed before it is applied here).

Where linearizability is not promised: a standalone server needs nothing
(it alone decides what is committed); read-only mode (``readonlymode.enabled``)
answers the clients that asked for a read-only server from its tree, stale by
design; Apache ZooKeeper members of a mixed ensemble answer their clients as
ZooKeeper does.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import TYPE_CHECKING, Any

from zkpy.jute.protocol import WRITE_OPS, Op
from zkpy.server.modes import Mode

if TYPE_CHECKING:
    from zkpy.server.connection import Connection
    from zkpy.server.core import ServerCore

log = logging.getLogger("zkpy.server")

#: The reads that wait for a read point: everything that reports the tree
#: (and, on the leader, sync, which it answers itself). Watch bookkeeping,
#: whoAmI and pings are answered in session order as before.
LINEAR_OPS = frozenset({
    Op.getData, Op.exists, Op.getChildren, Op.getChildren2, Op.getACL,
    Op.getAllChildrenNumber, Op.getEphemerals, Op.multiRead, Op.sync,
})
_DEFERRED_OPS = WRITE_OPS | {Op.auth, Op.sasl}
_MODES = frozenset({Mode.LEADING, Mode.FOLLOWING, Mode.OBSERVING})


class LinearRead:
    """A read in a connection's ``pending`` queue, waiting for its read point."""

    __slots__ = ("xid", "op", "body", "ready", "arrived")

    def __init__(self, xid: int, op: int, body: Any, arrived: int = 0) -> None:
        self.xid = xid
        self.op = op
        self.body = body
        self.ready = False
        self.arrived = arrived  # (ms: its latency counts from here)


class ReadGate:
    def __init__(self, core: ServerCore) -> None:
        self.core = core
        self.active = False  # the mode is one where reads wait (leader, follower, observer)
        self.leading = False  # ...and we lead: any number of requests may be out
        self.next: list[tuple[Connection, LinearRead]] = []  # not asked for yet
        self.asking: deque[list[tuple[Connection, LinearRead]]] = deque()  # out, oldest first
        self.reads = 0  # reads that waited for a read point
        self.requests = 0  # read points asked for (reads / requests: the batch size)

    def become(self, mode: Mode) -> None:
        """The core's mode changed: whatever waited is dropped (a mode change
        closes every client connection) and reads wait only where it makes sense."""
        self.next = []
        self.asking = deque()
        self.active = mode in _MODES
        self.leading = mode is Mode.LEADING

    # -- the connection's side ---------------------------------------------------------

    def hold(self, conn: Connection, xid: int, op: int, body: Any, arrived: int = 0) -> None:
        """Queue a read behind the connection's pending requests; it is answered
        once its read point (asked at the end of this turn) is reached."""
        read = LinearRead(xid, op, body, arrived)
        conn.pending.append(read)
        conn.unanswered += 1
        self.next.append((conn, read))
        self.reads += 1

    # -- the replica's side ------------------------------------------------------------

    def flush(self) -> None:
        """The end of a turn: ask for a read point for the reads that came in it,
        unless we learn and a request is already out (they go with the next one)."""
        while self.next and (self.leading or not self.asking):
            batch, self.next = self.next, []
            self.asking.append(batch)
            self.requests += 1
            if not self.core.replica.read_point():
                self.asking.remove(batch)
                for conn, _ in batch:
                    conn.abort("the server is not serving (no quorum)")

    def reached(self) -> None:
        """The oldest request's read point is applied: answer its reads, in each
        connection's order."""
        if not self.asking:
            log.warning("A read point arrived with none asked for; ignored")
            return
        batch = self.asking.popleft()
        for conn, read in batch:
            read.ready = True
            conn.read_point_reached(read)


def defer(conn: Connection, frame: bytes, op: int, sync_is_local: bool, now: int = 0) -> bool:
    """Keep ``frame`` for later if a read of its connection still waits and it
    must not overtake it (``Connection.deferred``; replayed when the reads are
    answered). Called only while the connection has reads waiting or frames kept."""
    if not conn.deferred and (op not in _DEFERRED_OPS
                              and not (op == Op.sync and not sync_is_local)):
        return False
    conn.deferred.append((frame, now))  # (when it arrived: its latency counts from there)
    return True
