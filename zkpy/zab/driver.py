"""Carrying out a Zab ``Ready``: the one place that does it, for every adapter.

A ``Peer`` decides; a ``Driver`` carries out what it decided, in the order
``zkpy.zab.peer`` prescribes, through three parts plugged in by the caller:

- ``Links``: the quorum and election connections (Twisted sockets in
  ``zkpy.net.peerlinks``, queues in the simulators, nothing for a standalone
  server);
- ``Disk``: persists ops in order and, once they are synced, hands the
  batch's ``send_after_persist`` messages back to ``Driver.persisted``
  (a thread in ``zkpy.net.disk``, in-memory disks in the simulators);
- ``Application``: what the decisions feed: role changes first, then the
  rest of the Ready (snapshots, commits, learners' requests and pings, SYNCs,
  memberships) once the sends are out (``zkpy.server.replica`` feeds a
  ServerCore; ``zkpy.testing.zabsim`` keeps lists of txns).

The order, per Ready: roles; new memberships to the links (addresses before
anything is sent); disconnects; persist ops to the disk with the
``send_after_persist`` messages they hold back, each tagged with the
connection it was meant for; sends and votes; then the application's part.
Messages to ourselves never go through the links: those the disk releases
(a leader's own ACKs) are stepped in as ``Message`` events when it releases
them, those sent at once are stepped in when the current step is done.

``step`` may be called again from inside the application's part (a commit
that makes a client's next write propose, say): each Ready is carried out
whole, in the order the steps were made. No I/O, clock or threads here.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable
from typing import Protocol

from zkpy.zab.election import Notification
from zkpy.zab.events import (
    Event,
    Message,
    Messages,
    NotLeader,
    Persisted,
    PersistOp,
    Ready,
    RoleChange,
)
from zkpy.zab.membership import QuorumConfig
from zkpy.zab.messages import QuorumPacket
from zkpy.zab.peer import Peer

#: A message held back until the disk syncs: (destination, packet, the
#: connection it rides, as ``Links.token`` named it; None for ourselves).
Durable = tuple[int, QuorumPacket, Hashable | None]


class Links(Protocol):
    """The quorum and election connections of one peer."""

    def send(self, dest: int, pkt: QuorumPacket, token: Hashable | None = None) -> None:
        """Send ``pkt`` to ``dest``; with a ``token``, only on that connection
        (if it closed meanwhile, drop the packet: TCP would have lost it). A SNAP
        without data asks for the state to be sent in its place: the tree as the
        application holds it when the SNAP goes out (at the packet's zxid or
        later: the learner replays what follows it, as over a fuzzy snapshot),
        before anything sent to ``dest`` after it."""

    def token(self, dest: int) -> Hashable | None:
        """What identifies the current quorum connection to ``dest``."""

    def flush(self) -> None:
        """The step's sends are all made: what ``send`` kept back goes out now
        (links may gather a step's packets per connection into one write)."""

    def disconnect(self, dest: int, why: str = "") -> None:
        """Close the quorum connection to ``dest`` (it will see ConnectionLost);
        ``why``, if given, is worth a line in the log."""

    def vote(self, dest: int, notification: Notification) -> None:
        """Send an election notification (the election port)."""

    def configure(self, config: QuorumConfig) -> None:
        """A membership became active: addresses, what votes carry, config files."""


class Disk(Protocol):
    """Persists ops in order; calls ``Driver.persisted(after, last_zxid)`` once
    everything handed to it so far (``ops`` included) is synced."""

    def submit(self, ops: list[PersistOp], after: list[Durable]) -> None: ...


class Application(Protocol):
    def on_roles(self, changes: list[RoleChange]) -> None:
        """The peer's role changed (before anything of the Ready is carried out)."""

    def on_ready(self, ready: Ready) -> None:
        """Install, commit, requests, pings, syncs and memberships, once sent."""


class NoLinks:
    """The links of a server with no peers (standalone): nothing to send to."""

    def send(self, dest: int, pkt: QuorumPacket, token: Hashable | None = None) -> None:
        raise AssertionError(f"a standalone server sends no quorum packets (to {dest})")

    def token(self, dest: int) -> Hashable | None:
        return None

    def flush(self) -> None:
        pass

    def disconnect(self, dest: int, why: str = "") -> None:
        pass

    def vote(self, dest: int, notification: Notification) -> None:
        raise AssertionError("a standalone server does not vote")

    def configure(self, config: QuorumConfig) -> None:
        pass


class Driver:
    def __init__(self, peer: Peer, links: Links, disk: Disk, app: Application,
                 after_ready: Callable[[], None] | None = None) -> None:
        self.peer = peer
        self.links = links
        self.disk = disk
        self.app = app
        # The adapter's hook after each Ready is carried out (it re-arms the
        # election timer from ``peer.election.next_deadline()``).
        self.after_ready = after_ready
        self.now = 0
        self._own: deque[QuorumPacket] = deque()  # messages to ourselves, not yet stepped
        self._depth = 0
        self._cuts: list[int] = []  # peers disconnected in this step (``resume``)

    @property
    def my_id(self) -> int:
        return self.peer.my_id

    def step(self, event: Event, now: int) -> None:
        self.now = max(self.now, now)
        more: Event | None = event
        while more is not None:  # a loop: one read may be cut thousands of times
            more = self._step(more)
        if self._depth == 0:
            self._cuts.clear()
            while self._own:
                self.step(Message(self.my_id, self._own.popleft()), self.now)

    def _step(self, event: Event) -> Event | None:
        """One step carried out; then the rest of a batch the peer cut there
        (Peer._order_breaks), unless its connection was dropped meanwhile."""
        self._depth += 1
        try:
            try:
                ready = self.peer.step(event, self.now)
            except NotLeader:
                # Refused (part of) a proposal: what it decided before refusing
                # (the entries it did propose) is carried out all the same.
                ready = self.peer.ready()
                self.peer.advance()
                self._carry_out(ready)
                raise
            self.peer.advance()
            cuts = len(self._cuts)
            self._carry_out(ready)
        finally:
            self._depth -= 1
        if ready.resume is None:
            return None
        src, rest = ready.resume
        return None if src in self._cuts[cuts:] else Messages(src, rest)

    def persisted(self, after: list[Durable], last_zxid: int, now: int) -> None:
        """The disk synced a batch: release what waited for it, then say so."""
        links = self.links
        for dest, pkt, token in after:
            if dest == self.my_id:
                self.step(Message(dest, pkt), now)
            else:
                links.send(dest, pkt, token)
        links.flush()
        self.step(Persisted(last_zxid), now)

    def _carry_out(self, ready: Ready) -> None:
        if ready.roles:
            self.app.on_roles(ready.roles)
        links = self.links
        for config in ready.config:
            links.configure(config)
        for sid in ready.disconnect:
            links.disconnect(sid, ready.why.get(sid, ""))
            self._cuts.append(sid)
        for dest, pkt in ready.send:
            if dest == self.my_id:
                self._own.append(pkt)
            else:
                links.send(dest, pkt)
        links.flush()
        # The disk after the sends: a leader's PROPOSALs leave before its log
        # thread is woken (that costs the event loop tens of us here), and its
        # own write runs beside the followers' longer path to their ACKs.
        if ready.persist or ready.send_after_persist:
            me = self.my_id
            after = [(dest, pkt, None if dest == me else links.token(dest))
                     for dest, pkt in ready.send_after_persist]
            self.disk.submit(ready.persist, after)
        for dest, notification in ready.votes:
            links.vote(dest, notification)
        self.app.on_ready(ready)
        if self.after_ready is not None:
            self.after_ready()
