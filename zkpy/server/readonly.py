"""Read-only mode of a quorum member (``-Dreadonlymode.enabled=true``), with no I/O.

As in Apache ZooKeeper 3.8's QuorumPeer: a member that has been LOOKING for
max(2000 ms, tickTime) starts a read-only server over its current tree, and
shuts it down as soon as its election decides (it then follows or leads, and
serves again once synced with the leader). ``ReadOnlyServer`` is that server,
laid over the member's ``ServerCore``:

- ``zkpy.server.replica.Replica`` reports every role change (``role``) and, after
  each step, lets it start once the grace period is over (``poll``); the
  adapter arms a wake-up for ``due()``.
- While it is active, ``core.serving`` is set and ``core.read_only`` is this
  object. The handshake (``zkpy.server.connection``) refuses clients that did not ask
  for read-only and reconnections of global sessions, and asks
  ``new_session`` for new ones: local sessions (``ServerCore``'s, no txn), as
  ZooKeeper's read-only server makes them. They expire here when not pinged
  and their closeSession is answered here; global sessions are not expired at
  all (this mode never changes replicated state, as the leader alone expires).
- Every write and every sync is answered NOTREADONLY with the last zxid (as
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

from zkpy.jute.protocol import Err, Op

if TYPE_CHECKING:
    from zkpy.server.core import ServerCore
    from zkpy.server.prep import Request

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
        core.read_only = self
        core.serving = True
        core.forward = self._write
        core.sync = self._refuse
        core.expiring = False  # local sessions expire in ServerCore.tick all the same
        log.info("Read-only server started: no quorum for %d ms; serving read-only clients "
                 "at zxid 0x%x%s", now - self.looking_since, core.last_zxid,
                 "" if core.settings.local_sessions else
                 " (localSessionsEnabled=false: no new sessions, as ZooKeeper 3.8)")

    def _stop(self, now: int) -> None:
        self.active = False
        self.core.read_only = None
        log.info("Read-only server stopped after %d ms: the election decided",
                 now - self.started_at)

    # -- sessions -----------------------------------------------------------------------

    def is_global(self, sid: int) -> bool:
        """A session known to the ensemble, which may not reconnect in read-only mode."""
        session = self.core.sessions.get(sid)
        return session is not None and not session.local

    def new_session(self, timeout: int, now: int, client: str) -> int | None:
        """A local session for a read-only client; None when new sessions are refused."""
        core = self.core
        if not core.settings.local_sessions:
            log.info("Refusing a new session from read-only client %s: localSessionsEnabled "
                     "is false (ZooKeeper 3.8 answers NOTREADONLY)", client)
            return None
        return core.open_local_session(timeout, now)

    # -- writes and syncs ----------------------------------------------------------------

    def _write(self, req: Request) -> None:
        """ServerCore's forward seam: nothing is prepared or proposed here. (A local
        session's closeSession never comes here: the connection answers it.)"""
        self.core.outstanding_writes -= 1  # counted by ServerCore.submit; never proposed
        if req.type == Op.closeSession:
            log.warning("Refusing the closeSession of global session 0x%x in read-only mode",
                        req.session_id & 0xFFFFFFFFFFFFFFFF)
        self._refuse(req)

    def _refuse(self, req: Request) -> None:
        if req.conn is not None:
            req.conn.answer_now(req, int(Err.NOTREADONLY))
