"""The vocabulary between a Zab ``Peer`` and the adapter that runs it.

Inputs are events handed to ``Peer.step(event, now)``; outputs accumulate in
one ``Ready`` until the adapter calls ``Peer.advance()``. ``DiskState`` is what
a peer reads back from its disk when it starts. Plain data, no behaviour:
``zkpy.zab.peer`` documents how the adapter must carry a Ready out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from zkpy.zab.election import Notification
from zkpy.zab.messages import QuorumPacket

# Roles, the same numbers as zkpy.zab.election and ZooKeeper's ServerState.
LOOKING: Final = 0
FOLLOWING: Final = 1
LEADING: Final = 2
OBSERVING: Final = 3

# -- events -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Start:
    """Begin: the first election round (any other first event starts it too)."""


@dataclass(frozen=True, slots=True)
class Tick:
    """One tick (ZooKeeper's tickTime) has passed."""


@dataclass(frozen=True, slots=True)
class Wake:
    """Time passed without a tick: lets the election's timers (finalize wait,
    resends, in ms) fire without waiting for a whole tickTime."""


@dataclass(frozen=True, slots=True)
class Message:
    """A quorum packet from ``src`` (``src == my_id``: one of our own self-ACKs)."""

    src: int
    packet: QuorumPacket


@dataclass(frozen=True, slots=True)
class Messages:
    """Quorum packets from ``src``, in order: what one read of its connection
    brought (one step for all of them; each is handled as a ``Message``, and
    once ``src``'s connection is dropped the rest are not, as TCP would not
    deliver them)."""

    src: int
    packets: list[QuorumPacket]


@dataclass(frozen=True, slots=True)
class Vote:
    """An election notification from ``src`` (the election port), with the
    membership text it carried (b"" if none)."""

    src: int
    notification: Notification
    config: bytes = b""


@dataclass(frozen=True, slots=True)
class Propose:
    """Leader only: broadcast ``txn`` (its header must carry ``Peer.next_zxid``)."""

    txn: bytes
    zxid: int | None = None


@dataclass(frozen=True, slots=True)
class ProposeMany:
    """Leader only: broadcast these (zxid, txn) in order, as ``Propose`` each
    (a zxid of None: the next one). One step for all the writes of a turn."""

    entries: list[tuple[int | None, bytes]]


@dataclass(frozen=True, slots=True)
class Forward:
    """Follower only: hand a client write to the leader (a REQUEST packet:
    Learner.request's sessionId, cxid, type and request bytes, with the
    session's auth ids)."""

    data: bytes
    auth: list[Any] | None = None


@dataclass(frozen=True, slots=True)
class Revalidate:
    """Follower or observer only: a client reconnects with this session; ask the
    leader whether it is still valid (and make us its owner there), as
    Learner.validateSession does. The answer comes back in ``Ready.revalidated``."""

    session_id: int
    timeout: int


@dataclass(frozen=True, slots=True)
class ReadIndex:
    """Leader only, with ``Peer.linear_reads``: a read point for our own clients,
    given in ``Ready.read_points`` once a quorum confirmed we still lead
    (``zkpy.zab.readindex``)."""


@dataclass(frozen=True, slots=True)
class Persisted:
    """Everything earlier Readies asked to persist is synced; the log ends at ``zxid``."""

    zxid: int


@dataclass(frozen=True, slots=True)
class ConnectionLost:
    """The quorum connection to ``peer`` broke (or could not be made)."""

    peer: int


@dataclass(frozen=True, slots=True)
class StateSent:
    """The links sent ``learner`` the state a SNAP without data asked for (the
    stream left our buffers). ZooKeeper's LearnerHandler writes the snapshot
    before it waits initLimit for the ACK of NEWLEADER, so neither walking a big
    tree nor sending it counts against the learner: the wait starts now."""

    learner: int


@dataclass(frozen=True, slots=True)
class Heard:
    """Bytes came from ``peer`` that make no whole packet yet (the stream after
    a SNAP is one long read): as ZooKeeper's socket read timeout, they count as
    hearing from it."""

    peer: int


Event = (Start | Tick | Wake | Message | Messages | Vote | Propose | ProposeMany | Forward
         | Revalidate | ReadIndex | Persisted | ConnectionLost | StateSent | Heard)

# -- what to persist, in order ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SaveEpoch:
    """Write the acceptedEpoch and/or currentEpoch files (None: leave as is)."""

    accepted: int | None = None
    current: int | None = None


# Not frozen, unlike its neighbours: one is made for every write on every member,
# and a frozen dataclass's __init__ costs four times a plain one's in CPython.
@dataclass(slots=True)
class Append:
    """Append one txn to the log (nothing changes it once made)."""

    zxid: int
    txn: bytes


@dataclass(frozen=True, slots=True)
class Truncate:
    """Drop every logged txn after ``zxid`` (the leader's TRUNC)."""

    zxid: int


@dataclass(frozen=True, slots=True)
class InstallSnapshot:
    """Replace the whole state with this snapshot (the leader's SNAP); the log
    before it is void: entries up to ``zxid`` must not be replayed over it."""

    zxid: int
    data: bytes


PersistOp = SaveEpoch | Append | Truncate | InstallSnapshot


@dataclass(frozen=True, slots=True)
class RoleChange:
    """The peer now looks, follows or leads; ``established`` when it broadcasts
    (a leader with a quorum of NEWLEADER acks, a follower after UPTODATE)."""

    role: int
    leader: int | None
    epoch: int
    established: bool
    reason: str = ""  # why the peer looks again (for the log)


#: What a Ready holds (its slots; also named here because a class mypyc
#: compiles has no ``__slots__`` at run time).
_READY_PARTS = ("persist", "send", "send_after_persist", "votes", "install", "commit",
                "requests", "pings", "syncs", "revalidated", "read_points", "disconnect",
                "why", "roles", "config", "resume")


class Ready:
    """Everything the adapter must do, accumulated since the last ``advance()``.

    (A plain class: one is made per step, and the generated ``__init__`` of a
    dataclass with seventeen defaulted fields cost 2.3 us here against 0.9.)
    """

    __slots__ = _READY_PARTS

    def __init__(self) -> None:
        self.persist: list[PersistOp] = []
        self.send: list[tuple[int, QuorumPacket]] = []
        self.send_after_persist: list[tuple[int, QuorumPacket]] = []
        self.votes: list[tuple[int, Notification]] = []
        self.install: list[tuple[int, bytes]] = []
        self.commit: list[tuple[int, bytes]] = []
        self.requests: list[tuple[int, bytes, list[Any] | None]] = []
        # Leader: learners' PING payloads (the sessions they saw alive, as
        # Learner.ping writes them); follower: how many SYNCs arrived (each answers
        # the oldest sync its clients are waiting on).
        self.pings: list[tuple[int, bytes]] = []
        self.syncs = 0
        # Learner: the leader's answers to our REVALIDATEs, (session id, valid).
        self.revalidated: list[tuple[int, bool]] = []
        # Leader with linear reads: how many of our ReadIndex requests are answered
        # (each answers the oldest; the tree holds everything committed).
        self.read_points = 0
        self.disconnect: list[int] = []
        self.why: dict[int, str] = {}  # a disconnect's reason, for the log
        self.roles: list[RoleChange] = []
        # Memberships that became active (a committed reconfig, the leader's
        # NEWLEADER, the first leader stamping its version), oldest first: the
        # adapter updates its addresses and config files before sending anything.
        self.config: list[Any] = []
        # The rest of a Messages batch, cut where this Ready could not keep its
        # order (Peer._order_breaks): step it as Messages once this Ready is
        # carried out (the driver does).
        self.resume: tuple[int, list[QuorumPacket]] | None = None

    def __repr__(self) -> str:
        held = ", ".join(f"{name}={getattr(self, name)!r}" for name in _READY_PARTS
                         if getattr(self, name))
        return f"Ready({held})"

    def empty(self) -> bool:
        return not (self.persist or self.send or self.send_after_persist or self.votes
                    or self.install or self.commit or self.requests or self.disconnect
                    or self.roles or self.pings or self.syncs or self.config
                    or self.revalidated or self.read_points or self.resume is not None)


@dataclass
class DiskState:
    """What a peer finds on its disk at start: the epoch files, the newest
    snapshot's zxid (its tree is the adapter's business) and the logged txns."""

    accepted_epoch: int = 0
    current_epoch: int = 0
    snapshot_zxid: int = 0
    log: list[tuple[int, bytes]] = field(default_factory=list)


class NotLeader(Exception):
    """``Propose`` reached a peer that is not an established leader (or
    ``Forward`` one that follows nobody), or a proposal was refused. For
    ``ProposeMany``, ``accepted`` says how many entries before the refused one
    were proposed (their effects are in the Ready all the same)."""

    def __init__(self, message: str, accepted: int = 0) -> None:
        super().__init__(message)
        self.accepted = accepted


class SafetyError(Exception):
    """The peer was asked to do something that would undo committed state."""
