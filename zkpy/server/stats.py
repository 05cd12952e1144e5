"""Counters the four-letter words and metrics report (pure bookkeeping).

``ServerStats`` is ZooKeeper's ServerStats: packets, the latency of every
request, the sizes of the responses sent to clients. The per-kind latencies,
counters and summaries of ZooKeeper's ServerMetrics live in
``zkpy.server.metrics``; request latency is ZooKeeper's ``readlatency`` and
``updatelatency`` taken together (every request is one or the other), so it
costs nothing of its own on the hot path.
"""

from __future__ import annotations

from zkpy.server.metrics import ServerMetrics, Summary


class RequestLatency:
    """min/avg/max of every request's latency in milliseconds (ServerStats.requestLatency)."""

    __slots__ = ("metrics", "read", "update")

    def __init__(self, metrics: ServerMetrics) -> None:
        self.metrics = metrics
        self.read = metrics.readlatency
        self.update = metrics.updatelatency

    def add(self, ms: int) -> None:
        """A request that changed nothing (a read)."""
        self.read.add(ms)

    def _both(self) -> tuple[Summary, Summary]:
        self.metrics.fold_all()
        return self.read, self.update

    @property
    def count(self) -> int:
        r, u = self._both()
        return r.count + u.count

    @property
    def total(self) -> int:
        r, u = self._both()
        return r.total + u.total

    @property
    def min(self) -> int:
        r, u = self._both()
        mins = [s.min for s in (r, u) if s.count]
        return min(mins) if mins else 0

    @property
    def max(self) -> int:
        r, u = self._both()
        return max(r.max, u.max)


#: ZooTrace's default text trace mask (CLIENT_REQUEST | SERVER_PACKET | CLIENT_PING ...).
DEFAULT_TRACE_MASK = 306


class ServerStats:
    __slots__ = ("packets_received", "packets_sent", "latency", "started_ms",
                 "commits", "watch_events", "response_size", "other_response_bytes",
                 "trace_mask", "non_mtls_remote", "non_mtls_local", "tls_handshakes",
                 "auth_failed")

    def __init__(self, now_ms: int, metrics: ServerMetrics) -> None:
        self.packets_received = 0
        self.packets_sent = 0
        self.latency = RequestLatency(metrics)
        self.started_ms = now_ms
        self.commits = 0
        self.watch_events = 0
        # Every response and notification's packet length (BufferStats: last/min/max).
        self.response_size = Summary("client_response_size", window=0)
        # Of those, bytes not sent by the final processor (notifications, auth replies):
        # what response_bytes leaves out.
        self.other_response_bytes = 0
        # NettyServerCnxnFactory's figures, kept by the client port's adapter: plain
        # connections (not mutual TLS) by where they came from (loopback or not;
        # only JMX resets them, srst does not), and the TLS handshakes in progress
        # while handshakes are throttled (a gauge: outstanding_tls_handshake).
        self.non_mtls_remote = 0
        self.non_mtls_local = 0
        self.tls_handshakes = 0
        # TLS connections that went without a finished handshake (ServerStats'
        # authFailedCount: Netty's CertificateVerifier is what counts it).
        self.auth_failed = 0
        # What gtmk/stmk read and set (ZooTrace's mask; srst leaves it alone).
        self.trace_mask = DEFAULT_TRACE_MASK

    def reset(self) -> None:
        """ServerStats.reset without the metrics (the caller resets those)."""
        self.packets_received = 0
        self.packets_sent = 0
        self.response_size.reset()
        self.other_response_bytes = 0

    def client_response_sizes(self) -> tuple[int, int, int]:
        """(last, min, max) response packet length; -1 each before the first."""
        sizes = self.response_size
        sizes.fold()
        if not sizes.count:
            return -1, -1, -1
        return sizes.last, sizes.min, sizes.max

    def response_bytes(self) -> int:
        """ZooKeeper's response_bytes: packet lengths of the replies to requests."""
        self.response_size.fold()
        return self.response_size.total - self.other_response_bytes
