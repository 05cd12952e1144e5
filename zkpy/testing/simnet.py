"""A seeded simulated network for pure protocol state machines.

Every source of nondeterminism comes from one ``random.Random(seed)``: message
delays, which links break and when, which peers crash. Links behave like TCP
connections: messages on one link arrive in the order sent or not at all (a
broken link loses what is in flight, and nothing after it until it heals);
messages on different links interleave freely. A failing seed replays
exactly.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(order=True)
class _Event:
    at: int
    seq: int
    kind: str = field(compare=False)
    src: int = field(compare=False)
    dst: int = field(compare=False)
    payload: Any = field(compare=False)


class SimNet:
    def __init__(self, seed: int, nodes: list[int], min_delay: int = 1, max_delay: int = 30):
        self.rng = random.Random(seed)
        self.nodes = list(nodes)
        self.now = 0
        self.min_delay = min_delay
        self.max_delay = max_delay
        self._events: list[_Event] = []
        self._seq = 0
        self._link_clock: dict[tuple[int, int], int] = {}
        self._link_gen: dict[tuple[int, int], int] = {}
        self.cut: set[tuple[int, int]] = set()
        self.down: set[int] = set()
        self.delivered = 0

    def send(self, src: int, dst: int, payload: Any) -> None:
        link = (src, dst)
        if src in self.down or dst in self.down or link in self.cut:
            return
        at = max(self._link_clock.get(link, 0), self.now + self.rng.randint(self.min_delay, self.max_delay))
        self._link_clock[link] = at
        self._push(at, "msg", src, dst, (self._link_gen.get(link, 0), payload))

    def _push(self, at: int, kind: str, src: int, dst: int, payload: Any) -> None:
        self._seq += 1
        heapq.heappush(self._events, _Event(at, self._seq, kind, src, dst, payload))

    def break_link(self, a: int, b: int) -> None:
        """Both directions fail; what is in flight is lost (the TCP connection dies)."""
        for link in ((a, b), (b, a)):
            self.cut.add(link)
            self._link_gen[link] = self._link_gen.get(link, 0) + 1

    def heal_link(self, a: int, b: int) -> None:
        self.cut.discard((a, b))
        self.cut.discard((b, a))

    def partition(self, side: set[int]) -> None:
        for a in side:
            for b in self.nodes:
                if b not in side:
                    self.break_link(a, b)

    def heal_all(self) -> None:
        self.cut.clear()

    def crash(self, node: int) -> None:
        self.down.add(node)
        for other in self.nodes:
            if other != node:
                for link in ((node, other), (other, node)):
                    self._link_gen[link] = self._link_gen.get(link, 0) + 1

    def restart(self, node: int) -> None:
        self.down.discard(node)

    def run_until(self, deadline: int, deliver: Callable[[int, int, Any], None],
                  tick: Callable[[int], None], tick_every: int = 10) -> None:
        """Deliver messages and tick every node until ``deadline`` (simulated ms)."""
        next_tick = self.now
        while True:
            next_msg = self._events[0].at if self._events else None
            if next_msg is not None and next_msg <= next_tick and next_msg <= deadline:
                ev = heapq.heappop(self._events)
                self.now = ev.at
                gen, payload = ev.payload
                link = (ev.src, ev.dst)
                if (ev.dst in self.down or ev.src in self.down or link in self.cut
                        or gen != self._link_gen.get(link, 0)):
                    continue
                self.delivered += 1
                deliver(ev.src, ev.dst, payload)
            elif next_tick <= deadline:
                self.now = next_tick
                for node in self.nodes:
                    if node not in self.down:
                        tick(node)
                next_tick += tick_every
            else:
                self.now = deadline
                return
