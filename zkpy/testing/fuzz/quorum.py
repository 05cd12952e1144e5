"""Fuzz targets for the quorum and election ports: hostile connections into a
deterministic ensemble, through the real adapters.

``HostileWorld`` is a ``zkpy.testing.replicasim.Sim`` (three members, each a
ServerCore + Peer + Replica) in which every member also listens through the
production adapters (``zkpy.net.peerlinks``: ``QuorumLinks`` and
``ElectionLinks`` on Twisted's in-memory transports). A hostile connection's
bytes go through exactly the code a socket's would: SASL, framing, the SNAP
stream reader, packet splitting, then the member's Zab step. What a member
sends back, or drops, goes to that connection.

An input: byte 0 picks the scenario, byte 1 how the rest is cut into reads
(0: one read), the rest is what the hostile side sends.

Quorum target (``QuorumTarget``):
    0  a learner connects to the leader's quorum port
    1  ... to a follower's quorum port
    2  ... to the leader, with quorum SASL on (plain learners still taken)
    3  the leader's side of a follower's connection: LEADERINFO, the sync
       (DIFF, TRUNC or a streamed SNAP), NEWLEADER, UPTODATE, then broadcast
Election target (``ElectionTarget``):
    0  a server connects to a member's election port (the ensemble is settled)
    1  ... while the members are still electing

The contract, checked after each input: nothing raised out of an adapter or
a member; once the hostile connection is closed, no member keeps anything
about it (learners, early FOLLOWERINFOs, ACK watermarks, election addresses
and held votes) and the ensemble is serving again: one leader, everyone
synced, and a client's create, read and delete on the leader commit. In
scenario 3 the follower may accept what a leader tells it (a leader is
trusted), but never crashes on it, and everything it persisted (snapshot,
log, epochs) loads again.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from zkpy.auth.quorum_sasl import QuorumSasl
from zkpy.jute import schema as S
from zkpy.jute.codec import decode
from zkpy.jute.protocol import Op
from zkpy.net import heap
from zkpy.net.peerlinks import ElectionLinks, QuorumLinks
from zkpy.storage.formats import decode_entry
from zkpy.storage.snapshot import SnapshotMaker, parse_snapshot
from zkpy.testing.digestcheck import DigestWitness
from zkpy.testing.fuzz.client import OPEN_ACL, ContractViolation, split_frames
from zkpy.testing.fuzz.clientwire import framed, handshake
from zkpy.testing.fuzz.quorumwire import MEMBERS
from zkpy.testing.replicasim import Sim
from zkpy.zab import events as ev
from zkpy.zab import messages as m
from zkpy.zab import wire
from zkpy.zab.election import FOLLOWING, LEADING, Notification

RECOVERY_MS = 20_000


class HostileWorld(Sim):
    """A Sim whose members also face connections from outside the ensemble."""

    def __init__(self, down: tuple[int, ...] = (), auth: QuorumSasl | None = None) -> None:
        self.reactor = MemoryReactorClock()
        self.fronts: dict[int, tuple[QuorumLinks, ElectionLinks]] = {}
        self._auth = auth
        super().__init__(3, down=down)

    def _open(self, a: int, b: int) -> bool:
        return a in self.members and b in self.members and super()._open(a, b)

    def step(self, i: int, event: ev.Event) -> None:
        if i in self.members:
            super().step(i, event)

    def _boot(self, i: int) -> None:
        super()._boot(i)
        quorum = QuorumLinks(self.reactor, i, {}, lambda sid, pkts: self._packets(i, sid, pkts),
                             lambda sid: self.step(i, ev.ConnectionLost(sid)),
                             snapshot_maker=lambda: self._snapshot_maker(i))
        addresses = {j: ("127.0.0.1", 3000 + j) for j in self.ids}
        election = ElectionLinks(self.reactor, i, dict(addresses),
                                 lambda sid, n, cfg: self.step(i, ev.Vote(sid, n, cfg)))
        quorum.auth = election.auth = self._auth
        quorum.on_state_sent = lambda sid: self.step(i, ev.StateSent(sid))  # as a member's
        self.fronts[i] = (quorum, election)
        driver = self.members[i].replica.driver
        driver.links = _SplitLinks(driver.links, quorum, election)

    def settle(self, limit: int = 100_000) -> None:
        super().settle(limit)
        # A leader's SNAP to an outsider is walked a slice per reactor turn
        # (peerlinks: _stream_state): run the turns due now, as a reactor would.
        while self._due():
            self.reactor.advance(0)
            super().settle(limit)

    def _due(self) -> bool:
        calls: list[Any] = list(self.reactor.getDelayedCalls())
        return any(call.getTime() <= self.reactor.seconds() for call in calls)

    def _snapshot_maker(self, i: int) -> SnapshotMaker:
        core = self.members[i].core
        return SnapshotMaker(core.tree, core.session_timeouts())

    def _packets(self, i: int, sid: int, pkts: list[m.QuorumPacket]) -> None:
        self.step(i, ev.Messages(sid, pkts) if len(pkts) > 1 else ev.Message(sid, pkts[0]))


class _SplitLinks:
    """A member's links: its connections to outsiders through the adapters,
    to the other members through the sim's queues."""

    def __init__(self, sim_links: Any, quorum: QuorumLinks, election: ElectionLinks) -> None:
        self.sim = sim_links
        self.quorum = quorum
        self.election = election
        self.outside: set[int] = set()  # members reached through the adapters, not the sim

    def send(self, dest: int, pkt: m.QuorumPacket, token: Hashable | None = None) -> None:
        if dest in self.outside or self.quorum.token(dest) is not None:
            self.quorum.send(dest, pkt, token)
        else:
            self.sim.send(dest, pkt, token)

    def token(self, dest: int) -> Hashable | None:
        token: Hashable | None = self.quorum.token(dest)
        return token if token is not None else self.sim.token(dest)

    def flush(self) -> None:
        self.quorum.flush()
        self.sim.flush()

    def disconnect(self, dest: int, why: str = "") -> None:
        if self.quorum.token(dest) is not None:
            self.quorum.disconnect(dest)
        else:
            self.sim.disconnect(dest, why)

    def vote(self, dest: int, notification: Notification) -> None:
        if dest in self.election.conns:
            self.election.send(dest, notification)
        else:
            self.sim.vote(dest, notification)

    def configure(self, config: Any) -> None:
        self.sim.configure(config)


def _feed(proto: Any, world: HostileWorld, data: bytes, cut: int) -> None:
    step = len(data) if cut == 0 else cut * 3
    for at in range(0, len(data), max(step, 1)):
        if proto.transport.disconnecting or getattr(proto, "closed", False):
            break
        proto.dataReceived(data[at:at + step])
        world.settle()


def _close(proto: Any, world: HostileWorld) -> None:
    """The hostile side goes away; the connections the members dialled because of
    it find nobody listening (the harness has no other servers)."""
    proto.connectionLost(None)
    dials, world.reactor.tcpClients = world.reactor.tcpClients, []
    for dial in dials:
        factory: Any = dial[2]
        if isinstance(getattr(factory, "links", None), ElectionLinks):
            factory.clientConnectionFailed(None, Failure(ConnectionRefusedError()))
    world.settle()


def _connect(factory: Any) -> Any:
    proto = factory.buildProtocol(None)
    proto.makeConnection(_Transport())
    return proto


class _Transport(StringTransport):
    def setTcpNoDelay(self, enabled: bool) -> None:
        pass

    def abortConnection(self) -> None:
        self.loseConnection()


# -- after each input ----------------------------------------------------------------------


def recovered(world: HostileWorld) -> None:
    """The ensemble serves again, and a write through the leader commits everywhere."""
    for i in MEMBERS:
        if not world.members[i].up:
            world.restart(i)
    try:
        leader = world.wait_stable(RECOVERY_MS)
    except AssertionError as e:
        raise ContractViolation(f"the ensemble did not recover: {e}") from None
    probe(world, leader)


def probe(world: HostileWorld, leader: Any) -> None:
    """A client's session, create, read and delete through ``leader`` commit."""
    core = leader.core
    out = bytearray()
    conn = core.connect("127.0.0.1", 1, out.extend, lambda: None, world.now)
    conn.receive(handshake(), world.now)
    core.flush()
    world.settle()
    path = "/probe"
    conn.receive(framed(S.RequestHeader(1, Op.create).encode()
                        + S.CreateRequest(path, b"ok", OPEN_ACL, 0).encode())
                 + framed(S.RequestHeader(2, Op.getData).encode()
                          + S.GetDataRequest(path, False).encode())
                 + framed(S.RequestHeader(3, Op.delete).encode()
                          + S.DeleteRequest(path, -1).encode()), world.now)
    core.flush()
    world.settle()
    replies = [decode(S.ReplyHeader, f)[0] for f in split_frames(out)[1:]]
    if [(h.xid, h.err) for h in replies] != [(1, 0), (2, 0), (3, 0)]:
        raise ContractViolation(f"the leader does not serve: {replies}")
    conn.lost()
    core.flush()


def _roles(world: HostileWorld) -> list[tuple[int, int, int | None, int]]:
    return [(i, mb.replica.role, mb.replica.leader, mb.replica.role_changes)
            for i, mb in sorted(world.members.items())]


def unmoved(world: HostileWorld, before: list[tuple[int, int, int | None, int]],
            sid: int) -> None:
    """An outsider's connection changed no member's role: "nothing else"."""
    if sid in MEMBERS:
        return  # one posing as a member may cost that member its connection
    after = _roles(world)
    if after != before:
        raise ContractViolation(f"outsider {sid} moved the ensemble: {before} -> {after}")


def forgotten(world: HostileWorld, sid: int) -> None:
    """No member keeps state for the outsider ``sid`` once its connection closed."""
    if sid in MEMBERS:
        return
    for i, member in world.members.items():
        peer = member.peer
        quorum, election = world.fronts[i]
        kept = []
        if peer.leading is not None:
            if sid in peer.leading.learners:
                kept.append("a learner")
            if sid in peer.leading.acked:
                kept.append("an ACK watermark")
        if sid in peer._early:
            kept.append("an early FOLLOWERINFO")
        if sid in quorum.conns or sid in quorum.outbound:
            kept.append("a quorum connection")
        if (sid in election.peers or sid in election.held or sid in election.conns
                or sid in election.returning):
            kept.append("an election address, held vote or connection")
        if kept:
            raise ContractViolation(f"member {i} keeps {', '.join(kept)} of outsider {sid}")


def loads_again(world: HostileWorld, i: int) -> None:
    """What member ``i`` persisted can be read back (snapshot, log, epochs)."""
    disk = world.disks[i]
    zxid, data = disk.snapshot
    if data:
        parse_snapshot(data, zxid, trailer=False)
    for zxid, txn in disk.log:
        try:
            decode_entry(txn)
        except Exception as e:
            raise ContractViolation(f"member {i} logged txn 0x{zxid:x} that does not "
                                    f"decode: {e}") from e
    for epoch in (disk.accepted, disk.current):
        if not 0 <= epoch <= m.MAX_EPOCH:
            raise ContractViolation(f"member {i} saved epoch {epoch}")


# -- the targets -----------------------------------------------------------------------------


def _sid_of(data: bytes) -> int:
    """The sid a stream opening with FOLLOWERINFO names (None: no valid one)."""
    try:
        found = m.split_packet(data)
        return m.learner_id(found[0]) if found else -1
    except Exception:
        return -1


class QuorumTarget:
    def run(self, data: bytes) -> None:
        scenario = data[0] % 4 if data else 0
        cut = data[1] if len(data) > 1 else 0
        stream = data[2:]
        if scenario == 3:
            return self._from_leader(stream, cut)
        auth = QuorumSasl(True, False, False, {"learner": "secret"}) if scenario == 2 else None
        world = HostileWorld(auth=auth)
        leader = world.wait_stable()
        probe(world, leader)  # a history in this epoch: DIFF, TRUNC and SNAP all happen
        target = leader.id if scenario != 1 else world.followers()[0].id
        before = _roles(world)
        proto = _connect(world.fronts[target][0])
        _feed(proto, world, stream, cut)
        sid = proto.sid if proto.sid is not None else _sid_of(stream)
        _close(proto, world)
        unmoved(world, before, sid)
        recovered(world)
        forgotten(world, sid)
        return None

    def _from_leader(self, stream: bytes, cut: int) -> None:
        world, proto = follower_of_outsider()
        _feed(proto, world, stream, cut)
        for _ in range(3):
            world.advance(world.tick_time)
        loads_again(world, 1)
        _close(proto, world)
        if heap._holds:
            # A SNAP stream cut short keeps the collector off only while its
            # connection lasts (zkpy.net.heap).
            raise ContractViolation(f"the collector stays held ({heap._holds}) after the "
                                    "leader's connection closed")


def follower_of_outsider() -> tuple[HostileWorld, Any]:
    """Member 1 of a world whose 2 and 3 are down, told by their votes that 3
    leads: it connects to 3's quorum port (the adapters' way) and sends
    FOLLOWERINFO; the connection's other end is ours to play."""
    world = HostileWorld(down=(2, 3))
    # The leader we play is trusted, as a leader is: the trees it hands member 1
    # (a SNAP named for any zxid, digests of its choosing) are no history the
    # ensemble shares, so the sim's digest witness only records, and the
    # follower's own check counts mismatches (mntr), as ZooKeeper's does.
    world.digests = DigestWitness(strict=False)
    quorum = world.fronts[1][0]
    quorum.peers[3] = ("127.0.0.1", 5003)
    links = world.members[1].replica.driver.links
    assert isinstance(links, _SplitLinks)
    links.outside.add(3)
    world.step(1, ev.Vote(3, Notification(3, LEADING, 3, 0, 1, 0)))
    world.step(1, ev.Vote(2, Notification(2, FOLLOWING, 3, 0, 1, 0)))
    world.settle()
    if world.members[1].peer.following is None or not world.reactor.tcpClients:
        raise ContractViolation("member 1 does not follow server 3")
    factory: Any = world.reactor.tcpClients[-1][2]
    proto = _connect(factory)
    sent = proto.transport.value()
    first = m.split_packet(sent)
    if first is None or first[0].type != m.FOLLOWERINFO:
        raise ContractViolation(f"member 1 did not open with FOLLOWERINFO: {sent!r}")
    return world, proto


def _initial_sid(data: bytes) -> int | None:
    """The sid an election connection's initial message names (None: no valid one)."""
    try:
        found = wire.split_initial_message(data)
    except wire.WireError:
        return None
    return found[0].sid if found is not None else None


class ElectionTarget:
    def run(self, data: bytes) -> None:
        scenario = data[0] % 2 if data else 0
        cut = data[1] if len(data) > 1 else 0
        world = HostileWorld(down=(3,) if scenario == 1 else ())
        if scenario == 0:
            world.wait_stable()
        before = _roles(world)
        proto = _connect(world.fronts[1 if scenario else 2][1])
        _feed(proto, world, data[2:], cut)
        sid = _initial_sid(data[2:])
        _close(proto, world)
        if scenario == 0:
            unmoved(world, before, sid if sid is not None else -1)
        recovered(world)
        if sid is not None:
            forgotten(world, sid)
