"""Barriers.

* :class:`Barrier` -- a single znode ``<path>``: while it exists,
  :meth:`Barrier.wait` blocks; :meth:`Barrier.remove` lets everybody
  through.  Same layout as Kazoo's ``Barrier`` and Curator's
  ``DistributedBarrier``.
* :class:`DoubleBarrier` -- *n* participants: :meth:`DoubleBarrier.enter`
  returns once *n* have arrived, :meth:`DoubleBarrier.leave` once all of
  them have left.  Layout ``<path>/<member>`` (ephemeral, member names
  compared as strings) plus ``<path>/ready``, as Kazoo's ``DoubleBarrier``
  and Curator's ``DistributedDoubleBarrier``.
"""

from __future__ import annotations

import threading
import uuid

from kazoo.client import KazooClient
from kazoo.exceptions import NodeExistsError, NoNodeError, SessionExpiredError
from kazoo.protocol.states import EventType

from ._common import (
    RETRYABLE,
    Deadline,
    SessionLostError,
    SessionTracker,
    create_ephemeral_owned,
    delete_quietly,
    join,
    wait_connected,
)

__all__ = ["Barrier", "DoubleBarrier"]


class Barrier:
    """Hold processes at a barrier until it is removed."""

    def __init__(self, client: KazooClient, path: str):
        self.client = client
        self.path = path

    def create(self) -> None:
        """Put the barrier up (no-op if it is already up)."""
        self.client.ensure_path(self.path)

    def remove(self) -> bool:
        """Take the barrier down; False if it was not up."""
        try:
            self.client.retry(self.client.delete, self.path)
            return True
        except NoNodeError:
            return False

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the barrier is down; False on timeout."""
        deadline = Deadline(timeout)
        ev = threading.Event()

        def watch(event):
            ev.set()

        while True:
            ev.clear()
            try:
                if self.client.exists(self.path, watch=watch) is None:
                    return True
            except RETRYABLE:
                if not wait_connected(self.client, deadline):
                    return False
                continue
            if not ev.wait(deadline.remaining()):
                return False


class DoubleBarrier:
    """Enter together, leave together.

    :param num_clients: how many participants make the barrier open.
    :param identifier: data stored in our member znode.
    """

    READY = "ready"

    def __init__(self, client: KazooClient, path: str, num_clients: int,
                 identifier: str | bytes = ""):
        self.client = client
        self.path = path.rstrip("/")
        self.num_clients = num_clients
        ident = identifier.decode() if isinstance(identifier, bytes) else str(identifier)
        self.data = ident.encode("utf-8")
        self.name = uuid.uuid4().hex
        self.node = join(self.path, self.name)
        self.participating = False
        self._tracker = SessionTracker(client)
        self._wake = threading.Event()
        self._tracker.add_wake(self._wake)

    def _check_session(self, session_id):
        if self._tracker.lost.is_set() or self._tracker.session_id() != session_id:
            raise SessionLostError("session ended at double barrier %s" % self.path)

    def enter(self, timeout: float | None = None) -> bool:
        """Create our member node and wait until *num_clients* are in.
        False (and our node removed) on timeout."""
        deadline = Deadline(timeout)
        session_id = self._tracker.mark()
        ready_path = join(self.path, self.READY)
        ready_seen = threading.Event()

        def watch(event):
            if event.type == EventType.CREATED:
                ready_seen.set()
            self._wake.set()

        try:
            self.client.retry(self.client.ensure_path, self.path)
            if not create_ephemeral_owned(self.client, self.node, self.data, deadline=deadline):
                raise RuntimeError("member node %s belongs to someone else" % self.node)
            self.participating = True
            while True:
                self._wake.clear()
                self._check_session(session_id)
                if ready_seen.is_set():
                    return True
                try:
                    if self.client.exists(ready_path, watch=watch) is not None:
                        return True
                    members = [c for c in self.client.get_children(self.path) if c != self.READY]
                    if len(members) >= self.num_clients:
                        try:
                            self.client.create(ready_path)
                        except NodeExistsError:
                            pass
                        return True
                except RETRYABLE:
                    if not wait_connected(self.client, deadline):
                        raise TimeoutError from None
                    continue
                except SessionExpiredError:
                    raise SessionLostError("session expired entering %s" % self.path) from None
                if not self._wake.wait(deadline.remaining()) and deadline.expired:
                    raise TimeoutError
        except TimeoutError:
            delete_quietly(self.client, self.node)
            self.participating = False
            return False
        except BaseException:
            delete_quietly(self.client, self.node)
            self.participating = False
            raise

    def leave(self, timeout: float | None = None) -> bool:
        """Leave and wait until every participant has left (the ZooKeeper
        recipe: the lowest member waits for the highest; everyone else
        deletes its node and waits for the lowest).  False on timeout."""
        deadline = Deadline(timeout)

        def watch(event):
            self._wake.set()

        # Kazoo's DoubleBarrier also takes "ready" down when leaving, so the
        # path can be used for the next round.
        delete_quietly(self.client, join(self.path, self.READY), deadline=deadline)
        while True:
            self._wake.clear()
            try:
                try:
                    children = self.client.get_children(self.path)
                except NoNodeError:
                    break
                members = sorted(c for c in children if c != self.READY)
                if not members:
                    break
                if members == [self.name]:
                    delete_quietly(self.client, self.node, deadline=deadline)
                    break
                if members[0] == self.name:
                    target = members[-1]
                else:
                    if self.name in members:
                        delete_quietly(self.client, self.node, deadline=deadline)
                    target = members[0]
                if self.client.exists(join(self.path, target), watch=watch) is None:
                    continue
            except RETRYABLE:
                if not wait_connected(self.client, deadline):
                    return False
                continue
            except SessionExpiredError:
                # our member node is gone with the session; keep waiting for
                # the others on the new session
                wait_connected(self.client, deadline)
                continue
            if not self._wake.wait(deadline.remaining()) and deadline.expired:
                return False
        self.participating = False
        return True

    def close(self) -> None:
        self._tracker.remove_wake(self._wake)
        self._tracker.close()
