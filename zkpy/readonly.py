"""Read-only mode of a quorum member (``-Dreadonlymode.enabled=true``), with no I/O.

As in Apache ZooKeeper 3.8's QuorumPeer: a member that has been LOOKING for
max(2000 ms, tickTime) starts a read-only server over its current tree, and
shuts it down as soon as its election decides (it then follows or leads, and
serves again once synced with the leader). ``ReadOnlyServer`` is that server,
laid over the member's ``ServerCore``:

- ``zkpy.replica.Replica`` reports every role change (``role``) and, after
  each step, lets it start once the grace period is over (``poll``); the
  adapter arms a wake-up for ``due()``.
- While it is active, ``core.serving`` is set and ``core.read_only`` is this
  object. The handshake (``zkpy.connection``) refuses clients that did not ask
  for read-only and reconnections of replicated ("global") sessions, and asks
  ``new_session`` for new ones. Those are made here, locally: no txn, an id
  from a fresh id generator, kept in a session table of their own that stands
  in for ``core.sessions`` while the replicated table waits in
  ``replicated``. They expire here when not pinged; replicated sessions are
  not expired at all (this mode never changes replicated state).
- Every write and every sync is answered NOTREADONLY with the last zxid (as
  ReadOnlyRequestProcessor), except the closeSession of one of our sessions,
  which closes it locally and is answered OK.
- When the mode ends, the replicated session table is back and the read-only
  sessions are gone; the caller closes every client connection.

As in ZooKeeper 3.8 (ZOOKEEPER-3863), new sessions need ``localSessionsEnabled``:
without it ZooKeeper's read-only server answers a new session's createSession
with a bare NOTREADONLY reply header where the ConnectResponse belongs, so no
client can get a session there. zkpy sends the same bytes and closes.

It never changes the tree, proposes, persists, or does I/O.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from zkpy.proto import Err, Op
from zkpy.session import SessionTable

if TYPE_CHECKING:
    from zkpy.core import ServerCore
    from zkpy.prep import Request

log = logging.getLogger("zkpy.quorum")

GRACE_MS = 2000  # QuorumPeer: the read-only server waits at least 2 s of LOOKING


def _hex(sid: int) -> str:
    return f"0x{sid & 0xFFFFFFFFFFFFFFFF:x}"


class ReadOnlyServer:
    def __init__(self, core: ServerCore) -> None:
        self.core = core
        self.enabled = core.settings.readonly_mode
        self.grace = max(GRACE_MS, core.settings.tick_time)
        self.looking_since: int | None = None
        self.started_at = 0
        # The replicated session table, set aside while read-only mode is active.
        self.replicated: SessionTable | None = None

    @property
    def active(self) -> bool:
        return self.replicated is not None

    # -- when -------------------------------------------------------------------------

    def role(self, looking: bool, now: int) -> bool:
        """The member's role changed (``looking``: it starts an election). Ends read-only
        mode if it was on; True then, and the caller must close every client connection."""
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
        settings = core.settings
        assert self.looking_since is not None
        self.replicated = core.sessions
        core.sessions = SessionTable(settings.tick_time, settings.server_id, now)
        core.read_only = self
        core.serving = True
        core.forward = self._write
        core.sync = self._refuse
        core.expiring = True  # only our own sessions are in ``core.sessions`` now
        self.started_at = now
        log.info("Read-only server started: no quorum for %d ms; serving read-only clients "
                 "at zxid 0x%x%s", now - self.looking_since, core.last_zxid,
                 "" if settings.local_sessions else
                 " (localSessionsEnabled=false: no new sessions, as ZooKeeper 3.8)")

    def _stop(self, now: int) -> None:
        core = self.core
        assert self.replicated is not None
        dropped = len(core.sessions.sessions)
        core.sessions, self.replicated = self.replicated, None
        core.read_only = None
        log.info("Read-only server stopped after %d ms: the election decided; dropping %d "
                 "read-only sessions", now - self.started_at, dropped)

    # -- sessions -----------------------------------------------------------------------

    def is_replicated(self, sid: int) -> bool:
        """A global session: known to the ensemble, not made by this read-only server."""
        return (self.replicated is not None and sid in self.replicated.sessions
                and sid not in self.core.sessions.sessions)

    def new_session(self, timeout: int, now: int, client: str) -> int | None:
        """A local session for a read-only client; None when new sessions are refused."""
        core = self.core
        if not core.settings.local_sessions:
            log.info("Refusing a new session from read-only client %s: localSessionsEnabled "
                     "is false (ZooKeeper 3.8 answers NOTREADONLY)", client)
            return None
        sid = core.sessions.new_id()
        core.sessions.add(sid, timeout, now)
        return sid

    # -- writes and syncs ----------------------------------------------------------------

    def _write(self, req: Request) -> None:
        """ServerCore's forward seam: nothing is prepared or proposed here."""
        core = self.core
        core.outstanding_writes -= 1  # counted by ServerCore.submit; never proposed
        if req.type == Op.closeSession:
            if req.session_id in core.sessions.sessions:
                core.session_closed(req.session_id)
                if req.conn is not None:
                    req.conn.answer_now(req, 0)
                return
            log.warning("Refusing the closeSession of global session %s in read-only mode",
                        _hex(req.session_id))
        self._refuse(req)

    def _refuse(self, req: Request) -> None:
        if req.conn is not None:
            req.conn.answer_now(req, int(Err.NOTREADONLY))
