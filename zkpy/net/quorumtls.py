"""Quorum TLS (``sslQuorum=true``): the election and quorum ports over TLS.

ZooKeeper's settings, with the ``ssl.quorum.`` prefix (QuorumX509Util):
``ssl.quorum.keyStore.location/password/type`` (this member's key and
certificate), ``ssl.quorum.trustStore.location/password/type`` (the CAs it
trusts), JKS, PKCS12 or PEM as for the client port (``zkpy.net.tls``);
``ssl.quorum.protocol`` / ``enabledProtocols`` / ``ciphersuites``;
``ssl.quorum.hostnameVerification`` (default true). Both sides present a
certificate and check the other's against the trust store (mutual TLS, as
ZooKeeper's quorum always is); with hostname verification the peer's
certificate must name the address it is at (a subjectAltName IP address or
DNS name, ZKTrustManager's check), on whichever side of the connection.

A connection whose TLS handshake or verification fails is closed and
logged; nothing of it reaches the Zab core.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

from OpenSSL import SSL
from twisted.internet.interfaces import IOpenSSLContextFactory
from twisted.protocols.tls import TLSMemoryBIOFactory
from zope.interface import implementer

from zkpy.net.tls import TLSConfigError, configure_context, load_store, use_identity

log = logging.getLogger("zkpy.quorum")

__all__ = ["QuorumTLS", "TLSConfigError", "certificate_names_host"]

_PREFIX = "ssl.quorum"


def certificate_names_host(cert: Any, host: str) -> bool:
    """Does the certificate's subjectAltName (or, lacking one, its CN) name ``host``?"""
    from cryptography import x509

    c = cert.to_cryptography()
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        ip = None
    try:
        san = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        cns = [a.value for a in c.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]
        return any(str(cn).lower() == host.lower() for cn in cns)
    if ip is not None and ip in san.get_values_for_type(x509.IPAddress):
        return True
    return host.lower() in (n.lower() for n in san.get_values_for_type(x509.DNSName))


@implementer(IOpenSSLContextFactory)
class _Context:
    """A Twisted context factory around one OpenSSL context."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx

    def getContext(self) -> Any:
        return self.ctx


class QuorumTLS:
    """The TLS contexts of a member's quorum and election connections."""

    def __init__(self, ssl: dict[str, str]) -> None:
        key, chain, _ = load_store(ssl, f"{_PREFIX}.keyStore")
        if key is None or not chain:
            raise TLSConfigError(f"{_PREFIX}.keyStore.location: sslQuorum=true needs a key "
                                 "store holding this server's private key and certificate")
        _, _, trusted = load_store(ssl, f"{_PREFIX}.trustStore")
        if not trusted:
            raise TLSConfigError(f"{_PREFIX}.trustStore.location: sslQuorum=true needs a trust "
                                 "store (the CA that signed the members' certificates)")
        self.settings = ssl
        self.key, self.chain, self.trusted = key, chain, trusted
        self.hostname_verification = (
            ssl.get(f"{_PREFIX}.hostnameVerification", "true").strip().lower() != "false")
        self._server = self._context(SSL.TLS_SERVER_METHOD, None)

    def _context(self, method: int, host: str | None) -> Any:
        ctx = SSL.Context(method)
        configure_context(ctx, self.settings, _PREFIX)
        use_identity(ctx, self.key, self.chain)
        store = ctx.get_cert_store()
        for cert in self.trusted:
            store.add_cert(cert)  # type: ignore[union-attr]
        verify_host = self.hostname_verification and host is not None

        def verify(conn: Any, cert: Any, errno: int, depth: int, ok: int) -> bool:
            if not ok:
                log.warning("Quorum TLS: the certificate of %s is not trusted (OpenSSL "
                            "verify error %d at depth %d)", host or "a peer", errno, depth)
                return False
            if depth == 0 and verify_host and not certificate_names_host(cert, host or ""):
                log.warning("Quorum TLS: the certificate of %s does not name it", host)
                return False
            return True

        ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, verify)
        # A Java peer resumes its sessions; OpenSSL refuses to resume a session
        # that verified its peer without a session id context (internal_error).
        ctx.set_session_id(b"zkpy-quorum")
        return ctx

    def server_factory(self, wrapped: Any, clock: Any = None) -> Any:
        """What to listen with: TLS around the port's own factory (``clock``: the
        reactor that flushes its aggregated writes)."""
        return TLSMemoryBIOFactory(_Context(self._server), False, wrapped, clock)  # type: ignore[arg-type]  # zope interface

    def client_factory(self, wrapped: Any, host: str, clock: Any = None) -> Any:
        """What to connect to ``host`` with (its certificate must name it)."""
        ctx = _Context(self._context(SSL.TLS_CLIENT_METHOD, host))
        return TLSMemoryBIOFactory(ctx, True, wrapped, clock)  # type: ignore[arg-type]  # zope interface

    def accepted_peer_ok(self, transport: Any) -> bool:
        """On the accepting side, once the handshake is done: with hostname
        verification, the client's certificate must name the address it
        connected from (ZKTrustManager.checkClientTrusted)."""
        if not self.hostname_verification:
            return True
        cert = transport.getPeerCertificate()
        host = transport.getPeer().host
        if cert is None or not certificate_names_host(cert, host):
            log.warning("Quorum TLS: refusing a connection from %s: its certificate does not "
                        "name it", host)
            return False
        return True
