"""Clients writing to a ``PowerSim`` while its power goes, and what they must find after.

``Workload`` keeps a few sessions open on random members (a new session on
another member when a connection dies) and has each one create unique nodes
(``/w/c<client>-<n>``) and delete some it saw created. It counts as
acknowledged only what a client got a successful reply for; ``check`` then
holds every member's tree to it: every acknowledged create is there with its
data (unless a delete of it was sent), no acknowledged delete came back.

``run_seed(seed)`` is the randomized scenario: writes, time passing,
elections, disks held back, partitions, process kills, power cuts of one
member (now, or at its n-th file operation from now: mid-batch, mid-TRUNC,
mid-snapshot, mid-start-up) and of every member at once, restarts; then the
power stays on, every member restarts, the ensemble must settle with every
acknowledged write in every member's tree, all trees alike, no member having
refused to start.
"""

from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass, field
from typing import Any

from zkpy.jute import schema as S
from zkpy.jute.codec import decode, decode_all
from zkpy.jute.protocol import Err, Op
from zkpy.testing.powersim import PowerSim
from zkpy.zab import messages as m

OPEN = [S.ACL(31, S.Id("world", "anyone"))]
_LEN = struct.Struct(">i")
_PORTS = itertools.count(20000)


class SimClient:
    """One connection speaking jute frames to a member's core."""

    def __init__(self, sim: PowerSim, member: int) -> None:
        self.sim = sim
        self.member = member
        self.buf = bytearray()
        self.closed = False
        self.session_id = 0
        self.xid = 0
        self.sent: dict[int, tuple[int, str]] = {}
        core = sim.members[member].core
        self.conn = core.connect("127.0.0.1", next(_PORTS), self._sink, self._close, sim.now)
        self._send(S.ConnectRequest(0, 0, 30000, 0, bytes(16), False).encode())

    def _sink(self, data: bytes) -> None:
        self.buf += data

    def _close(self) -> None:
        self.closed = True

    def _send(self, payload: bytes) -> None:
        core = self.sim.members[self.member].core
        self.conn.receive(_LEN.pack(len(payload)) + payload, self.sim.now)
        core.flush()

    def request(self, op: int, record: Any, path: str) -> None:
        self.xid += 1
        self.sent[self.xid] = (op, path)
        self._send(S.RequestHeader(self.xid, op).encode() + record.encode())

    def call(self, op: int, record: Any, path: str = "") -> int:
        """One request, the ensemble settled, its error code (-1000: no reply:
        the connection died). For scripted scenarios."""
        if not self.session_id:
            self.sim.settle()
            frames = self.frames()
            if not frames or self.closed:
                return -1000
            self.session_id = decode_all(S.ConnectResponse, frames[0]).sessionId
        self.request(op, record, path)
        xid = self.xid
        self.sim.settle()
        for frame in self.frames():
            hdr, _ = decode(S.ReplyHeader, frame)
            if hdr.xid == xid:
                return int(hdr.err)
        return -1000

    def create(self, path: str, data: bytes = b"", ephemeral: bool = False) -> int:
        return self.call(Op.create, S.CreateRequest(path, data, OPEN, int(ephemeral)), path)

    def frames(self) -> list[bytes]:
        out = []
        while len(self.buf) >= 4:
            (n,) = _LEN.unpack_from(self.buf)
            if len(self.buf) < 4 + n:
                break
            out.append(bytes(self.buf[4:4 + n]))
            del self.buf[:4 + n]
        return out


@dataclass
class Workload:
    sim: PowerSim
    clients: int = 3
    conns: dict[int, SimClient] = field(default_factory=dict)
    seq: int = 0
    created: dict[str, bytes] = field(default_factory=dict)  # acknowledged creates
    doomed: set[str] = field(default_factory=set)  # a delete was sent
    deleted: set[str] = field(default_factory=set)  # acknowledged deletes
    errors: dict[int, int] = field(default_factory=dict)
    ready: bool = False

    # -- connections ----------------------------------------------------------------------

    def _connect(self, c: int) -> None:
        sim = self.sim
        up = [i for i in sim.ids if sim.members[i].up and sim.members[i].core.serving]
        if up:
            self.conns[c] = SimClient(sim, sim.rng.choice(up))

    def collect(self) -> None:
        """Read every reply that arrived; forget dead connections."""
        for c, client in list(self.conns.items()):
            for frame in client.frames():
                if not client.session_id:
                    resp = decode_all(S.ConnectResponse, frame)
                    if resp.sessionId == 0:
                        client.closed = True
                        break
                    client.session_id = resp.sessionId
                    continue
                hdr, _ = decode(S.ReplyHeader, frame)
                if hdr.xid < 0:
                    continue  # a watch event or a ping
                op, path = client.sent.pop(hdr.xid)
                self._answered(op, path, hdr.err)
            if client.closed:
                del self.conns[c]

    def _answered(self, op: int, path: str, err: int) -> None:
        if path == "/w" and err in (0, Err.NODEEXISTS):
            self.ready = True  # made by one client or another (its reply may be lost)
        if err:
            self.errors[err] = self.errors.get(err, 0) + 1
            return
        if op == Op.create:
            self.created[path] = path.encode()
        elif op == Op.delete:
            self.deleted.add(path)

    # -- writes ---------------------------------------------------------------------------

    def step(self) -> None:
        """Some clients send a few writes each (connecting first if they must)."""
        sim = self.sim
        for c in range(self.clients):
            if c not in self.conns:
                self._connect(c)
                continue
            client = self.conns[c]
            if not client.session_id or sim.rng.random() < 0.4:
                continue
            for _ in range(sim.rng.randint(1, 4)):
                if not self.ready:
                    client.request(Op.create, S.CreateRequest("/w", b"/w", OPEN, 0), "/w")
                    break
                self._write(client, c)

    def _write(self, client: SimClient, c: int) -> None:
        rng = self.sim.rng
        mine = [p for p in self.created if p.startswith(f"/w/c{c}-") and p not in self.doomed]
        if mine and rng.random() < 0.15:
            path = rng.choice(mine)
            self.doomed.add(path)
            client.request(Op.delete, S.DeleteRequest(path, -1), path)
            return
        self.seq += 1
        path = f"/w/c{c}-{self.seq}"
        client.request(Op.create, S.CreateRequest(path, path.encode(), OPEN, 0), path)

    # -- the check --------------------------------------------------------------------------

    def check(self, members: list[int]) -> None:
        for i in members:
            tree = self.sim.members[i].core.tree
            for path, data in self.created.items():
                node = tree.get(path)
                if path in self.doomed:
                    if path in self.deleted and node is not None:
                        raise AssertionError(f"seed {self.sim.seed}: member {i} has {path}, "
                                             f"whose delete was acknowledged")
                    continue
                if node is None or node.data != data:
                    raise AssertionError(f"seed {self.sim.seed}: member {i} lost the "
                                         f"acknowledged create of {path}")

    def acked(self) -> int:
        return len(self.created) + len(self.deleted)


ACTIONS = ("write",) * 8 + ("advance",) * 3 + ("restart",) * 3 + (
    "hold", "release", "partition", "heal", "kill", "kill-soon", "cut", "cut-soon", "cut-soon",
    "cut-all", "cut-all-soon", "disk-error", "snapshot")


def _chaos(sim: PowerSim, load: Workload, rounds: int) -> None:
    rng = sim.rng
    for _ in range(rounds):
        action = rng.choice(ACTIONS)
        up = [i for i in sim.ids if sim.members[i].up]
        down = [i for i in sim.ids if not sim.members[i].up]
        if action == "write":
            load.step()
        elif action == "advance":
            sim.advance(rng.randint(20, 400))
        elif action == "hold" and up:
            sim.hold(rng.choice(up))
        elif action == "release":
            for i in up:
                if sim.members[i].held:
                    sim.release(i)
        elif action == "partition" and len(sim.ids) > 1:
            a, b = rng.sample(sim.ids, 2)
            sim.break_link(a, b)
        elif action == "heal":
            sim.cut.clear()
        elif action == "kill" and up:
            sim.kill(rng.choice(up))
        elif action == "cut" and up:
            sim.power_cut(rng.choice(up))
        elif action == "cut-soon" and up:
            sim.power_cut_soon(rng.choice(up), rng.randint(1, 12))
        elif action == "kill-soon" and up:
            sim.power_cut_soon(rng.choice(up), rng.randint(1, 12), power=False)
        elif action == "disk-error" and up:
            sim.fail(rng.choice(up), rng.choice(["write", "sync"]))
        elif action == "cut-all":
            sim.count("whole-ensemble cuts")
            for i in up:
                sim._off(i, power=True)
            sim.settle()
        elif action == "cut-all-soon":
            sim.count("whole-ensemble cuts, each member at its n-th file operation")
            for i in sim.ids:
                sim.power_cut_soon(i, rng.randint(1, 12))
        elif action == "restart" and down:
            sim.restart(rng.choice(down))
        elif action == "snapshot" and up:
            i = rng.choice(up)
            if i not in sim.makers:
                sim.start_snapshot(i)
        sim.settle()
        sim.snapshot_work()
        load.step() if rng.random() < 0.3 else None
        sim.settle()
        load.collect()


def settle_all(sim: PowerSim, load: Workload, limit_ms: int = 30_000) -> None:
    """The power stays on: heal, restart everyone, and wait for one stable ensemble."""
    for i in sim.ids:
        sim.fss[i].no_more_faults()
        sim.members[i].held = False
    sim.cut.clear()
    for i in sim.ids:
        if not sim.members[i].up:
            sim.restart(i)
    if sim.refusals:
        raise AssertionError(f"seed {sim.seed}: a member refused to start: {sim.refusals}")
    sim.wait_for(sim.ready, limit_ms)
    load.collect()


@dataclass
class SeedResult:
    seed: int
    size: int
    acked: int
    stats: dict[str, int]


def run_seed(seed: int, size: int | None = None, rounds: int | None = None,
             **kw: Any) -> SeedResult:
    """One randomized run (see the module docstring); raises on what it finds."""
    size = size if size is not None else (1, 3, 3, 5)[seed % 4]
    # A short log window makes leaders sync followers by SNAP, a long one by DIFF.
    kw.setdefault("log_window", (1, 4, 500)[seed // 4 % 3])
    kw.setdefault("separate_logs", seed // 12 % 2 == 1)
    sim = PowerSim(seed, size, standalone=size == 1, **kw)
    load = Workload(sim)
    sim.wait_for(sim.ready)
    while not load.ready:
        load.step()
        sim.settle()
        load.collect()
    _chaos(sim, load, rounds if rounds is not None else sim.rng.randint(20, 60))
    settle_all(sim, load)
    load.check(sim.ids)
    # One more round of writes must go through: the ensemble is live, not just quiet.
    before = load.acked()
    for _ in range(30):
        load.step()
        sim.settle()
        load.collect()
        if load.acked() > before:
            break
        sim.advance(sim.tick_time)
    if load.acked() <= before:
        raise AssertionError(f"seed {seed}: no write went through after the power came back")
    load.check(sim.ids)
    trees = {i: {p: n.data for p, n in sim.members[i].core.tree.nodes.items()} for i in sim.ids}
    if any(t != trees[sim.ids[0]] for t in trees.values()):
        raise AssertionError(f"seed {seed}: the members' trees differ")
    stats = dict(sim.stats)
    for _, _, pkt in sim.delivered:
        if pkt.type in (m.DIFF, m.TRUNC, m.SNAP):
            name = m.TYPE_NAMES[pkt.type]
            stats[name] = stats.get(name, 0) + 1
    for fs in sim.fss.values():
        for key, value in fs.stats.items():
            stats[f"lost {key}"] = stats.get(f"lost {key}", 0) + value
    return SeedResult(seed, size, load.acked(), stats)
