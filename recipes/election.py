"""Leader election on top of :class:`~recipes.locks.FairLock`.

The contender whose znode has the lowest sequence number leads; the
others each watch their predecessor.  A leader can only *know* it leads
while its session is alive and connected, so the election follows the
connection state:

* ``CONNECTED`` -- the leader leads (``is_leader`` True).
* ``SUSPENDED`` -- the connection is down; the session may already have
  expired on the server and another contender may lead.  ``is_leader``
  is False and ``in_doubt`` is set: stop doing leader-only work.  If the
  connection comes back within the session, leadership resumes.
* ``LOST`` -- the session expired; our znode is gone; ``lost`` is set and
  ``is_leader`` stays False.  Campaign again to re-enter the race.

Layout: the lock's (``<path>/_c_<uuid>-__lock__<seq>`` holding the
identifier), so Kazoo's ``Election`` (which is a Kazoo ``Lock``) and this
election elect one leader between them; ``layout="curator"`` uses the
``lock-`` names of Curator's ``InterProcessMutex``, which Curator's
``LeaderSelector`` is built on.
"""

from __future__ import annotations

import threading

from kazoo.client import KazooClient
from kazoo.protocol.states import KazooState

from ._common import CancelledError, join
from .locks import FairLock

__all__ = ["LeaderElection"]


class LeaderElection:
    def __init__(self, client: KazooClient, path: str, identifier: str | bytes = "",
                 layout: str = "kazoo"):
        self.client = client
        self.path = path
        self.lock = FairLock(client, path, identifier, layout=layout)
        #: set while we are leader but disconnected (may have lost leadership)
        self.in_doubt = threading.Event()
        #: set when our session ended while we were leader
        self.lost = threading.Event()
        #: callables ``cb(state)`` with "leader", "in_doubt", "leader" (again
        #: after reconnecting), "lost" or "resigned"
        self.listeners: list = []
        self.lock._tracker.callbacks.append(self._on_state)

    # -- campaigning --------------------------------------------------------------

    def campaign(self, timeout: float | None = None) -> bool:
        """Block until we lead (True) or *timeout* passes (False)."""
        self.in_doubt.clear()
        self.lost.clear()
        ok = self.lock.acquire(timeout=timeout)
        if ok:
            self._notify("leader")
        return ok

    def resign(self) -> None:
        """Give up leadership (from any thread)."""
        if self.lock._owner is not None:
            self.lock.release_all()
            self._notify("resigned")

    def cancel(self) -> None:
        """Stop a pending :meth:`campaign` in another thread."""
        self.lock.cancel()

    def run(self, func, *args, **kwargs):
        """Campaign, call ``func(*args, **kwargs)`` while leader, resign.
        Returns func's result, or None when cancelled."""
        try:
            self.campaign()
        except CancelledError:
            return None
        try:
            return func(*args, **kwargs)
        finally:
            self.resign()

    # -- state ------------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        return self.lock.is_held()

    def contenders(self) -> list[str]:
        """Identifiers of all contenders, the leader first."""
        return self.lock.contenders()

    def leader(self) -> str | None:
        """Identifier of the current leader, or None."""
        for _seq, name, _m in self.lock._sorted(self.client.get_children(self.path)):
            try:
                data, _ = self.client.get(join(self.path, name))
                return data.decode("utf-8", "replace")
            except Exception:
                continue
        return None

    def _on_state(self, state) -> None:
        if self.lock._owner is None:
            return
        if state == KazooState.SUSPENDED:
            if self.lock.is_acquired:
                self.in_doubt.set()
                self._notify("in_doubt")
        elif state == KazooState.LOST:
            self.in_doubt.clear()
            self.lost.set()
            self._notify("lost")
        elif state == KazooState.CONNECTED and self.in_doubt.is_set() and self.lock.is_acquired:
            self.in_doubt.clear()
            self._notify("leader")

    def _notify(self, what: str) -> None:
        for cb in list(self.listeners):
            try:
                cb(what)
            except Exception:  # pragma: no cover
                pass

    def close(self) -> None:
        self.lock.close()
