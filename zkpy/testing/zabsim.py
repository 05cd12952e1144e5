"""A Zab ensemble inside one seeded simulation.

``Cluster(seed, size)`` runs ``size`` ``zkpy.zab.peer.Peer`` objects on a
``SimNet``, playing the adapter for each: it carries every Ready out exactly
as ``zkpy.zab.peer`` prescribes, with

- a ``MemDisk`` per peer whose writes become durable after a random delay, in
  order, and of which a crash keeps only what was synced;
- quorum connections that break as TCP does: a fault or a ``disconnect``
  loses what is in flight and both ends are told (``ConnectionLost``), and
  ``send_after_persist`` messages ride the connection they were made for;
- election notifications on separate endpoints (ZooKeeper's election port);
- a "tree" per peer that is simply the list of applied (zxid, txn) pairs, so
  a SNAP's bytes are that list and the checker can compare them;
- about a third of the peers, chosen again at each boot, speaking only
  ZooKeeper's protocol in their hellos (``Peer.features = 0``), so a seed's
  ensemble mixes members that send an ACK and a COMMIT per proposal with
  members that send one per batch (``messages.WATERMARKS``), as a rolling
  upgrade between ZooKeeper and zkpy does.

Every step (a delivery, a tick, a disk sync, a fault) is followed by the
``zkpy.testing.zabcheck.Checker`` hooks, so an invariant fails at the step
that broke it. The randomized scenario (faults, proposals, healing) lives in
``run_seed``; a seed replays exactly.
"""

from __future__ import annotations

import random
import struct
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from zkpy.testing.simnet import SimNet
from zkpy.testing.zabcheck import Checker, Entry
from zkpy.zab import messages as m
from zkpy.zab.driver import Driver, Durable
from zkpy.zab.election import Notification
from zkpy.zab.events import (
    LEADING,
    Append,
    ConnectionLost,
    DiskState,
    Event,
    InstallSnapshot,
    Message,
    PersistOp,
    Propose,
    Ready,
    RoleChange,
    SaveEpoch,
    Start,
    StateSent,
    Tick,
    Truncate,
    Vote,
)
from zkpy.zab.membership import QuorumConfig
from zkpy.zab.peer import Peer

ELECTION = 1000  # election endpoint of peer i is ELECTION + i
_ENTRY = struct.Struct(">qI")


def encode_state(entries: list[Entry]) -> bytes:
    return b"".join(_ENTRY.pack(z, len(t)) + t for z, t in entries)


def decode_state(data: bytes) -> list[Entry]:
    out: list[Entry] = []
    off = 0
    while off < len(data):
        zxid, n = _ENTRY.unpack_from(data, off)
        off += _ENTRY.size
        out.append((zxid, bytes(data[off:off + n])))
        off += n
    return out



def report_leader_progress(check: Any, tree: list[Any], i: int, peer: Any) -> None:
    """Tell the checker what a leader has: proposals a quorum ACKed, and (once)
    the history it established its epoch with: what it applied plus its log."""
    lead = peer.leading
    if lead is None:
        return
    for zxid in lead.outstanding:
        if peer.quorum(lead.ackers(zxid)):
            txn = peer.history.txn(zxid)
            assert txn is not None
            check.on_quorum_acked(zxid, txn)
    if lead.established and not any(seen is lead for seen in check.leaders_reported):
        check.leaders_reported.append(lead)
        history = tree + peer.history.after(tree[-1][0] if tree else 0)
        check.on_established(i, lead.epoch, history)


@dataclass
class _Batch:
    ready_at: int
    ops: list[PersistOp]
    after: list[Durable]  # (dest, packet, connection id)


@dataclass
class MemDisk:
    """What survives a crash: only ops whose batch was synced."""

    accepted: int = 0
    current: int = 0
    snapshot: tuple[int, bytes] = (0, b"")
    log: list[Entry] = field(default_factory=list)
    pending: deque[_Batch] = field(default_factory=deque)

    def apply(self, op: PersistOp) -> None:
        if isinstance(op, SaveEpoch):
            self.accepted = op.accepted if op.accepted is not None else self.accepted
            self.current = op.current if op.current is not None else self.current
        elif isinstance(op, Append):
            assert not self.log or op.zxid > self.log[-1][0], "log out of order"
            self.log.append((op.zxid, op.txn))
        elif isinstance(op, Truncate):
            self.log = [e for e in self.log if e[0] <= op.zxid]
        elif isinstance(op, InstallSnapshot):
            self.snapshot = (op.zxid, op.data)
            self.log = []

    def state(self) -> DiskState:
        return DiskState(self.accepted, self.current, self.snapshot[0], list(self.log))

    def last_zxid(self) -> int:
        return self.log[-1][0] if self.log else self.snapshot[0]


PeerFactory = Callable[..., Peer]


class Cluster:
    def __init__(self, seed: int, size: int, peer_factory: PeerFactory = Peer,
                 log_window: int = 8, disk_delay: int = 100) -> None:
        self.seed = seed
        self.rng = random.Random(seed * 7919 + size)
        self.ids = list(range(1, size + 1))
        self.net = SimNet(seed, self.ids + [ELECTION + i for i in self.ids])
        self.factory = peer_factory
        self.log_window = log_window
        self.disk_delay = disk_delay
        self.check = Checker()
        self.disks = {i: MemDisk() for i in self.ids}
        # Some disks are slow: fsync can take longer than a network round trip.
        self.disk_speed = {i: self.rng.randint(5, disk_delay) for i in self.ids}
        # Its own generator, so the scenario's draws stay what they were.
        self.kinds = random.Random(seed * 104729 + size)
        self.trees: dict[int, list[Entry]] = {i: [] for i in self.ids}
        self.peers: dict[int, Peer] = {}
        self.drivers: dict[int, Driver] = {}
        self.conn: dict[frozenset[int], int] = {}
        self.local: deque[tuple[int, Event]] = deque()
        self.proposed = 0
        self.stats: dict[str, int] = {}
        for i in self.ids:
            self._boot(i)

    # -- peers ---------------------------------------------------------------------------

    def _boot(self, i: int) -> None:
        disk = self.disks[i]
        self.trees[i] = decode_state(disk.snapshot[1])
        self.check.on_restart(i, self.trees[i])
        peer = self.factory(
            i, frozenset(self.ids), disk.state(), lambda i=i: encode_state(self.trees[i]),
            sync_limit=10, init_limit=40, log_window=self.log_window,
            finalize_wait=50, resend_interval=400)
        if self.kinds.random() < 1 / 3:
            peer.features = 0  # hellos as ZooKeeper's: an ACK and a COMMIT per proposal
        self.peers[i] = peer
        self.drivers[i] = Driver(peer, _ClusterLinks(self, i), _ClusterDisk(self, i),
                                 TreeApp(self.check, self.trees, i, peer),
                                 partial(self._after_step, i))
        self.step(i, Start())

    def live(self) -> list[int]:
        return [i for i in self.ids if i not in self.net.down]

    def step(self, i: int, event: Event) -> None:
        """Step peer i (its driver carries the Ready out), then run queued local events."""
        self.local.append((i, event))
        while self.local:
            node, ev = self.local.popleft()
            if node in self.net.down:
                continue
            self.drivers[node].step(ev, self.net.now)

    def _after_step(self, i: int) -> None:
        report_leader_progress(self.check, self.trees[i], i, self.peers[i])

    # -- connections ---------------------------------------------------------------------

    def _conn_id(self, a: int, b: int) -> int:
        return self.conn.get(frozenset((a, b)), 0)

    def _send(self, src: int, dest: int, pkt: m.QuorumPacket) -> None:
        self.stats[m.TYPE_NAMES[pkt.type]] = self.stats.get(m.TYPE_NAMES[pkt.type], 0) + 1
        if dest == src:
            self.local.append((src, Message(src, pkt)))
        else:
            self.net.send(src, dest, pkt)

    def _close(self, a: int, b: int) -> None:
        """``a`` closes its quorum connection to ``b``: in-flight messages die
        and ``b`` learns of it (``a`` knows already)."""
        key = frozenset((a, b))
        self.conn[key] = self.conn.get(key, 0) + 1
        was_cut = (a, b) in self.net.cut
        self.net.break_link(a, b)
        if not was_cut:
            self.net.heal_link(a, b)
        self.local.append((b, ConnectionLost(a)))

    # -- the simulated world ----------------------------------------------------------------

    def _deliver(self, src: int, dst: int, payload: Any) -> None:
        if dst >= ELECTION:
            self.step(dst - ELECTION, Vote(src - ELECTION, payload))
        else:
            self.step(dst, Message(src, payload))

    def _tick(self, node: int) -> None:
        if node >= ELECTION:
            return
        self._sync_disk(node)
        self.step(node, Tick())
        if self.proposing and self.rng.random() < self.propose_rate:
            self.propose_via(node)

    def _sync_disk(self, i: int) -> None:
        disk = self.disks[i]
        after: list[Durable] = []
        synced = False
        while disk.pending and disk.pending[0].ready_at <= self.net.now:
            batch = disk.pending.popleft()
            for op in batch.ops:
                disk.apply(op)
            after.extend(batch.after)
            synced = True
        if synced:
            self.drivers[i].persisted(after, disk.last_zxid(), self.net.now)
            self._drain()

    proposing = True
    propose_rate = 0.08

    def propose_via(self, node: int) -> None:
        """A client write arriving at ``node``, handed to the leader it follows."""
        target = self.peers[node].leader_id
        if target is None or target in self.net.down or not self.peers[target].can_propose:
            return
        self.proposed += 1
        self.step(target, Propose(f"s{self.seed}-t{self.proposed}".encode()))

    def run(self, until: int) -> None:
        self.net.run_until(until, self._deliver, self._tick)

    # -- faults ------------------------------------------------------------------------------

    def break_link(self, a: int, b: int) -> None:
        """Cut a and b apart; both see their quorum connection drop."""
        self.local.append((a, ConnectionLost(b)))
        self._close(a, b)
        self.net.break_link(a, b)
        self.net.break_link(ELECTION + a, ELECTION + b)
        self._drain()

    def partition(self, side: set[int]) -> None:
        for a in side:
            for b in self.ids:
                if b not in side:
                    self.break_link(a, b)

    def heal(self) -> None:
        self.net.heal_all()

    def crash(self, i: int) -> None:
        self.net.crash(i)
        self.net.crash(ELECTION + i)
        lost = sum(len(b.ops) for b in self.disks[i].pending)
        self.stats["lost-ops"] = self.stats.get("lost-ops", 0) + lost
        self.disks[i].pending.clear()
        for other in self.ids:
            if other != i:
                key = frozenset((i, other))
                self.conn[key] = self.conn.get(key, 0) + 1
                self.local.append((other, ConnectionLost(i)))
        self._drain()

    def restart(self, i: int) -> None:
        self.net.restart(i)
        self.net.restart(ELECTION + i)
        self._boot(i)

    def snapshot(self, i: int) -> None:
        """The adapter's periodic snapshot (snapCount): the tree, at once durable."""
        tree = self.trees[i]
        if tree:
            self.disks[i].snapshot = (tree[-1][0], encode_state(tree))

    def _drain(self) -> None:
        while self.local:
            node, ev = self.local.popleft()
            self.step(node, ev)

    # -- observing -----------------------------------------------------------------------------

    def settled(self) -> bool:
        live = self.live()
        leaders = [i for i in live if self.peers[i].can_propose]
        if len(leaders) != 1:
            return False
        lead = self.peers[leaders[0]]
        for i in live:
            f = self.peers[i].following
            if i != leaders[0] and (f is None or f.phase != "broadcast" or f.leader != leaders[0]):
                return False
        return all(self.peers[i].applied == lead.applied for i in live)

    def roles(self) -> dict[int, str]:
        names = {0: "looking", 1: "following", 2: "leading"}
        out = {}
        for i in self.ids:
            if i in self.net.down:
                out[i] = "down"
            else:
                p = self.peers[i]
                tag = "*" if p.role == LEADING and p.can_propose else ""
                out[i] = names[p.role] + tag
        return out


def with_state(pkt: m.QuorumPacket, peer: Peer) -> m.QuorumPacket:
    """A SNAP without data carries the sender's state once it leaves (Links.send)."""
    if pkt.type == m.SNAP and pkt.data is None:
        return m.QuorumPacket(m.SNAP, pkt.zxid, peer.snapshot_source(), None)
    return pkt


class TreeApp:
    """A simulated peer's application: its "tree" is the list of applied (zxid,
    txn) pairs (``trees[i]``), and every install and commit is shown to the checker."""

    def __init__(self, check: Checker, trees: dict[int, list[Entry]], i: int,
                 peer: Peer) -> None:
        self.check = check
        self.trees = trees
        self.i = i
        self.peer = peer

    def on_roles(self, changes: list[RoleChange]) -> None:
        pass

    def on_ready(self, ready: Ready) -> None:
        i = self.i
        for zxid, data in ready.install:
            self.trees[i] = decode_state(data)
            assert self.trees[i][-1:] == [] or self.trees[i][-1][0] == zxid
            self.check.on_install(i, self.trees[i])
        for zxid, txn in ready.commit:
            if self.peer.leading is not None:
                self.check.on_quorum_acked(zxid, txn)  # a leader commits on a quorum
            self.check.on_commit(i, zxid, txn)
            self.trees[i].append((zxid, txn))


class _ClusterLinks:
    """Peer ``i``'s connections: the SimNet, with a connection id per pair."""

    def __init__(self, c: Cluster, i: int) -> None:
        self.c = c
        self.i = i

    def send(self, dest: int, pkt: m.QuorumPacket, token: Hashable | None = None) -> None:
        if token is None or token == self.token(dest):
            self.c._send(self.i, dest, with_state(pkt, self.c.peers[self.i]))
            if pkt.type == m.SNAP and pkt.data is None:  # the state left with it
                self.c.local.append((self.i, StateSent(dest)))

    def token(self, dest: int) -> Hashable | None:
        return self.c._conn_id(self.i, dest)

    def flush(self) -> None:
        pass  # (the sim's queues deliver each packet as it is sent)

    def disconnect(self, dest: int, why: str = "") -> None:
        self.c._close(self.i, dest)

    def vote(self, dest: int, notification: Notification) -> None:
        self.c.net.send(ELECTION + self.i, ELECTION + dest, notification)

    def configure(self, config: QuorumConfig) -> None:
        pass


class _ClusterDisk:
    """Peer ``i``'s disk: a batch becomes durable after a random delay, in order."""

    def __init__(self, c: Cluster, i: int) -> None:
        self.c = c
        self.i = i

    def submit(self, ops: list[PersistOp], after: list[Durable]) -> None:
        c = self.c
        at = c.net.now + c.rng.randint(0, c.disk_speed[self.i])
        c.disks[self.i].pending.append(_Batch(at, list(ops), after))


# -- the randomized scenario -----------------------------------------------------------------


@dataclass
class SeedResult:
    seed: int
    size: int
    proposed: int
    committed: int
    established: int
    sim_ms: int
    stats: dict[str, int]


def _chaos(c: Cluster, rounds: int) -> None:
    rng = c.rng
    for _ in range(rounds):
        c.run(c.net.now + rng.randint(10, 300))
        action = rng.choice(["cut", "cut", "partition", "crash", "crash", "crash-many",
                             "outage", "restart", "restart", "restart", "heal", "snapshot",
                             "nothing"])
        live = c.live()
        down = [i for i in c.ids if i in c.net.down]
        if action == "cut":
            a, b = rng.sample(c.ids, 2)
            c.break_link(a, b)
        elif action == "partition":
            c.partition(set(rng.sample(c.ids, rng.randint(1, len(c.ids) // 2))))
        elif action == "crash" and live:
            c.crash(rng.choice(live))
        elif action == "crash-many" and live:
            for i in rng.sample(live, rng.randint(1, len(live))):
                c.crash(i)
        elif action == "outage":  # a power cut: every disk keeps only what it synced
            for i in live:
                c.crash(i)
        elif action == "restart" and down:
            c.restart(rng.choice(down))
        elif action == "heal":
            c.heal()
        elif action == "snapshot" and live:
            c.snapshot(rng.choice(live))


def heal_and_settle(c: Cluster, limit_ms: int = 20_000) -> None:
    """Heal the network, restart every crashed peer, run until one leader
    leads everyone and every peer applied the same txns; then check it."""
    c.heal()
    for i in c.ids:
        if i in c.net.down:
            c.restart(i)
    c.proposing = False
    deadline = c.net.now + limit_ms
    while not c.settled() and c.net.now < deadline:
        c.run(c.net.now + 100)
    if not c.settled():
        raise AssertionError(f"seed {c.seed}: no progress after healing: {c.roles()}")
    # One more write must reach everyone: the ensemble is live, not just quiet.
    leader = next(i for i in c.ids if c.peers[i].can_propose)
    last = c.peers[leader].next_zxid
    c.propose_via(leader)
    end = c.net.now + 2_000
    while c.net.now < end and not all(c.trees[i][-1:] and c.trees[i][-1][0] == last
                                      for i in c.ids):
        c.run(c.net.now + 50)
    if not all(c.trees[i][-1:] and c.trees[i][-1][0] == last for i in c.ids):
        raise AssertionError(f"seed {c.seed}: a write after healing did not reach everyone")
    c.check.check_converged(c.ids)


def run_seed(seed: int, size: int | None = None, peer_factory: PeerFactory = Peer,
             rounds: int | None = None) -> SeedResult:
    """One randomized run: chaos with client writes, then heal and settle."""
    size = size if size is not None else (3 if seed % 2 == 0 else 5)
    c = Cluster(seed, size, peer_factory)
    _chaos(c, rounds if rounds is not None else c.rng.randint(5, 30))
    heal_and_settle(c)
    return SeedResult(seed, size, c.proposed, len(c.check.global_seq),
                      len(c.check.established), c.net.now, c.stats)
