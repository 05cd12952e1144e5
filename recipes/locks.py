"""Distributed locks.

* :class:`NaiveLock` -- one ephemeral znode; whoever creates it holds the
  lock, everybody else watches it.  Every release wakes every waiter (the
  herd effect).  Kept to show and measure that (``python -m recipes.herd``).
* :class:`FairLock` -- sequential ephemeral znodes under the lock path;
  the lowest sequence number holds the lock and each waiter watches only
  the contender just before it, so a release wakes exactly one waiter.
  First come, first served.
* :class:`ReadWriteLock` -- ``.read_lock`` and ``.write_lock``: readers
  wait only for earlier writers, writers for every earlier contender.

All locks are re-entrant for the thread that holds them, serialise the
threads of one process that share a lock object, take a ``timeout``,
can be cancelled from another thread, and notice the end of the session:
a holder whose session is lost stops being the holder (``is_acquired``
turns False, ``lost`` is set, ``on_lost`` callbacks run); a waiter whose
session is lost gets :class:`~recipes.SessionLostError`.

Znode layouts (see the README for who else uses them):

* FairLock, ``layout="kazoo"`` (default):
  ``<path>/_c_<uuid>-__lock__<seq>`` -- Kazoo's ``Lock`` recognises the
  ``__lock__<seq>`` tail, so Kazoo locks and these locks exclude each other.
* FairLock, ``layout="curator"``: ``<path>/_c_<uuid>-lock-<seq>``, the
  names Curator's ``InterProcessMutex`` creates.
* ReadWriteLock: ``<path>/_c_<uuid>-__rlock__<seq>`` (readers) and
  ``<path>/_c_<uuid>-__lock__<seq>`` (writers), as Kazoo's ``ReadLock`` /
  ``WriteLock``.
* NaiveLock: the ephemeral znode ``<path>`` itself.
"""

from __future__ import annotations

import re
import threading
import uuid

from kazoo.client import KazooClient
from kazoo.exceptions import OperationTimeoutError, SessionExpiredError
from kazoo.protocol.states import KazooState

from ._common import (
    RETRYABLE,
    CancelledError,
    Deadline,
    SessionLostError,
    SessionTracker,
    create_ephemeral_owned,
    create_protected,
    delete_by_prefix,
    delete_quietly,
    join,
    new_protected_prefix,
    wait_connected,
)

__all__ = ["NaiveLock", "FairLock", "ReadWriteLock", "ReadLock", "WriteLock", "LAYOUTS"]

#: lock-node markers per layout
LAYOUTS = {"kazoo": "__lock__", "curator": "lock-"}


class _BaseLock:
    """Re-entrancy, thread serialisation, session tracking, cancellation,
    notification counting.  Subclasses implement ``_zk_acquire`` and
    ``_zk_release``."""

    def __init__(self, client: KazooClient, path: str, identifier: str | bytes = ""):
        self.client = client
        self.path = path.rstrip("/") or "/"
        self.identifier = identifier.decode() if isinstance(identifier, bytes) else str(identifier)
        self.data = self.identifier.encode("utf-8")
        self.node: str | None = None
        self.is_acquired = False
        #: set when the session ended while the lock was held
        self.lost = threading.Event()
        #: callables run (on Kazoo's callback thread) when a held lock is lost
        self.on_lost: list = []
        #: watch notifications this lock object has received
        self.notifications = 0
        #: True while parked waiting for a watch to fire
        self.waiting = False
        self._count_lock = threading.Lock()
        self._local = threading.Lock()
        self._owner: int | None = None
        self._depth = 0
        self._cancelled = False
        self._wake = threading.Event()
        self._session_id: int | None = None
        self._tracker = SessionTracker(client)
        self._tracker.add_wake(self._wake)
        self._tracker.callbacks.append(self._on_state)

    # -- public API ----------------------------------------------------------

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Acquire the lock; True on success, False on timeout (or when
        ``blocking=False`` and it is taken).  Re-entrant for the holding
        thread.  Raises :class:`CancelledError` after :meth:`cancel` and
        :class:`SessionLostError` if the session ends while waiting."""
        me = threading.get_ident()
        if self._owner == me:
            if not self.is_acquired:
                raise SessionLostError("the lock on %s was lost; release() it first" % self.path)
            self._depth += 1
            return True
        deadline = Deadline(timeout if blocking else 0)
        remaining = deadline.remaining()
        if blocking:
            got_local = self._local.acquire(True, -1 if remaining is None else remaining)
        else:
            got_local = self._local.acquire(False)
        if not got_local:
            return False
        try:
            self._cancelled = False
            self.lost.clear()
            ok = self._zk_acquire(deadline)
        except BaseException:
            self._local.release()
            raise
        if not ok:
            self._local.release()
            return False
        self._owner = me
        self._depth = 1
        return True

    def release(self) -> None:
        """Release one level of re-entrancy; the znode goes on the last."""
        if self._owner != threading.get_ident():
            raise RuntimeError("release() by a thread that does not hold the lock")
        self._depth -= 1
        if self._depth:
            return
        self._owner = None
        try:
            self._zk_release()
        finally:
            self.is_acquired = False
            self._local.release()

    def release_all(self) -> None:
        """Release completely, whatever the depth, from any thread (for
        owners that are not threads, e.g. :class:`~recipes.LeaderElection`)."""
        if self._owner is None:
            return
        self._depth = 0
        self._owner = None
        try:
            self._zk_release()
        finally:
            self.is_acquired = False
            self._local.release()

    def cancel(self) -> None:
        """Make a pending :meth:`acquire` (in another thread) give up and
        raise :class:`CancelledError`."""
        self._cancelled = True
        self._wake.set()

    def is_held(self) -> bool:
        """True only while we hold the lock *and* are connected.  While the
        connection is down (SUSPENDED) the session may already have expired
        on the server, so a careful holder stops acting on the lock."""
        return self.is_acquired and not self._tracker.suspended and not self.lost.is_set()

    def close(self) -> None:
        """Stop following the client's state (release first)."""
        self._tracker.remove_wake(self._wake)
        self._tracker.close()

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()

    # -- internals -------------------------------------------------------------

    def _watch(self, event) -> None:
        with self._count_lock:
            self.notifications += 1
        self._wake.set()

    def _on_state(self, state) -> None:
        if state == KazooState.LOST and self.is_acquired:
            self.is_acquired = False
            self.lost.set()
            for cb in list(self.on_lost):
                try:
                    cb(self)
                except Exception:  # pragma: no cover - user code
                    pass

    def _check(self) -> None:
        if self._cancelled:
            raise CancelledError("lock acquisition cancelled")
        if self._tracker.lost.is_set() or self._tracker.session_id() != self._session_id:
            raise SessionLostError("session ended while waiting for %s" % self.path)

    def _recheck_after_acquire(self) -> None:
        # A LOST delivered between our last read and setting is_acquired
        # would not have been seen by _on_state: look again.
        if self._tracker.lost.is_set() or self._tracker.session_id() != self._session_id:
            self.is_acquired = False
            raise SessionLostError("session ended while acquiring %s" % self.path)

    def _park(self, deadline: Deadline) -> None:
        self.waiting = True
        try:
            self._wake.wait(deadline.remaining())
        finally:
            self.waiting = False

    def _zk_acquire(self, deadline: Deadline) -> bool:  # pragma: no cover
        raise NotImplementedError

    def _zk_release(self) -> None:  # pragma: no cover
        raise NotImplementedError


class NaiveLock(_BaseLock):
    """The ephemeral-znode lock with the herd effect.

    ``acquire``: try to create the ephemeral znode *path*; if it exists,
    watch it and try again when it is deleted.  Every waiter watches the
    same znode, so every release notifies all of them and all but one go
    back to sleep.  Not fair.  Use :class:`FairLock`.
    """

    def _zk_acquire(self, deadline: Deadline) -> bool:
        self._session_id = self._tracker.mark()
        token = uuid.uuid4().hex.encode() + b":" + self.data
        self._token = token
        while True:
            self._wake.clear()
            self._check()
            try:
                if create_ephemeral_owned(self.client, self.path, token, deadline=deadline):
                    self.node = self.path
                    self.is_acquired = True
                    self._recheck_after_acquire()
                    return True
                if deadline.expired:
                    return False
                stat = self.client.exists(self.path, watch=self._watch)
            except RETRYABLE:
                if not wait_connected(self.client, deadline):
                    return False
                continue
            except SessionExpiredError:
                raise SessionLostError("session expired while waiting for %s" % self.path) from None
            except OperationTimeoutError:
                return False
            if stat is None:
                continue
            self._park(deadline)
            if deadline.expired and not self._wake.is_set():
                return False

    def _zk_release(self) -> None:
        # The path is shared: delete it only if it is still our znode (our
        # data, our session), guarded by its version.
        if self.node is not None and self.is_acquired:
            deadline = Deadline(30)
            while True:
                try:
                    data, stat = self.client.get(self.node)
                    if data == self._token and stat.ephemeralOwner == self._session_id:
                        delete_quietly(self.client, self.node, version=stat.version,
                                       deadline=deadline)
                    break
                except RETRYABLE:
                    if not wait_connected(self.client, deadline):
                        break
                except Exception:  # NoNode, session expired: nothing of ours left
                    break
        self.node = None


_SEQ_TAIL = r"(-?\d{10})$"


class FairLock(_BaseLock):
    """The herd-free lock of the ZooKeeper paper.

    ``acquire`` creates a sequential ephemeral znode under *path*; if it
    has the lowest sequence number among the contenders, we hold the lock.
    Otherwise we watch only the contender just below us; when it goes away
    (released, gave up, or its session died) we look again -- we do *not*
    assume we hold the lock, because the predecessor may have been a
    waiter that left.

    :param layout: ``"kazoo"`` (default) or ``"curator"``, see module doc.
    :param identifier: stored in our znode; :meth:`contenders` lists them.
    """

    #: marker in our own node name
    marker = "__lock__"
    #: markers of contenders that block us when they are earlier
    blocking_markers: tuple[str, ...] = ("__lock__",)
    #: every marker that makes a child a contender
    contender_markers: tuple[str, ...] = ("__lock__",)

    def __init__(self, client: KazooClient, path: str, identifier: str | bytes = "",
                 layout: str = "kazoo"):
        super().__init__(client, path, identifier)
        if type(self) is FairLock:
            try:
                marker = LAYOUTS[layout]
            except KeyError:
                raise ValueError("layout must be one of %s" % sorted(LAYOUTS)) from None
            self.marker = marker
            self.blocking_markers = (marker,)
            self.contender_markers = (marker,)
        self.layout = layout
        self._re = re.compile(
            "(%s)%s" % ("|".join(re.escape(m) for m in self.contender_markers), _SEQ_TAIL)
        )

    # contender bookkeeping ------------------------------------------------------

    def _parse(self, name: str):
        m = self._re.search(name)
        return (int(m.group(2)), m.group(1)) if m else None

    def _sorted(self, children):
        parsed = []
        for c in children:
            p = self._parse(c)
            if p is not None:
                parsed.append((p[0], c, p[1]))
        parsed.sort()
        return parsed

    def _predecessor(self, mine: str, children) -> str | None:
        my_seq = self._parse(mine)[0]
        best = None
        for seq, name, marker in self._sorted(children):
            if seq >= my_seq:
                break
            if marker in self.blocking_markers:
                best = name
        return best

    def contenders(self) -> list[str]:
        """Identifiers of all contenders (any marker), holder first."""
        out = []
        for _seq, name, _m in self._sorted(self.client.get_children(self.path)):
            try:
                data, _ = self.client.get(join(self.path, name))
            except Exception:
                continue
            out.append(data.decode("utf-8", "replace"))
        return out

    # acquire / release ------------------------------------------------------------

    def _zk_acquire(self, deadline: Deadline) -> bool:
        self._session_id = self._tracker.mark()
        prefix = new_protected_prefix()
        try:
            self.node = create_protected(
                self.client, self.path, self.marker, self.data,
                ephemeral=True, sequence=True, deadline=deadline,
                tracker=self._tracker, prefix=prefix,
            )
        except OperationTimeoutError:
            delete_by_prefix(self.client, self.path, prefix)
            return False
        mine = self.node.rsplit("/", 1)[1]
        try:
            while True:
                self._wake.clear()
                self._check()
                try:
                    children = self.client.get_children(self.path)
                    if mine not in children:
                        raise SessionLostError("our lock node %s is gone" % self.node)
                    pred = self._predecessor(mine, children)
                    if pred is None:
                        self.is_acquired = True
                        self._recheck_after_acquire()
                        return True
                    if deadline.expired:
                        self._give_up()
                        return False
                    stat = self.client.exists(join(self.path, pred), watch=self._watch)
                except RETRYABLE:
                    if not wait_connected(self.client, deadline):
                        self._give_up()
                        return False
                    continue
                except SessionExpiredError:
                    raise SessionLostError("session expired while waiting for %s" % self.path) from None
                if stat is None:
                    continue  # predecessor left between the two reads
                self._park(deadline)
        except BaseException:
            self._give_up()
            raise

    def _give_up(self) -> None:
        if self.node is not None:
            delete_quietly(self.client, self.node)
        self.node = None

    def _zk_release(self) -> None:
        self._give_up()


class ReadLock(FairLock):
    """Shared side of :class:`ReadWriteLock`: waits for earlier writers."""

    marker = "__rlock__"
    blocking_markers = ("__lock__",)
    contender_markers = ("__lock__", "__rlock__")


class WriteLock(FairLock):
    """Exclusive side of :class:`ReadWriteLock`: waits for everyone earlier."""

    marker = "__lock__"
    blocking_markers = ("__lock__", "__rlock__")
    contender_markers = ("__lock__", "__rlock__")


class ReadWriteLock:
    """A read/write lock on *path* (Kazoo's ReadLock/WriteLock layout).

    ``rw.read_lock`` and ``rw.write_lock`` are independent lock objects
    sharing the path; use each like :class:`FairLock`.  A reader waits for
    the last writer queued before it (readers ahead of it don't matter); a
    writer waits for the contender just before it, reader or writer.
    """

    def __init__(self, client: KazooClient, path: str, identifier: str | bytes = ""):
        self.read_lock = ReadLock(client, path, identifier)
        self.write_lock = WriteLock(client, path, identifier)

    def close(self) -> None:
        self.read_lock.close()
        self.write_lock.close()
