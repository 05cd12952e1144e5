"""The Twisted adapter: sockets and time in, ``ServerCore`` does the rest.

This is the only place that touches the reactor. Each TCP connection hands
its bytes to a pure ``Connection``; after every event the core's queued
output is flushed to the transports. A LoopingCall drives session expiry once
per tick.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from functools import partial
from typing import Any

from twisted.internet import protocol, task
from twisted.internet.interfaces import IHandshakeListener, IPushProducer
from zope.interface import implementer

from zkpy.net.host import SystemHost
from zkpy.net.sendnow import send_now
from zkpy.server.core import CoreSettings, ServerCore

log = logging.getLogger("zkpy.net")


def wall_ms() -> int:
    return int(time.time() * 1000)


def is_loopback(host: str) -> bool:
    """InetAddress.isLoopbackAddress for a peer's address text (IPv4-mapped too)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


@implementer(IPushProducer, IHandshakeListener)
class ClientProtocol(protocol.Protocol):
    """Bytes of one client connection to and from its pure ``Connection``.

    Back-pressure: the protocol registers itself as the producer feeding its
    transport, so when a client stops reading its replies (the transport's
    buffer fills) we stop reading its requests; and while the server has more
    than ``globalOutstandingLimit`` requests waiting for the disk, connections
    with requests of their own in flight are not read either (ZooKeeper's
    throttle). Other connections are served meanwhile.

    What NettyServerCnxnFactory counts as a connection opens: with the Netty
    factory configured, each plain connection as a non-mTLS one (local when it
    comes from a loopback address); with a handshake limit, each TLS handshake
    in progress, and a connection over the limit is closed before its handshake;
    a TLS connection that goes without a finished handshake (a failed one, or
    one closed first, the refused ones too) is an unsuccessful handshake and an
    authentication failure, as Netty's CertificateVerifier counts it.
    """

    def __init__(self, server: ZkServer, tls: bool = False) -> None:
        self.server = server
        self.conn: Any = None
        self.secure = tls  # the secure client port's connection
        self.tls_pending = tls  # its client certificate not yet looked at
        self.handshaking = False  # counted in outstanding_tls_handshake
        self.handshake_done = False
        self.buffer_full = False
        self.throttled = False
        self._scheduled = False

    # IPushProducer, called by our own transport about its write buffer.
    def pauseProducing(self) -> None:
        self.buffer_full = True
        self._update_reading()

    def resumeProducing(self) -> None:
        self.buffer_full = False
        self._update_reading()
        self._continue()

    def _continue(self) -> None:
        """Take more requests already buffered, when the connection stopped for
        its output budget and its transport is not full."""
        conn = self.conn
        if conn is None or not conn.backlogged or self.buffer_full or self._scheduled:
            return
        self._scheduled = True

        def go() -> None:
            self._scheduled = False
            if self.conn is not None and not self.buffer_full:
                self.conn.receive(b"", self.server.clock())
                self.server.core.flush()
                self._continue()

        self.server.reactor.callLater(0, go)

    def stopProducing(self) -> None:
        pass

    def _update_reading(self) -> None:
        transport: Any = self.transport
        if transport is None:
            return
        if self.buffer_full or self.throttled:
            transport.pauseProducing()
        else:
            transport.resumeProducing()

    def _adopt_client_certificate(self, conn: Any) -> None:
        from zkpy.jute.schema import Id
        from zkpy.net.tls import x509_id

        try:
            transport: Any = self.transport
            cert = transport.getPeerCertificate()
        except Exception:  # no certificate, or the handshake is not done
            cert = None
        ident = x509_id(cert)
        if ident is not None:
            conn.ids.append(Id("x509", ident))
            log.info("TLS client %s:%d authenticated as x509:%s", conn.host, conn.port, ident)

    def connectionMade(self) -> None:
        core = self.server.core
        transport: Any = self.transport
        peer = transport.getPeer()
        host = getattr(peer, "host", "?")
        port = getattr(peer, "port", 0)
        limit = core.settings.max_client_cnxns
        if limit and self.server.count_from(host) >= limit:
            log.warning("Too many connections from %s - max is %d", host, limit)
            core.metrics.connection_rejected += 1
            transport.abortConnection()
            return
        if not self._admit_handshake(host):
            transport.abortConnection()
            return
        transport.setTcpNoDelay(True)
        transport.registerProducer(self, True)
        # Replies are sent at once when nothing waits ahead (zkpy.net.sendnow).
        self.conn = core.connect(host, port, partial(send_now, transport), transport.loseConnection,
                                 self.server.clock())

    def _admit_handshake(self, host: str) -> bool:
        """NettyServerCnxnFactory's channelActive: throttle TLS handshakes, count
        plain connections. False: this connection is refused."""
        settings, stats = self.server.core.settings, self.server.core.stats
        if self.secure:
            limit = settings.outstanding_handshake_limit
            if limit > 0:
                if stats.tls_handshakes + 1 > limit:
                    log.warning("Too many TLS handshakes in progress (limit %d): closing the "
                                "connection from %s", limit, host)
                    self.server.core.metrics.tls_handshake_exceeded += 1
                    return False
                stats.tls_handshakes += 1
                self.handshaking = True
        elif settings.netty:
            if is_loopback(host):
                stats.non_mtls_local += 1
            else:
                stats.non_mtls_remote += 1
        return True

    def handshakeCompleted(self) -> None:
        """The TLS handshake is done (TLSMemoryBIOProtocol tells its protocol)."""
        self.handshake_done = True
        self._handshake_over()

    def _handshake_over(self) -> None:
        if self.handshaking:
            self.handshaking = False
            self.server.core.stats.tls_handshakes -= 1

    def dataReceived(self, data: bytes) -> None:
        conn = self.conn
        if conn is None:
            return
        if self.tls_pending:
            self.tls_pending = False
            self._adopt_client_certificate(conn)
        server = self.server
        server.hold_peers()  # the read's packets to other servers go out together
        try:
            conn.receive(data, server.clock())
            core = server.core
            if conn.pending and core.outstanding_writes > core.settings.global_outstanding_limit:
                if not self.throttled:  # RequestThrottler waits for requests in flight to drop
                    core.metrics.request_throttle_wait_count += 1
                self.throttled = True
                server.throttled.add(self)
                self._update_reading()
            core.flush()
        finally:
            server.release_peers()
        self._continue()

    def connectionLost(self, reason: Any = None) -> None:
        self._handshake_over()  # (a connection that went before its handshake ended)
        if self.secure and not self.handshake_done:
            core = self.server.core
            core.metrics.unsuccessful_handshake += 1
            core.stats.auth_failed += 1
            log.info("Unsuccessful TLS handshake with a client%s",
                     f" ({reason.getErrorMessage()})" if reason is not None else "")
        if self.conn is not None:
            self.conn.lost()
            self.server.core.flush()
            self.conn = None


class ClientFactory(protocol.ServerFactory):
    def __init__(self, server: ZkServer, tls: bool = False) -> None:
        self.server = server
        self.tls = tls

    def buildProtocol(self, addr: Any) -> ClientProtocol:
        return ClientProtocol(self.server, self.tls)


class ZkServer:
    """The client side of a server on a reactor: client ports, the session ticker and
    the global throttle (``zkpy.net.member.MemberServer`` adds Zab and the disk)."""

    def __init__(self, reactor: Any, settings: CoreSettings, clock: Any = wall_ms) -> None:
        self.reactor = reactor
        self.clock = clock
        self.core = ServerCore(settings, clock(), SystemHost(),
                               after_flush=self._release_throttled)
        self.throttled: set[ClientProtocol] = set()
        self.port: Any = None
        self._ticker: task.LoopingCall | None = None

    def hold_peers(self) -> None:
        """A client read begins: an ensemble member holds its packets to the
        other servers until it ends (``MemberServer``); nothing here."""

    def release_peers(self) -> None:
        """A client read ended (see ``hold_peers``)."""

    def _release_throttled(self) -> None:
        core = self.core
        if self.throttled and core.outstanding_writes <= core.settings.global_outstanding_limit:
            released, self.throttled = self.throttled, set()
            for proto in released:
                proto.throttled = False
                proto._update_reading()

    def count_from(self, host: str) -> int:
        return sum(1 for c in self.core.connections.values() if c.host == host)

    def listen(self, plain: bool = True) -> Any:
        """Bind clientPort (unless only TLS is wanted) and start the session ticker."""
        s = self.core.settings
        if plain:
            self.port = self.reactor.listenTCP(s.client_port, ClientFactory(self), backlog=1024,
                                      interface=s.client_address)
            addr = self.port.getHost()
            log.info("binding to port %s:%d", addr.host, addr.port)
        ticker = task.LoopingCall(self._tick)
        ticker.clock = self.reactor
        # Half a tick keeps expiry within one tick of the bucket boundary.
        ticker.start(max(s.tick_time, 2) / 2000.0, now=False)
        self._ticker = ticker
        return self.port

    def listen_tls(self, context_factory: Any, port: int, interface: str) -> Any:
        """Serve the same protocol over TLS (secureClientPort)."""
        self.tls_port = self.reactor.listenSSL(port, ClientFactory(self, tls=True),
                                               context_factory, backlog=1024,
                                               interface=interface)
        addr = self.tls_port.getHost()
        log.info("binding to secure port %s:%d", addr.host, addr.port)
        return self.tls_port

    def _tick(self) -> None:
        self.core.tick(self.clock())

    def stop(self) -> Any:
        if self._ticker is not None and self._ticker.running:
            self._ticker.stop()
        if getattr(self, "tls_port", None) is not None:
            self.tls_port.stopListening()
        if self.port is not None:
            return self.port.stopListening()
        return None
