"""Quorum packets: what Zab peers say to each other on the quorum port.

The records are ZooKeeper's (``zookeeper.jute``, module
``org.apache.zookeeper.server.quorum``), declared with ``zkpy.jute.codec``'s
``record()`` so ``packet.encode()`` gives the bytes a ZooKeeper peer writes::

    class QuorumPacket { int type; long zxid; buffer data; vector<org.apache.zookeeper.data.Id> authinfo; }
    class LearnerInfo { long serverid; int protocolVersion; long configVersion; }

The packet types are ``Leader.java``'s constants. Payload conventions (what
``data`` holds per type) follow ZooKeeper: FOLLOWERINFO carries a LearnerInfo,
LEADERINFO a 4-byte protocol version, ACKEPOCH a 4-byte current epoch (-1 when
the follower had already accepted that epoch), PROPOSAL the txn bytes (header
and body as in the txn log), SNAP the snapshot bytes. ZooKeeper streams the
snapshot after the SNAP packet rather than inside it; zkpy's core keeps it in
``data`` and leaves the framing to the adapter.

This module owns the wire vocabulary and zxid arithmetic; it decides nothing.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

from zkpy.jute.codec import BUFFER, INT, LONG, Record, Vector, decode_all, record
from zkpy.jute.schema import Id

REQUEST = 1
PROPOSAL = 2
ACK = 3
COMMIT = 4
PING = 5
REVALIDATE = 6
SYNC = 7
INFORM = 8
NEWLEADER = 10
FOLLOWERINFO = 11
UPTODATE = 12
DIFF = 13
TRUNC = 14
SNAP = 15
OBSERVERINFO = 16
LEADERINFO = 17
ACKEPOCH = 18

TYPE_NAMES = {
    REQUEST: "REQUEST", PROPOSAL: "PROPOSAL", ACK: "ACK", COMMIT: "COMMIT", PING: "PING",
    REVALIDATE: "REVALIDATE", SYNC: "SYNC", INFORM: "INFORM", NEWLEADER: "NEWLEADER",
    FOLLOWERINFO: "FOLLOWERINFO", UPTODATE: "UPTODATE", DIFF: "DIFF", TRUNC: "TRUNC",
    SNAP: "SNAP", OBSERVERINFO: "OBSERVERINFO", LEADERINFO: "LEADERINFO", ACKEPOCH: "ACKEPOCH",
}

# Leader.java: "This value is used to indicate that the leader/follower speak
# the Zab 1.0 protocol" (0x10000).
PROTOCOL_VERSION = 0x10000

if TYPE_CHECKING:
    class QuorumPacket(Record):  # what record() generates, spelled out for mypy
        type: int
        zxid: int
        data: bytes | None
        authinfo: list[Any] | None

        def __init__(self, type: int = 0, zxid: int = 0, data: bytes | None = b"",
                     authinfo: list[Any] | None = None) -> None: ...
else:
    QuorumPacket = record("QuorumPacket", [
        ("type", INT), ("zxid", LONG), ("data", BUFFER), ("authinfo", Vector(Id)),
    ])
LearnerInfo = record("LearnerInfo", [
    ("serverid", LONG), ("protocolVersion", INT), ("configVersion", LONG),
])

_INT = struct.Struct(">i")


def make_zxid(epoch: int, counter: int) -> int:
    """ZxidUtils.makeZxid: the epoch in the high 32 bits, a counter in the low 32."""
    return (epoch << 32) | (counter & 0xFFFFFFFF)


def epoch_of(zxid: int) -> int:
    return zxid >> 32


def counter_of(zxid: int) -> int:
    return zxid & 0xFFFFFFFF


def packet(type: int, zxid: int = 0, data: bytes | None = None) -> QuorumPacket:
    return QuorumPacket(type, zxid, data, None)


def int_data(value: int) -> bytes:
    return _INT.pack(value)


def read_int(data: bytes | None) -> int:
    """The 4-byte big-endian int of LEADERINFO and ACKEPOCH; ValueError if malformed."""
    if data is None or len(data) != 4:
        raise ValueError("expected a 4-byte int payload")
    value: int = _INT.unpack(data)[0]
    return value


def follower_info(my_id: int, accepted_epoch: int) -> QuorumPacket:
    """Learner.registerWithLeader: zxid = makeZxid(acceptedEpoch, 0), data = LearnerInfo."""
    info = LearnerInfo(my_id, PROTOCOL_VERSION, -1)
    return packet(FOLLOWERINFO, make_zxid(accepted_epoch, 0), info.encode())


def learner_id(pkt: QuorumPacket) -> int:
    """The server id a FOLLOWERINFO names (JuteError if its data is malformed)."""
    info = decode_all(LearnerInfo, pkt.data or b"")
    sid: int = info.serverid
    return sid


def describe(pkt: QuorumPacket) -> str:
    name = TYPE_NAMES.get(pkt.type, str(pkt.type))
    return f"{name}(0x{pkt.zxid:x})"
