"""Local sessions (localSessionsEnabled): sessions that live on one server alone.

A local session is created, closed and expired where it was opened, with no
proposal; it is kept out of snapshots and out of the leader's PING reports.
Its first ephemeral makes it global (localSessionsUpgradingEnabled: a
createSession goes through the write pipeline ahead of the create), or is
refused with EPHEMERALONLOCALSESSION. Read-only mode makes every new session a
local one. When the server stops serving its local sessions are gone, as
ZooKeeper's LocalSessionTracker does not outlive its ZooKeeperServer.

``LocalSessions`` belongs to one ``ServerCore``; sessions themselves stay in
its ``SessionTable`` (with ``local`` set). No I/O.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Final

from zkpy.jute.protocol import CreateMode, Err, Op
from zkpy.server.prep import MALFORMED, Request
from zkpy.server.sessions import Session, hex_sid

if TYPE_CHECKING:
    from zkpy.server.connection import Connection
    from zkpy.server.core import ServerCore

log = logging.getLogger("zkpy.server")

#: The ops a local session's connection must look at before routing them.
CHECKED_OPS: Final = frozenset({Op.closeSession, Op.create, Op.create2, Op.multi})


class LocalSessions:
    def __init__(self, core: ServerCore) -> None:
        self.core = core

    def open(self, timeout: int, now: int) -> int:
        sessions = self.core.sessions
        sid = sessions.new_id()
        sessions.add(sid, timeout, now).local = True
        return sid

    def for_read_only(self, timeout: int, now: int, client: str) -> int | None:
        """A new session in read-only mode: a local one (as ZooKeeper's read-only
        server makes them); None when new sessions are refused (ZooKeeper 3.8
        without localSessionsEnabled, ZOOKEEPER-3863)."""
        if not self.core.settings.local_sessions:
            log.info("Refusing a new session from read-only client %s: localSessionsEnabled "
                     "is false (ZooKeeper 3.8 answers NOTREADONLY)", client)
            return None
        return self.open(timeout, now)

    def close(self, sid: int, why: str) -> None:
        """A local session ends here alone (it owns no ephemerals: creating one
        would have made it global)."""
        session = self.core.sessions.remove(sid)
        if session is None:
            return
        log.info("Local session %s %s", hex_sid(sid), why)
        conn = session.conn
        if conn is not None and conn.session_id == sid:
            conn.close_after_flush()

    def drop_all(self) -> int:
        """Forget every local session (the server stopped serving)."""
        sessions = self.core.sessions
        ids = sessions.local_ids()
        for sid in ids:
            sessions.remove(sid)
        return len(ids)

    def upgrade(self, sid: int, now: int) -> bool:
        """Make a local session global before its first ephemeral (ZooKeeper's
        session upgrade): a createSession goes through the pipeline first."""
        session = self.core.sessions.get(sid)
        if session is None or not session.local:
            return False
        log.info("Upgrading local session %s to a global session", hex_sid(sid))
        session.local = False  # from now on the leader tracks it (once its commit lands)
        req = Request(sid, 0, Op.createSession, session.timeout, [], None)
        req.created = now
        self.core.submit(req, now)
        return True

    def request(self, conn: Connection, session: Session, xid: int, op: int, body: Any,
                now: int) -> bool:
        """A local session's close or first ephemeral; True when answered here."""
        core = self.core
        if op == Op.closeSession:
            conn.reply_in_order(xid, 0, b"", now)
            self.close(session.id, "closed by its client")
            return True
        if not _creates_ephemeral(op, body) or core.read_only:
            return False  # (read-only mode answers it NOTREADONLY, upgrading nothing)
        if core.settings.local_sessions_upgrading:
            self.upgrade(session.id, now)  # ahead of this request, in order
            return False
        conn.reply_in_order(xid, Err.EPHEMERALONLOCALSESSION, b"", now)
        return True


def _creates_ephemeral(op: int, body: Any) -> bool:
    if op == Op.multi:
        return isinstance(body, list) and any(
            t in (Op.create, Op.create2) and rec.flags in CreateMode.EPHEMERAL_FLAGS
            for t, rec in body)
    return body is not MALFORMED and body.flags in CreateMode.EPHEMERAL_FLAGS
