"""Counters the four-letter words and metrics report (pure bookkeeping)."""

from __future__ import annotations


class Latency:
    """min/avg/max of request latencies in milliseconds, as ZooKeeper reports them."""

    __slots__ = ("count", "total", "min", "max")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.count = 0
        self.total = 0.0
        self.min = 0.0
        self.max = 0.0

    def add(self, ms: float) -> None:
        if self.count == 0 or ms < self.min:
            self.min = ms
        if ms > self.max:
            self.max = ms
        self.count += 1
        self.total += ms

    @property
    def avg(self) -> float:
        return self.total / self.count if self.count else 0.0


#: ZooTrace's default text trace mask (CLIENT_REQUEST | SERVER_PACKET | CLIENT_PING ...).
DEFAULT_TRACE_MASK = 306


class ServerStats:
    __slots__ = ("packets_received", "packets_sent", "latency", "started_ms",
                 "commits", "watch_events", "trace_mask")

    def __init__(self, now_ms: int) -> None:
        self.packets_received = 0
        self.packets_sent = 0
        self.latency = Latency()
        self.started_ms = now_ms
        self.commits = 0
        self.watch_events = 0
        # What gtmk/stmk read and set (ZooTrace's mask; srst leaves it alone).
        self.trace_mask = DEFAULT_TRACE_MASK

    def reset(self) -> None:
        self.packets_received = 0
        self.packets_sent = 0
        self.latency.reset()
