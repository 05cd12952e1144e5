"""A connection's authentication requests: auth, sasl, and required schemes.

- ``auth`` (AuthPacket): the scheme's provider (``zkpy.auth.acl``) grants ids
  that the connection keeps; a refused one gets AUTHFAILED and is closed.
- ``sasl`` (GetSASLRequest): one step of DIGEST-MD5 (``zkpy.auth.sasl``)
  against the JAAS Server users; success adds a ``sasl`` id. A failure closes
  the connection with ZooKeeper 3.8's answers (AUTHFAILED, or
  SESSIONCLOSEDREQUIRESASLAUTH when SASL is required), unless
  zookeeper.allowSaslFailedClients keeps it open.
- ``enforced``: with zookeeper.enforce.auth.enabled (or
  sessionRequireClientSASLAuth) a connection that holds no id of a required
  scheme gets SESSIONCLOSEDREQUIRESASLAUTH for anything but auth/sasl, and is
  closed (AuthenticationHelper.enforceAuthentication).

Replies go out in the connection's order (behind its pending writes). No I/O.
"""

from __future__ import annotations

import logging
import struct
from typing import TYPE_CHECKING, Any

from zkpy.auth.sasl import DigestMD5Server, SaslError
from zkpy.jute import schema as S
from zkpy.jute.protocol import Err, ZkError
from zkpy.jute.requests import REPLY_FRAME
from zkpy.server.sessions import hex_sid

if TYPE_CHECKING:
    from zkpy.server.connection import Connection
    from zkpy.server.core import ServerCore

log = logging.getLogger("zkpy.server")

_NULL_BUFFER = struct.pack(">i", -1)  # a jute buffer field holding null


def enforced(core: ServerCore, conn: Connection, xid: int) -> bool:
    """True when the connection may go on; False after answering and closing it."""
    schemes = core.settings.enforce_auth_schemes
    if any(i.scheme in schemes for i in conn.ids):
        return True
    # As ZooKeeper: answer this request with SESSIONCLOSEDREQUIRESASLAUTH (zxid 0), read
    # nothing more and close the connection; the session is left to expire.
    log.error("Client authentication scheme(s) %s of session %s from %s:%d does not match "
              "with any of the expected authentication scheme %s, closing session.",
              [i.scheme for i in conn.ids], hex_sid(conn.session_id), conn.host, conn.port,
              list(schemes))
    conn.queue_in_order(REPLY_FRAME.pack(16, xid, 0, int(Err.SESSIONCLOSEDREQUIRESASLAUTH)))
    conn.close_after_flush()
    return False


def auth(core: ServerCore, conn: Connection, xid: int, body: Any) -> None:
    try:
        granted = core.auth.authenticate(body.scheme, body.auth, conn.host)
    except ZkError:
        log.warning("Authentication failed for scheme %s from %s:%d", body.scheme,
                    conn.host, conn.port)
        conn.queue_in_order(REPLY_FRAME.pack(16, xid, 0, int(Err.AUTHFAILED)))
        conn.close_after_flush()
        return
    for ident in granted:
        if ident not in conn.ids:
            conn.ids.append(ident)
    conn.queue_in_order(REPLY_FRAME.pack(16, xid, 0, 0))


def sasl(core: ServerCore, conn: Connection, xid: int, body: Any) -> None:
    settings = core.settings
    users = settings.sasl_users
    if users is None:
        log.warning("SASL authentication from %s:%d refused: no JAAS Server section is "
                    "configured (java.security.auth.login.config)", conn.host, conn.port)
        conn.close_after_flush()
        return
    if conn.sasl is None:
        conn.sasl = DigestMD5Server(users, core.host.random_bytes(16).hex())
    try:
        token = conn.sasl.step(body.token)
    except SaslError as e:
        log.warning("Client %s:%d failed to SASL authenticate: %s", conn.host, conn.port, e)
        required = "sasl" in settings.enforce_auth_schemes
        if settings.allow_sasl_failed_clients and not required:
            log.warning("Maintaining client connection despite SASL authentication failure.")
            conn.queue_in_order(REPLY_FRAME.pack(20, xid, 0, 0) + _NULL_BUFFER)
            return
        # ZooKeeper 3.8 answers the token (SetSASLResponse with a null token) with
        # SESSIONCLOSEDREQUIRESASLAUTH when SASL is required, else AUTHFAILED, then closes.
        if required:
            log.warning("Closing client connection due to server requires client SASL "
                        "authentication, but client SASL authentication has failed, or "
                        "client is not configured with SASL authentication.")
            err = Err.SESSIONCLOSEDREQUIRESASLAUTH
        else:
            log.warning("Closing client connection due to SASL authentication failure.")
            err = Err.AUTHFAILED
        conn.queue_in_order(REPLY_FRAME.pack(20, xid, 0, int(err)) + _NULL_BUFFER)
        conn.close_after_flush()
        return
    if conn.sasl.complete and conn.sasl.user is not None:
        ident = S.Id("sasl", conn.sasl.user)
        if ident not in conn.ids:
            conn.ids.append(ident)
            log.info("Session %s authenticated with SASL as %s", hex_sid(conn.session_id),
                     conn.sasl.user)
    payload = S.SetSASLResponse(token).encode()
    # zxid 0, as ZooKeeperServer.processSasl answers.
    conn.queue_in_order(REPLY_FRAME.pack(16 + len(payload), xid, 0, 0) + payload)
