"""A fault run on the in-memory ensemble, its plain reads checked for linearizability.

``run(seed, linear=...)`` starts a ``zkpy.testing.replicasim.Sim`` (with
``linearizableReads`` on or off), creates a few keys, and lets clients issue
getData and setData (unique values) on them, one request at a time each
(with ``sync_ratio``, some with a sync of their key pipelined before or after
them), through whichever member they are connected to, while faults come and
go, all drawn from one seeded ``random.Random``:

At most ``max_faults`` at a time, each healed after 2 to 12 steps:

- kill: a member is powered off (its unsynced disk writes lost) and later
  restarted from its disk;
- pause: a member's process is stopped (nothing steps, ticks or syncs; what
  reaches it, its clients' requests included, waits) and later continued,
  its clients' requests handled first;
- partition: two members are cut apart (both directions) and later healed;
- lag: one direction of a link holds its packets for a while (a slow network).

Every request is recorded as a ``zkpy.testing.linearizability.Op`` with
logical times: a counter that ticks at each invocation and at each answer
the client sees (answers are looked at after the ensemble settles, so an
interval is never narrower than the real one). A write whose connection
breaks before its answer has no end (it may or may not have happened); a read
that fails is left out; a client whose connection breaks reconnects to some
member with a new session. ``FaultRun.result`` is the checker's verdict;
``FaultRun.disorder`` lists every answer that overtook an older request of
its session (ZooKeeper answers a session in order).

Deterministic: the same seed gives the same run.
"""

from __future__ import annotations

import random
import struct
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from zkpy.jute import schema as S
from zkpy.jute.codec import decode, decode_all
from zkpy.jute.protocol import Op as OpCode
from zkpy.testing import linearizability as lin
from zkpy.testing.replicasim import Sim

OPEN = [S.ACL(31, S.Id("world", "anyone"))]
_LEN = struct.Struct(">i")


def _frame(*records: Any) -> bytes:
    body = b"".join(r.encode() for r in records)
    return _LEN.pack(len(body)) + body


@dataclass
class _Request:
    xid: int
    kind: str
    key: str
    value: bytes
    start: int


class _Client:
    """One client process: a connection to one member, one request at a time."""

    def __init__(self, run: FaultRun, cid: int) -> None:
        self.run = run
        self.cid = cid
        self.member: int | None = None
        self.conn: Any = None
        self.unread = bytearray()
        self.closed = True
        self.open = False
        self.xid = 0
        # What is in flight, oldest first: (xid, the request; None for a sync).
        self.inflight: deque[tuple[int, _Request | None]] = deque()
        self.writes = 0

    # -- the connection --------------------------------------------------------------

    def connect(self, member: int) -> None:
        run = self.run
        self.member = member
        self.unread = bytearray()
        self.closed = False
        self.open = False
        core = run.sim.members[member].core
        self.conn = core.connect("127.0.0.1", 30000 + self.cid, self._sink, self._close,
                                 run.sim.now)
        self.send(_frame(S.ConnectRequest(0, 0, 60000, 0, bytes(16), False)))

    def _sink(self, data: bytes) -> None:
        self.unread += data

    def _close(self) -> None:
        self.closed = True

    def send(self, data: bytes) -> None:
        run = self.run
        assert self.member is not None
        if self.member in run.sim.stopped:
            run.held.setdefault(self.member, []).append((self, data))  # in its socket
            return
        self.deliver(data)

    def deliver(self, data: bytes) -> None:
        if self.closed:
            return
        self.conn.receive(data, self.run.sim.now)
        self.conn.core.flush()

    def _answered(self, xid: int) -> _Request | None:
        """Take ``xid`` off what is in flight; an answer that overtook an older
        request of the session is recorded as disorder."""
        ahead: list[int] = []
        for i, (x, req) in enumerate(self.inflight):
            if x == xid:
                del self.inflight[i]
                if ahead:
                    self.run.disorder.append((self.cid, xid, ahead))
                return req
            ahead.append(x)
        self.run.disorder.append((self.cid, xid, ahead))  # never asked: as bad
        return None

    def frames(self) -> list[bytes]:
        out = []
        while len(self.unread) >= 4:
            (n,) = _LEN.unpack_from(self.unread, 0)
            if len(self.unread) < 4 + n:
                break
            out.append(bytes(self.unread[4:4 + n]))
            del self.unread[:4 + n]
        return out

    # -- requests --------------------------------------------------------------------

    def issue(self, rng: random.Random) -> None:
        """One read or write; sometimes with a sync of its key pipelined before
        or after it (whose answer must keep its place: ``FaultRun.disorder``)."""
        run = self.run
        key = rng.choice(run.keys)
        sync = rng.random() < run.sync_ratio
        after = sync and rng.random() < 0.5
        if sync and not after:
            self._sync(key)
        self.xid += 1
        if rng.random() < run.read_ratio:
            req = _Request(self.xid, lin.READ, key, b"", run.tick())
            frame = _frame(S.RequestHeader(self.xid, OpCode.getData),
                           S.GetDataRequest(key, False))
        else:
            self.writes += 1
            value = f"c{self.cid}-{self.writes}".encode()
            req = _Request(self.xid, lin.WRITE, key, value, run.tick())
            frame = _frame(S.RequestHeader(self.xid, OpCode.setData),
                           S.SetDataRequest(key, value, -1))
        self.inflight.append((self.xid, req))
        self.send(frame)
        if after:
            self._sync(key)

    def _sync(self, key: str) -> None:
        self.xid += 1
        self.inflight.append((self.xid, None))
        self.send(_frame(S.RequestHeader(self.xid, OpCode.sync), S.SyncRequest(key)))

    def collect(self) -> None:
        """Look at what arrived: the session's answer, the request's answer, a close."""
        for data in self.frames():
            if not self.open:
                resp = decode_all(S.ConnectResponse, data)
                self.open = resp.sessionId != 0
                continue
            hdr, off = decode(S.ReplyHeader, data)
            if hdr.xid < 0:
                continue  # a watch event or ping: none are asked for
            req = self._answered(hdr.xid)
            if req is None:
                continue  # a sync's answer
            if hdr.err != 0:
                continue  # a failed read returned nothing; a failed write did nothing
            value = (decode_all(S.GetDataResponse, data[off:]).data
                     if req.kind == lin.READ else req.value)
            self.run.record(self.cid, req, value, self.run.tick())
        if self.closed and self.member is not None:
            for _, req in self.inflight:
                if req is not None and req.kind == lin.WRITE:
                    self.run.record(self.cid, req, req.value, None)  # it may have happened
            self.inflight.clear()
            self.member = None
            self.open = False


@dataclass
class FaultRun:
    seed: int
    linear: bool
    size: int = 3
    clients: int = 5
    keys: list[str] = field(default_factory=lambda: ["/k0", "/k1"])
    read_ratio: float = 0.6
    steps: int = 400
    fault_rate: float = 0.15
    max_faults: int = 2
    sync_ratio: float = 0.0  # requests with a sync pipelined before or after them
    # Quorum packets that wait on a link are stepped as one read (Messages), as
    # zkpy.net.peerlinks steps them, where the Ready must keep their order.
    batch_reads: bool = False
    history: list[lin.Op] = field(default_factory=list)
    faults: dict[str, int] = field(default_factory=dict)
    result: lin.Result | None = None
    # Answers that came out of their session's order: (client, xid answered,
    # the xids in flight ahead of it). ZooKeeper answers a session in order.
    disorder: list[tuple[int, int, list[int]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.clock = 0
        self.held: dict[int, list[tuple[_Client, bytes]]] = {}
        self.active: list[tuple[str, Any, int]] = []  # (kind, member or link, heal at step)
        self.sim = Sim(self.size, settings={"linear_reads": self.linear})
        self.sim.batch_reads = self.batch_reads
        self.sim.wait_stable()
        self._create_keys()
        self.pool = [_Client(self, i) for i in range(self.clients)]

    def tick(self) -> int:
        self.clock += 1
        return self.clock

    def record(self, cid: int, req: _Request, value: bytes | None, end: int | None) -> None:
        self.history.append(lin.Op(cid, req.kind, req.key, value, req.start, end))

    def _create_keys(self) -> None:
        leader = self.sim.leader()
        c = _Client(self, -1)
        c.connect(leader.id)
        self.sim.settle()
        c.collect()
        for key in self.keys:
            c.xid += 1
            c.send(_frame(S.RequestHeader(c.xid, OpCode.create),
                          S.CreateRequest(key, b"init", OPEN, 0)))
            self.sim.settle()
            frames = c.frames()
            assert len(frames) == 1 and decode(S.ReplyHeader, frames[0])[0].err == 0, frames

    # -- running ---------------------------------------------------------------------

    def run(self) -> FaultRun:
        rng = self.rng
        for step in range(self.steps):
            self._fault(rng, step)
            for client in self.pool:
                self._act(client, rng)
            self.sim.settle()
            self._collect()
            self.sim.advance(rng.choice((0, 10, 30, 60, 100, 150)))
            self._collect()
        self._heal_all()
        self.sim.wait_for(self.sim.stable, 20_000)
        self._collect()
        self.result = lin.check(self.history, {k: b"init" for k in self.keys})
        return self

    def _act(self, client: _Client, rng: random.Random) -> None:
        if client.member is None:
            down = {f[1] for f in self.active if f[0] == "kill"}
            client.connect(rng.choice([i for i in self.sim.ids if i not in down]))
        elif client.open and not client.inflight and rng.random() < 0.7:
            client.issue(rng)

    def _collect(self) -> None:
        for client in self.pool:
            client.collect()

    # -- faults ----------------------------------------------------------------------

    def _fault(self, rng: random.Random, step: int) -> None:
        """Heal the faults whose time is up; maybe start one (at most
        ``max_faults`` at a time, each for a few hundred ms of simulated time)."""
        for fault in [f for f in self.active if f[2] <= step]:
            self.active.remove(fault)
            self._undo(fault[0], fault[1])
        if len(self.active) >= self.max_faults or rng.random() > self.fault_rate:
            return
        kind = rng.choice(("kill", "pause", "partition", "lag", "lag"))
        sim = self.sim
        a, b = rng.sample(sim.ids, 2)
        busy = {f[1] for f in self.active}
        if a in busy or (a, b) in busy or (b, a) in busy:
            return
        if kind == "kill":
            self.held.pop(a, None)
            sim.crash(a)
            arg: Any = a
        elif kind == "pause":
            sim.pause(a)
            arg = a
        elif kind == "partition":
            sim.break_link(a, b)
            arg = (a, b)
        else:
            sim.paused.add((a, b))
            arg = (a, b)
        self.faults[kind] = self.faults.get(kind, 0) + 1
        self.active.append((kind, arg, step + rng.randint(2, 12)))

    def _undo(self, kind: str, arg: Any) -> None:
        sim = self.sim
        if kind == "kill":
            sim.restart(arg)
        elif kind == "pause":
            held = self.held.pop(arg, [])

            def first() -> None:
                for client, data in held:
                    client.deliver(data)

            sim.resume(arg, first=first)
        elif kind == "partition":
            sim.heal(*arg)
        else:
            sim.paused.discard(arg)
            sim.settle()

    def _heal_all(self) -> None:
        for kind, arg, _ in self.active:
            self._undo(kind, arg)
        self.active = []


def run(seed: int, linear: bool, **kw: Any) -> FaultRun:
    return FaultRun(seed, linear, **kw).run()
