"""Read-only mode of a quorum member (``-Dreadonlymode.enabled=true``), with no I/O.

As in Apache ZooKeeper 3.8's QuorumPeer: a member that has been LOOKING for
max(2000 ms, tickTime) starts a read-only server over its current tree, and
shuts it down as soon as its election decides (it then follows or leads, and
serves again once synced with the leader). ``ReadOnlyServer`` is that server,
laid over the member's ``ServerCore``:

- ``zkpy.server.replica.Replica`` reports every role change (``role``) and, after
  each step, lets it start once the grace period is over (``poll``); the
  adapter arms a wake-up for ``due()``.
- While it is active the core is in ``Mode.READ_ONLY`` (``zkpy.server.modes``):
  the handshake (``zkpy.server.connection``) refuses clients that did not ask
  for read-only and reconnections of global sessions; new sessions are local
  sessions (``ServerCore.read_only_session``, no txn), as ZooKeeper's
  read-only server makes them. They expire here when not pinged and their
  closeSession is answered here; global sessions are not expired at all (this
  mode never changes replicated state, as the leader alone expires). Every
  write and every sync is answered NOTREADONLY with the last zxid (as
  ReadOnlyRequestProcessor, ahead of any session upgrade or ephemeral check).
- When the mode ends the caller stands down: every client connection is
  closed and the local sessions are dropped.

As in ZooKeeper 3.8 (ZOOKEEPER-3863), new sessions need localSessionsEnabled:
without it ZooKeeper's read-only server answers a new session's createSession
with a bare NOTREADONLY reply header where the ConnectResponse belongs, so no
client can get a session there. zkpy sends the same bytes and closes.

It never changes the tree, proposes, persists, or does I/O.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from zkpy.server.modes import Mode

if TYPE_CHECKING:
    from zkpy.server.core import ServerCore

log = logging.getLogger("zkpy.quorum")

GRACE_MS = 2000  # QuorumPeer: the read-only server waits at least 2 s of LOOKING


class ReadOnlyServer:
    def __init__(self, core: ServerCore) -> None:
        self.core = core
        self.enabled = core.settings.readonly_mode
        self.grace = max(GRACE_MS, core.settings.tick_time)
        self.looking_since: int | None = None
        self.started_at = 0
        self.active = False

    # -- when -------------------------------------------------------------------------

    def role(self, looking: bool, now: int) -> bool:
        """The member's role changed (``looking``: it starts an election). Ends read-only
        mode if it was on; True then, and the caller must stand down (close every client
        connection, drop the local sessions)."""
        ended = self.active
        if ended:
            self._stop(now)
        self.looking_since = now if looking and self.enabled else None
        return ended

    def due(self) -> int | None:
        """When read-only mode starts if the election has not decided by then."""
        if self.looking_since is None or self.active:
            return None
        return self.looking_since + self.grace

    def poll(self, now: int) -> None:
        due = self.due()
        if due is not None and now >= due:
            self._start(now)

    def _start(self, now: int) -> None:
        core = self.core
        assert self.looking_since is not None
        self.active = True
        self.started_at = now
        core.become(Mode.READ_ONLY, "no quorum")
        log.info("Read-only server started: no quorum for %d ms; serving read-only clients "
                 "at zxid 0x%x%s", now - self.looking_since, core.last_zxid,
                 "" if core.settings.local_sessions else
                 " (localSessionsEnabled=false: no new sessions, as ZooKeeper 3.8)")

    def _stop(self, now: int) -> None:
        self.active = False
        log.info("Read-only server stopped after %d ms: the election decided",
                 now - self.started_at)
