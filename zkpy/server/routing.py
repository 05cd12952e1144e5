"""Where each request of an open session goes (FinalRequestProcessor's dispatch, and before).

``route(core, conn, frame, now)`` takes one request frame of a connection
that has a session, and in this order:

1. touches the session (it is alive);
2. enforces the required authentication schemes (``zkpy.server.authentication``)
   for anything but auth and sasl;
3. decodes the body (``zkpy.jute.requests``): a malformed read is answered
   MARSHALLINGERROR, a malformed write still gets a zxid (an ErrorTxn, as
   ZooKeeper's PrepRequestProcessor makes it), an unknown op is answered
   UNIMPLEMENTED and the connection closed;
4. lets a local session's close or first ephemeral be handled where it lives
   (``zkpy.server.local_sessions``);
5. sends writes, and syncs that must wait for the leader, into the write
   pipeline (``ServerCore.submit``, which routes by mode) behind the
   connection's own earlier requests;
6. answers auth and sasl;
7. answers reads at once, or queues them behind the connection's pending
   writes so that a client never sees its reads overtake its writes (with
   ``linearizableReads``, reads wait for a read point, and what must not
   overtake them is kept until they are answered: ``zkpy.server.linear_reads``).

It decides; the connection keeps the bytes in order.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

from zkpy.jute.codec import JuteError
from zkpy.jute.opcodes import (
    OP_auth,
    OP_sasl,
    OP_sync,
)
from zkpy.jute.protocol import WRITE_OPS, Err, Op
from zkpy.jute.requests import REPLY_FRAME, REQUEST_HEADER, decode_body
from zkpy.server import authentication, linear_reads
from zkpy.server.local_sessions import CHECKED_OPS
from zkpy.server.prep import MALFORMED, Request

if TYPE_CHECKING:
    from zkpy.server.connection import Connection
    from zkpy.server.core import ServerCore

log = logging.getLogger("zkpy.server")

_OP_NAMES: Final = {int(o): o.name for o in Op}
# (Final: compiled, a C static rather than a read of this module's dictionary.)
_WRITE_OPS: Final = WRITE_OPS
_CHECKED_OPS: Final = CHECKED_OPS


def op_name(op: int) -> str:
    return _OP_NAMES.get(op) or str(op)


def route(core: ServerCore, conn: Connection, frame: bytes, now: int) -> None:
    """``now``: when the frame arrived (earlier than ``core.now`` for a request
    that waited for its session to be created)."""
    if len(frame) < 8:
        conn.abort("request shorter than its header")
        return
    xid, op = REQUEST_HEADER.unpack_from(frame, 0)
    if (conn.unanswered or conn.deferred) and linear_reads.defer(conn, frame, op,
                                                                 core.sync_is_local(), now):
        return  # behind a read of this session that waits for its read point
    core.sessions.touch(conn.session_id, now)
    if (core.settings.enforce_auth_schemes and op != OP_auth and op != OP_sasl
            and not authentication.enforced(core, conn, xid)):
        return
    try:
        body = decode_body(op, frame)
    except JuteError as e:
        log.warning("Malformed %s request from %s:%d: %s", op_name(op), conn.host, conn.port, e)
        if op not in _WRITE_OPS:
            conn.reply_in_order(xid, Err.MARSHALLINGERROR, b"", now)
            return
        body = MALFORMED  # a write: MARSHALLINGERROR with a zxid, as ZooKeeper
    except KeyError:
        log.warning("Unknown request type %d from %s:%d; closing", op, conn.host, conn.port)
        conn.queue(REPLY_FRAME.pack(16, xid, -1, int(Err.UNIMPLEMENTED)))
        conn.close_after_flush()
        return
    if core.settings.local_sessions and op in _CHECKED_OPS:
        session = core.sessions.get(conn.session_id)
        if session is not None and session.local and core.local_sessions.request(
                conn, session, xid, op, body, now):
            return
    # A follower's sync waits for the leader's SYNC, like a write for its commit.
    if op in _WRITE_OPS or (op == OP_sync and not core.sync_is_local()):
        req = Request(conn.session_id, xid, op, body, list(conn.ids), conn)
        req.created = now
        req.raw = frame
        conn.pending.append(req)
        core.submit(req, now)
    elif op == OP_auth:
        authentication.auth(core, conn, xid, body)
    elif op == OP_sasl:
        authentication.sasl(core, conn, xid, body)
    else:
        conn.read(xid, op, body, now)
