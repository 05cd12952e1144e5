"""Admission: what a client's ConnectRequest gets (ZooKeeperServer.processConnectRequest).

``handshake(core, conn, frame, now)`` decides, in ZooKeeper's order:

1. a server that is not serving (a member electing or syncing) turns the
   client away, so it tries another server;
2. a read-only server refuses clients that did not ask for read-only mode;
3. a client that has seen a newer zxid than ours must try another server;
4. the session timeout is clamped to [minSessionTimeout, maxSessionTimeout];
5. a new session is local in read-only mode (or refused without
   localSessionsEnabled, as ZooKeeper 3.8), local with
   localSessionsEnabled, and otherwise global: a createSession goes through
   the write pipeline and the connection waits for its commit;
6. a reconnecting session: refused for a global session in read-only mode,
   answered with an empty ConnectResponse (then closed) when it is unknown,
   closing or its password is wrong; a learner then asks its leader about a
   global session (REVALIDATE, ``revalidated`` brings the answer); otherwise
   it moves to this connection (closing the one it had) with a fresh timeout.

It only decides; the connection (``zkpy.server.connection``) keeps the bytes
and the order, the core keeps the sessions.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from zkpy.jute.codec import JuteError
from zkpy.jute.protocol import Err, Op
from zkpy.jute.requests import REPLY_FRAME, decode_connect
from zkpy.server.prep import Request
from zkpy.server.sessions import Session, hex_sid, session_password

if TYPE_CHECKING:
    from zkpy.server.connection import Connection
    from zkpy.server.core import ServerCore

log = logging.getLogger("zkpy.server")



def handshake(core: ServerCore, conn: Connection, frame: bytes, now: int) -> None:
    try:
        req, conn.old_client = decode_connect(frame)
    except JuteError as e:
        conn.abort(f"malformed ConnectRequest: {e}")
        return
    settings = core.settings
    if not core.serving:
        # As a quorum member's ServerCnxn while its ZooKeeperServer is not
        # running (electing, syncing): the client tries another server.
        core.metrics.cnxn_closed_without_zk_server_running += 1
        conn.abort("ZooKeeperServer not running")
        return
    m = core.metrics
    m.connection_request_count += 1
    # ZooKeeper's connection throttle's token deficit: zkpy throttles no connections.
    m.summary["connection_token_deficit"].add(0)
    read_only = core.read_only
    if read_only and not req.readOnly:
        # ReadOnlyZooKeeperServer: only clients that allow read-only mode (old clients,
        # without the flag, included) are refused.
        log.info("Refusing session request for not-read-only client %s:%d", conn.host,
                 conn.port)
        conn.abort("not a read-only client", quiet=True)
        return
    if req.lastZxidSeen > core.last_zxid:
        conn.abort(f"Refusing session request for client as it has seen zxid "
                   f"0x{req.lastZxidSeen:x} our last zxid is 0x{core.last_zxid:x} "
                   f"client must try another server")
        return
    timeout = min(max(req.timeOut, settings.min_session_timeout),
                  settings.max_session_timeout)
    conn.timeout = timeout
    if req.sessionId == 0:
        _new_session(core, conn, timeout, now)
    else:
        _reconnect(core, conn, req.sessionId, req.passwd, timeout, now)


def _new_session(core: ServerCore, conn: Connection, timeout: int, now: int) -> None:
    local = core.local_sessions
    if core.read_only:
        sid = local.for_read_only(timeout, now, f"{conn.host}:{conn.port}")
        if sid is None:
            # ZooKeeper 3.8's answer to the createSession: a bare reply header.
            conn.queue(REPLY_FRAME.pack(16, 0, core.last_zxid, int(Err.NOTREADONLY)))
            conn.close_after_flush()
            return
        conn.open(sid, timeout)
        log.info("Established local session %s with negotiated timeout %dms for read-only "
                 "client %s:%d", hex_sid(sid), timeout, conn.host, conn.port)
        return
    if core.settings.local_sessions:
        # localSessionsEnabled: the session lives here alone, no proposal.
        sid = local.open(timeout, now)
        conn.open(sid, timeout)
        log.info("Established local session %s with negotiated timeout %dms for client "
                 "%s:%d", hex_sid(sid), timeout, conn.host, conn.port)
        return
    create = Request(core.sessions.new_id(), 0, Op.createSession, timeout, [], conn)
    create.created = now
    conn.await_session(create)
    core.submit(create, now)


def _reconnect(core: ServerCore, conn: Connection, sid: int, passwd: bytes | None,
               timeout: int, now: int) -> None:
    # (A null password, jute's -1 length, matches no session's: checkPasswd's
    # Arrays.equals is false for it.)
    if core.read_only and core.sessions.is_global(sid):
        log.info("Refusing global session reconnection in RO mode %s:%d", conn.host, conn.port)
        conn.abort("a global session in read-only mode", quiet=True)
        return
    core.metrics.connection_revalidate_count += 1  # (valid or not, as processConnectRequest)
    session = core.sessions.get(sid)
    if session is None or session.closing or passwd != session_password(sid):
        log.info("Invalid session %s for client %s:%d, probably expired", hex_sid(sid),
                 conn.host, conn.port)
        conn.send_connect_response(0, 0, bytes(16))
        conn.close_after_flush()
        return
    if not session.local and not core.replica.revalidate(conn, sid, timeout):
        # LearnerZooKeeperServer.revalidateSession: the leader decides (and makes
        # us the session's owner); requests wait until it answers.
        conn.await_revalidation(sid)
        return
    _reopen(core, conn, session, timeout, now)


def revalidated(core: ServerCore, conn: Connection, valid: bool, now: int) -> None:
    """The leader's answer to the REVALIDATE of ``conn``'s reconnecting session."""
    session = core.sessions.get(conn.session_id)
    if not valid or session is None or session.closing:
        log.info("Invalid session %s for client %s:%d, probably expired",
                 hex_sid(conn.session_id), conn.host, conn.port)
        conn.send_connect_response(0, 0, bytes(16))
        conn.close_after_flush()
        return
    _reopen(core, conn, session, conn.timeout, now)
    conn.replay_early(now)


def _reopen(core: ServerCore, conn: Connection, session: Session, timeout: int,
            now: int) -> None:
    sid = session.id
    old = session.conn
    if old is not None and old is not conn:
        log.info("Closing previous connection of session %s on reconnect", hex_sid(sid))
        old.abort("session reconnected elsewhere", quiet=True)
    session.timeout = timeout
    core.sessions.touch(sid, now)
    conn.open(sid, timeout)
    log.info("Client %s:%d reconnected to session %s, timeout %dms", conn.host, conn.port,
             hex_sid(sid), timeout)
