"""The Twisted adapter: sockets and time in, ``ServerCore`` does the rest.

This is the only place that touches the reactor. Each TCP connection hands
its bytes to a pure ``Connection``; after every event the core's queued
output is flushed to the transports. A LoopingCall drives session expiry once
per tick.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from twisted.internet import protocol, task
from twisted.internet.interfaces import IReactorTCP, IReactorTime

from zkpy.core import CoreSettings, ServerCore

log = logging.getLogger("zkpy.net")


def wall_ms() -> int:
    return int(time.time() * 1000)


class ClientProtocol(protocol.Protocol):
    def __init__(self, server: ZkServer) -> None:
        self.server = server
        self.conn: Any = None

    def connectionMade(self) -> None:
        core = self.server.core
        peer = self.transport.getPeer()  # type: ignore[union-attr]
        host = getattr(peer, "host", "?")
        port = getattr(peer, "port", 0)
        limit = core.settings.max_client_cnxns
        if limit and self.server.count_from(host) >= limit:
            log.warning("Too many connections from %s - max is %d", host, limit)
            self.transport.abortConnection()  # type: ignore[union-attr]
            return
        self.transport.setTcpNoDelay(True)  # type: ignore[union-attr]
        self.conn = core.connect(host, port, self.transport.write,  # type: ignore[union-attr]
                                 self.transport.loseConnection, self.server.clock())  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        conn = self.conn
        if conn is None:
            return
        conn.receive(data, self.server.clock())
        self.server.core.flush()

    def connectionLost(self, reason: Any = None) -> None:
        if self.conn is not None:
            self.server.core.connection_lost(self.conn)
            self.server.core.flush()
            self.conn = None


class ClientFactory(protocol.ServerFactory):
    def __init__(self, server: ZkServer) -> None:
        self.server = server

    def buildProtocol(self, addr: Any) -> ClientProtocol:
        return ClientProtocol(self.server)


class ZkServer:
    """A standalone zkpy server bound to a reactor."""

    def __init__(self, reactor: Any, settings: CoreSettings, clock: Any = wall_ms) -> None:
        self.reactor = reactor
        self.clock = clock
        self.core = ServerCore(settings, clock())
        self.port: Any = None
        self._ticker: task.LoopingCall | None = None

    def count_from(self, host: str) -> int:
        return sum(1 for c in self.core.connections.values() if c.host == host)

    def listen(self) -> Any:
        s = self.core.settings
        tcp: IReactorTCP = self.reactor
        self.port = tcp.listenTCP(s.client_port, ClientFactory(self), backlog=1024,
                                  interface=s.client_address)
        addr = self.port.getHost()
        log.info("binding to port %s:%d", addr.host, addr.port)
        ticker = task.LoopingCall(self._tick)
        clock: IReactorTime = self.reactor
        ticker.clock = clock
        # Half a tick keeps expiry within one tick of the bucket boundary.
        ticker.start(max(s.tick_time, 2) / 2000.0, now=False)
        self._ticker = ticker
        return self.port

    def _tick(self) -> None:
        self.core.tick(self.clock())

    def stop(self) -> Any:
        if self._ticker is not None and self._ticker.running:
            self._ticker.stop()
        if self.port is not None:
            return self.port.stopListening()
        return None
