"""Who may talk on the quorum and election ports: quorum SASL and TLS checks.

``PeerSasl`` runs one connection's quorum SASL handshake
(``zkpy.auth.quorum_sasl``) before anything else on it, for the protocols of
``zkpy.net.peerlinks``: the connecting side as the learner when
``learnerRequireSasl``, the accepting side as the server; with
``serverRequireSasl`` a connection that does not authenticate is refused and
logged. ``tls_peer_ok`` is quorum TLS's check of an accepted peer's
certificate (``zkpy.net.quorumtls``); ``quorum_sasl`` reads the settings.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from zkpy.auth import quorum_sasl as qsasl

log = logging.getLogger("zkpy.quorum")

__all__ = ["PeerSasl", "quorum_sasl", "tls_peer_ok"]


def quorum_sasl(settings: dict[str, str], jaas_path: str | None) -> qsasl.QuorumSasl:
    """The quorum SASL settings of zoo.cfg's quorum.auth.* keys and the JAAS file
    (ValueError naming what is missing or unreadable)."""
    text = None
    if jaas_path:
        try:
            with open(jaas_path, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise ValueError(f"java.security.auth.login.config: cannot read {jaas_path}: "
                             f"{e}") from None
    return qsasl.QuorumSasl.from_settings(settings, text)


def tls_peer_ok(tls: Any, transport: Any) -> bool:
    """With quorum TLS, an accepted peer's certificate must name its address."""
    return tls is None or tls.accepted_peer_ok(transport)


class PeerSasl:
    """One connection's quorum SASL handshake (``zkpy.auth.quorum_sasl``): started
    by ``connect`` (we connected) or ``accept`` (they did), fed the bytes that
    arrive until it is over; then the connection's ``authenticated()`` goes on."""

    def __init__(self, auth: qsasl.QuorumSasl | None, conn: Any) -> None:
        self.auth = auth if auth is not None and auth.enabled else None
        self.conn = conn
        self.handshake: qsasl.LearnerHandshake | qsasl.ServerHandshake | None = None
        self.peeking = False  # accepted: waiting to see whether the peer authenticates
        self.what = ""
        self.buf = b""

    @property
    def active(self) -> bool:
        return self.peeking or self.handshake is not None

    def connect(self, wanted: bool) -> bool:
        """We connected: authenticate if learnerRequireSasl (and ``wanted``); True
        if a handshake began (the connection waits for it)."""
        auth = self.auth
        if auth is None or not auth.learner_required or not wanted or auth.login is None:
            return False
        self.what = f"server {self.conn.sid}"
        self.handshake = qsasl.LearnerHandshake(*auth.login, os.urandom(16).hex())
        self.conn.transport.write(self.handshake.first())
        return True

    def accept(self, what: str) -> bool:
        """They connected: with quorum SASL on, see first whether they authenticate."""
        if self.auth is None:
            return False
        self.what, self.peeking = what, True
        return True

    def feed(self, data: bytes) -> bytes | None:
        """Run the handshake on the bytes that arrived: the bytes after it once it
        is over and the connection goes on; None while it is not over (the part
        of a packet that is not all here yet is kept), or when the connection
        ended."""
        assert self.auth is not None
        buf, self.buf = self.buf + data, b""
        try:
            if self.peeking:
                first = qsasl.starts_with_auth(buf)
                if first is None:
                    self.buf = buf
                    return None
                self.peeking = False
                if first:
                    self.handshake = qsasl.ServerHandshake(self.auth.users,
                                                           os.urandom(16).hex())
                elif self.auth.server_required:
                    self._fail("it did not authenticate (quorum.auth.serverRequireSasl)")
                    return None
                else:
                    return buf if self.conn.authenticated() else None
            off = 0
            while self.handshake is not None:
                step = self.handshake.feed(buf, off)
                if step is None:
                    self.buf = buf[off:]
                    return None
                out, off = step
                if out:
                    self.conn.transport.write(out)
                if self.handshake.done:
                    if isinstance(self.handshake, qsasl.ServerHandshake):
                        log.info("Quorum SASL: %s authenticated as %r", self.what,
                                 self.handshake.user)
                    self.handshake = None
                    return buf[off:] if self.conn.authenticated() else None
        except qsasl.QuorumAuthError as e:
            if e.reply:
                self.conn.transport.write(e.reply)
            self._fail(str(e))
        return None

    def _fail(self, reason: str) -> None:
        log.warning("Quorum SASL: refusing %s: %s", self.what, reason)
        self.handshake, self.peeking = None, False
        self.conn.abort()
        return None


