"""Ensemble members (``zkpy.server.replica.Replica``) in one deterministic, in-memory world.

``Sim(size)`` plays ``zkpy.net.member.MemberServer`` for each member (a
``ServerCore`` + ``Peer`` + ``Replica``), carrying its Ready out as
``zkpy.zab.peer`` prescribes: quorum packets on one FIFO queue per (src, dst)
(a ``disconnect``, cut or crash empties both directions, bumps the connection
token and tells the other end ``ConnectionLost``); votes on their own queues;
persist ops in batches that a member's disk syncs while the world settles
(unless ``held``), then the batches' ``send_after_persist`` (only on the
connection they were made for; to self stepped back at once), then
``Persisted``; ``zkpy.testing.zabsim.MemDisk`` keeps what was synced, all a
restart sees. A fake clock (ms): ``advance`` steps ``Tick`` (and the session
ticker ``core.tick``) every tick and ``Wake`` at election deadlines.

No sleeping, threads or sockets; the same calls replay exactly. It decides
nothing about what a test expects, but for one invariant: after every step the
stepped member's tree digest must equal every other member's at the same zxid
(``self.digests``, a ``zkpy.testing.digestcheck.DigestWitness``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

from zkpy.server.core import CoreSettings, ServerCore
from zkpy.server.replica import Replica
from zkpy.storage.snapshot import parse_snapshot
from zkpy.testing.digestcheck import DigestWitness
from zkpy.testing.zabsim import MemDisk, with_state
from zkpy.zab import events as ev
from zkpy.zab import messages as m
from zkpy.zab.driver import Durable
from zkpy.zab.election import Notification
from zkpy.zab.membership import QuorumConfig
from zkpy.zab.peer import Peer

T0 = 1_700_000_000_000


@dataclass
class Member:
    id: int
    core: ServerCore
    peer: Peer
    replica: Replica
    pending: list[tuple[list[ev.PersistOp], list[Durable]]] = field(default_factory=list)
    up: bool = True
    held: bool = False  # the disk does not sync until released


class Sim:
    def __init__(self, size: int = 3, *, tick_time: int = 100, sync_limit: int = 5,
                 init_limit: int = 10, log_window: int = 500, now: int = T0,
                 configs: dict[int, QuorumConfig] | None = None, down: Iterable[int] = (),
                 settings: dict[str, Any] | None = None) -> None:
        # ``configs``: each member's own membership (as its zoo.cfg would give it);
        # the sim keeps the newest one a member activated, as its dynamic config
        # file would, for restarts. ``down``: members that start powered off.
        self.configs = dict(configs or {})
        self.settings = dict(settings or {})
        self.ids = sorted(self.configs) if self.configs else list(range(1, size + 1))
        self.now = now
        self.tick_time = tick_time
        self.next_tick = now + tick_time
        self.peer_args: dict[str, Any] = {"sync_limit": sync_limit, "init_limit": init_limit,
                                          "log_window": log_window}
        self.links: dict[tuple[int, int], deque[m.QuorumPacket]] = {}
        self.ballots: dict[tuple[int, int], deque[tuple[Notification, bytes]]] = {}
        self.tokens: dict[frozenset[int], int] = {}
        self.cut: set[frozenset[int]] = set()
        self.paused: set[tuple[int, int]] = set()  # links whose packets wait for ``deliver``
        # Members whose process is stopped (``pause``): the events they would
        # step wait here, in order, until ``resume``.
        self.stopped: dict[int, list[ev.Event]] = {}
        self.local: deque[tuple[int, ev.Event]] = deque()
        self.delivered: list[tuple[int, int, m.QuorumPacket]] = []  # quorum packets, in order
        # ``settle`` hands over everything waiting on a link as one Messages, as
        # zkpy.net.peerlinks steps one read (else one Message per packet).
        self.batch_reads = False
        self.digests = DigestWitness()
        self.disks = {i: MemDisk() for i in self.ids}
        self.members: dict[int, Member] = {}
        for i in self.ids:
            self._boot(i)
            self.members[i].up = i not in down
        for i in self.ids:
            self.step(i, ev.Start())
        self.settle()

    # -- members ---------------------------------------------------------------------------

    def _boot(self, i: int) -> None:
        disk = self.disks[i]
        core = ServerCore(CoreSettings(server_id=i, tick_time=self.tick_time, **self.settings),
                          self.now)
        zxid, data = disk.snapshot
        if data:
            tree, sessions = parse_snapshot(data, zxid)
            core.restore(tree, sessions, self.now)
        config = self.configs.get(i)
        peer = Peer(i, frozenset(self.ids), disk.state(), config=config, **self.peer_args)
        if config is not None:
            core.set_config(config.text(), config.version)
        replica = Replica(core, peer, _SimLinks(self, i), _SimDisk(self, i))
        self.members[i] = Member(i, core, peer, replica)

    def step(self, i: int, event: ev.Event) -> None:
        member = self.members[i]
        if i in self.stopped and member.up:
            self.stopped[i].append(event)
        elif member.up:
            member.replica.step(event, self.now)
            self.digests.see(i, member.core.tree)

    def crash(self, i: int) -> None:
        """Power off ``i``: its unsynced disk batches, queues and client connections die."""
        member = self.members[i]
        member.up = False
        member.pending.clear()
        self.stopped.pop(i, None)
        for other in self.ids:
            if other != i:
                self._drop_link(i, other)
                self.local.append((other, ev.ConnectionLost(i)))
        for conn in list(member.core.connections.values()):
            conn.closer()
        self.settle()

    def restart(self, i: int) -> None:
        """Start ``i`` again from what its disk synced (tree: the snapshot, if any)."""
        assert not self.members[i].up, f"member {i} is running"
        self._boot(i)
        self.step(i, ev.Start())
        self.settle()

    def pause(self, i: int) -> None:
        """Stop ``i``'s process (SIGSTOP): no ticks, timers, disk syncs or steps;
        what reaches it waits (its connections stay open, as TCP's do)."""
        self.stopped.setdefault(i, [])

    def resume(self, i: int, first: Callable[[], None] | None = None) -> None:
        """Continue ``i``: ``first`` runs before anything that waited (say, a
        client request its socket held), then the waiting events, in order."""
        events = self.stopped.pop(i, [])
        if first is not None:
            first()
        self.local.extendleft((i, e) for e in reversed(events))
        self.settle()

    def hold(self, i: int) -> None:
        self.members[i].held = True

    def release(self, i: int) -> None:
        self.members[i].held = False
        self.sync(i)
        self.settle()

    # -- what the members' links and disks do ---------------------------------------------

    def _open(self, a: int, b: int) -> bool:
        return frozenset((a, b)) not in self.cut and self.members[b].up and self.members[a].up

    def _send(self, i: int, d: int, pkt: m.QuorumPacket) -> None:
        if d == i:
            self.local.append((i, ev.Message(i, pkt)))
        elif self._open(i, d):
            self.links.setdefault((i, d), deque()).append(pkt)

    def _drop_link(self, a: int, b: int, votes: bool = True) -> None:
        """Close the quorum connection a-b (and, unless ``votes`` is False, lose
        the election notifications on their way: a crash or a cut)."""
        key = frozenset((a, b))
        self.tokens[key] = self.tokens.get(key, 0) + 1
        for link in ((a, b), (b, a)):
            self.links.pop(link, None)
            if votes:
                self.ballots.pop(link, None)

    def sync(self, i: int) -> None:
        """The disk of ``i`` syncs everything handed to it so far (as QuorumDisk._written)."""
        member = self.members[i]
        if not member.pending or not member.up:
            return
        batches, member.pending = member.pending, []
        disk = self.disks[i]
        for op in (op for ops, _ in batches for op in ops):
            disk.apply(op)
        after = [send for _, sends in batches for send in sends]
        member.replica.persisted(after, disk.last_zxid(), self.now)
        self.digests.see(i, member.core.tree)  # a leader commits on its own Persisted

    # -- faults --------------------------------------------------------------------------------

    def break_link(self, a: int, b: int) -> None:
        """Cut ``a`` from ``b`` (quorum and election) until ``heal``; both ends are told."""
        self.cut.add(frozenset((a, b)))
        self._drop_link(a, b)
        self.local.append((a, ev.ConnectionLost(b)))
        self.local.append((b, ev.ConnectionLost(a)))
        self.settle()

    def heal(self, a: int, b: int) -> None:
        self.cut.discard(frozenset((a, b)))

    # -- running ---------------------------------------------------------------------------------

    def deliver(self, src: int, dst: int) -> m.QuorumPacket:
        """Deliver the next packet on the link src -> dst (even a paused one), and only that."""
        pkt = self.links[(src, dst)].popleft()
        self.delivered.append((src, dst, pkt))
        self.step(dst, ev.Message(src, pkt))
        self._run_local()
        return pkt

    def deliver_read(self, src: int, dst: int) -> list[m.QuorumPacket]:
        """Deliver everything waiting on the link src -> dst as one read (Messages)."""
        link = self.links[(src, dst)]
        packets = list(link)
        link.clear()
        self.delivered.extend((src, dst, pkt) for pkt in packets)
        self.step(dst, ev.Messages(src, packets))
        self._run_local()
        return packets

    def _run_local(self) -> None:
        while self.local:
            i, event = self.local.popleft()
            self.step(i, event)

    def settle(self, limit: int = 100_000) -> None:
        """Deliver (but on ``paused`` links), step and sync (unheld disks) until nothing
        moves; time stands still."""
        for _ in range(limit):
            self._run_local()
            moved = False
            for i in self.ids:
                member = self.members[i]
                if member.pending and member.up and not member.held and i not in self.stopped:
                    self.sync(i)
                    moved = True
            for link in sorted(self.links):  # a delivery may drop links: look each up again
                if self.links.get(link) and link not in self.paused and link[1] not in self.stopped:
                    if self.batch_reads:
                        self.deliver_read(*link)
                    else:
                        self.deliver(*link)
                    moved = True
            for src, dst in sorted(self.ballots):
                if notes := self.ballots.get((src, dst)):
                    self.step(dst, ev.Vote(src, *notes.popleft()))
                    moved = True
            if not moved and not self.local:
                return
        raise AssertionError(f"the ensemble did not settle in {limit} rounds")

    def _timer(self, member: Member) -> int | None:
        """When a looking member's election (or read-only mode) wants a Wake
        (MemberServer._arm_election_timer)."""
        if not member.up or member.peer.role != ev.LOOKING or member.id in self.stopped:
            return None
        times = [t for t in (member.peer.election.next_deadline(),
                             member.replica.read_only.due()) if t is not None]
        return min(times) if times else None

    def advance(self, ms: int) -> None:
        """Let ``ms`` of time pass: ticks (with the session ticker), election timers."""
        end = self.now + ms
        while True:
            timers = {i: t for i, mb in self.members.items() if (t := self._timer(mb)) is not None}
            at = min([self.next_tick, *(max(t, self.now) for t in timers.values())])
            if at > end:
                break
            self.now = at
            for i, t in timers.items():
                if t <= at:
                    self.step(i, ev.Wake())
            self.settle()
            if at >= self.next_tick:
                self.next_tick += self.tick_time
                for member in list(self.members.values()):
                    if member.up and member.id not in self.stopped:
                        self.step(member.id, ev.Tick())
                        member.core.tick(self.now)
                self.settle()
        self.now = end

    def stable(self) -> bool:
        """One established leader and every running member following (or
        observing) it, synced."""
        up = [mb for mb in self.members.values() if mb.up]
        leaders = [mb for mb in up if mb.replica.mode == "leader"]
        return (len(leaders) == 1 and all(mb.replica.mode in ("follower", "observer")
                                          and mb.replica.leader == leaders[0].id
                                          for mb in up if mb is not leaders[0])
                and len({mb.peer.applied for mb in up}) == 1)

    def wait_for(self, done: Callable[[], bool], limit_ms: int = 10_000) -> None:
        """Advance tick by tick until ``done()`` (an AssertionError after ``limit_ms``)."""
        end = self.now + limit_ms
        while not done():
            modes = {i: mb.replica.mode if mb.up else "down" for i, mb in self.members.items()}
            assert self.now < end, f"not reached after {limit_ms} ms: {modes}"
            self.advance(self.tick_time)

    def wait_stable(self, limit_ms: int = 10_000) -> Member:
        self.wait_for(self.stable, limit_ms)
        return self.leader()

    def leader(self) -> Member:
        (leader,) = [mb for mb in self.members.values() if mb.up and mb.replica.mode == "leader"]
        return leader

    def followers(self) -> list[Member]:
        return [mb for mb in self.members.values() if mb.up and mb.replica.mode == "follower"]


class _SimLinks:
    """Member ``i``'s quorum and election connections: the sim's queues."""

    def __init__(self, sim: Sim, i: int) -> None:
        self.sim = sim
        self.i = i

    def send(self, dest: int, pkt: m.QuorumPacket, token: Hashable | None = None) -> None:
        if token is None or token == self.token(dest):
            self.sim._send(self.i, dest, with_state(pkt, self.sim.members[self.i].peer))
            if pkt.type == m.SNAP and pkt.data is None:  # the state left with it
                self.sim.local.append((self.i, ev.StateSent(dest)))

    def token(self, dest: int) -> Hashable | None:
        return self.sim.tokens.get(frozenset((self.i, dest)), 0)

    def flush(self) -> None:
        pass  # (the sim's queues deliver each packet as it is sent)

    def disconnect(self, dest: int, why: str = "") -> None:
        # The election port has its own connections: a peer dropping its quorum
        # connection (a leader stepping down) loses no votes.
        self.sim._drop_link(self.i, dest, votes=False)
        self.sim.local.append((dest, ev.ConnectionLost(self.i)))

    def vote(self, dest: int, notification: Notification) -> None:
        sim, i = self.sim, self.i
        if sim._open(i, dest):
            config = sim.members[i].peer.config if i in sim.members else None
            carried = config.text().encode() if config is not None else b""
            sim.ballots.setdefault((i, dest), deque()).append((notification, carried))

    def configure(self, config: QuorumConfig) -> None:
        self.sim.configs[self.i] = config  # what its dynamic config file would keep


class _SimDisk:
    """Member ``i``'s disk: batches wait until the sim syncs them (``Sim.sync``)."""

    def __init__(self, sim: Sim, i: int) -> None:
        self.sim = sim
        self.i = i

    def submit(self, ops: list[ev.PersistOp], after: list[Durable]) -> None:
        self.sim.members[self.i].pending.append((list(ops), after))
