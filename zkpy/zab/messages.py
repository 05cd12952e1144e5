"""Quorum packets: what Zab peers say to each other on the quorum port.

The records are ZooKeeper's (``zookeeper.jute``, module
``org.apache.zookeeper.server.quorum``), declared in ``zkpy.jute.schema`` with
the others, so ``packet.encode()`` gives the bytes a ZooKeeper peer writes::

    class QuorumPacket { int type; long zxid; buffer data; vector<org.apache.zookeeper.data.Id> authinfo; }
    class LearnerInfo { long serverid; int protocolVersion; long configVersion; }

The packet types are ``Leader.java``'s constants. Payload conventions (what
``data`` holds per type) follow ZooKeeper: FOLLOWERINFO/OBSERVERINFO carry a
LearnerInfo (sid, protocol version 0x10000, config version), LEADERINFO a
4-byte protocol version, ACKEPOCH a 4-byte current epoch (-1 when the
follower had already accepted that epoch), PROPOSAL and INFORM the txn bytes
(header and body as in the txn log), NEWLEADER the membership's text,
COMMITANDACTIVATE the designated leader's sid (a long), INFORMANDACTIVATE
that long then the txn bytes, REVALIDATE from a learner (session id, timeout)
and from the leader (session id, a boolean byte: valid), PING from a learner
its (session id, timeout) touches, REQUEST (session id, cxid, type, request
bytes) with the session's auth ids. UPTODATE's zxid is -1, as ZooKeeper sends.

zkpy's members add a trailer to the two hellos, which ZooKeeper reads past
(LearnerHandler reads LearnerInfo's fields only as far as there are bytes
for them, Learner.registerWithLeader LEADERINFO's first int): ``b"zkpy"`` and
a 4-byte set of features. The one feature, ``WATERMARKS``, says the sender
takes an ACK or a COMMIT of a zxid as saying the same of every zxid before it
(in zxid order that is what each means; ZooKeeper's leader still counts each
ACK apart and its follower wants each COMMIT). Two members that both said so
(a follower in its FOLLOWERINFO, the leader in its LEADERINFO) send one ACK
for a step's proposals and one COMMIT for a run of commits instead of one of
each per write; with anyone else, every one is sent as ZooKeeper sends it.

SNAP: on the wire an empty packet followed by the serialized tree and
sessions and the "BenWasHere" signature (``zkpy.storage.snapshot`` makes and
reads that stream; ``zkpy.net.peerlinks`` frames it). Inside zkpy's core a
SNAP carries the snapshot file's bytes in ``data``.

This module owns the wire vocabulary and zxid arithmetic; it decides nothing.
"""

from __future__ import annotations

import struct
from typing import Final

from zkpy.jute.codec import JuteError, decode
from zkpy.jute.schema import Id
from zkpy.jute.schema import LearnerInfo as LearnerInfo  # re-exported: the quorum vocabulary
from zkpy.jute.schema import QuorumPacket as QuorumPacket

# (Final: compiled modules read these as constants, not module attributes.)
REQUEST: Final = 1
PROPOSAL: Final = 2
ACK: Final = 3
COMMIT: Final = 4
PING: Final = 5
REVALIDATE: Final = 6
SYNC: Final = 7
INFORM: Final = 8
COMMITANDACTIVATE: Final = 9
NEWLEADER: Final = 10
FOLLOWERINFO: Final = 11
UPTODATE: Final = 12
DIFF: Final = 13
TRUNC: Final = 14
SNAP: Final = 15
OBSERVERINFO: Final = 16
LEADERINFO: Final = 17
ACKEPOCH: Final = 18
INFORMANDACTIVATE: Final = 19

TYPE_NAMES = {
    REQUEST: "REQUEST", PROPOSAL: "PROPOSAL", ACK: "ACK", COMMIT: "COMMIT", PING: "PING",
    REVALIDATE: "REVALIDATE", SYNC: "SYNC", INFORM: "INFORM", NEWLEADER: "NEWLEADER",
    FOLLOWERINFO: "FOLLOWERINFO", UPTODATE: "UPTODATE", DIFF: "DIFF", TRUNC: "TRUNC",
    SNAP: "SNAP", OBSERVERINFO: "OBSERVERINFO", LEADERINFO: "LEADERINFO", ACKEPOCH: "ACKEPOCH",
    COMMITANDACTIVATE: "COMMITANDACTIVATE", INFORMANDACTIVATE: "INFORMANDACTIVATE",
}

# Leader.java: "This value is used to indicate that the leader/follower speak
# the Zab 1.0 protocol" (0x10000).
PROTOCOL_VERSION: Final = 0x10000
# The largest epoch a peer takes from another: a zxid keeps its epoch in the high
# 32 bits of a signed long, and a leader's new epoch is one more than any it saw.
MAX_EPOCH: Final = 0x7FFFFFFE

# The hellos' trailer (see above): zkpy's mark, then a set of feature bits.
MARK = b"zkpy"
WATERMARKS: Final = 1  # an ACK and a COMMIT each stand for every zxid up to theirs
FEATURES: Final = WATERMARKS  # what this build speaks
_TRAILER = struct.Struct(">4si")

_INT = struct.Struct(">i")
_LONG = struct.Struct(">q")
_TOUCH = struct.Struct(">qi")  # a session id and its timeout (PING, REVALIDATE)
_VALID = struct.Struct(">q?")  # the leader's REVALIDATE: session id, valid


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


def follower_info(my_id: int, accepted_epoch: int, config_version: int = 0,
                  observer: bool = False, features: int = FEATURES) -> QuorumPacket:
    """Learner.registerWithLeader: zxid = makeZxid(acceptedEpoch, 0), data =
    LearnerInfo(sid, 0x10000, the version of our membership), then zkpy's
    trailer with ``features`` (none if 0: ZooKeeper's bytes)."""
    info = LearnerInfo(my_id, PROTOCOL_VERSION, config_version)
    return packet(OBSERVERINFO if observer else FOLLOWERINFO, make_zxid(accepted_epoch, 0),
                  info.encode() + _trailer(features))


def leader_info(zxid: int, features: int = FEATURES) -> QuorumPacket:
    """LEADERINFO: the new epoch's first zxid, data = the protocol version, then
    zkpy's trailer with ``features`` (none if 0: ZooKeeper's bytes)."""
    return packet(LEADERINFO, zxid, _INT.pack(PROTOCOL_VERSION) + _trailer(features))


def _trailer(features: int) -> bytes:
    return _TRAILER.pack(MARK, features) if features else b""


def features_of(pkt: QuorumPacket) -> int:
    """The features a FOLLOWERINFO, OBSERVERINFO or LEADERINFO says its sender
    speaks: 0 without zkpy's trailer (ZooKeeper, or anything malformed)."""
    data = pkt.data or b""
    at = 20 if pkt.type in (FOLLOWERINFO, OBSERVERINFO) else 4
    if len(data) != at + _TRAILER.size:
        return 0
    mark, bits = _TRAILER.unpack_from(data, at)
    return bits if mark == MARK else 0


def learner_id(pkt: QuorumPacket) -> int:
    """The server id a FOLLOWERINFO names (JuteError if its data is malformed)."""
    return learner_info(pkt)[0]


def learner_info(pkt: QuorumPacket) -> tuple[int, int, int]:
    """(sid, protocol version, config version) of a FOLLOWERINFO/OBSERVERINFO, read
    as LearnerHandler reads it: the fields its data is long enough to hold
    (a sid alone is a pre-3.4 learner: version 0; no config version: -1).
    JuteError when it does not even hold a sid."""
    data = pkt.data or b""
    if len(data) < 8:
        raise JuteError(f"LearnerInfo of {len(data)} bytes")
    sid: int = _LONG.unpack_from(data, 0)[0]
    version: int = _INT.unpack_from(data, 8)[0] if len(data) >= 12 else 0
    config: int = _LONG.unpack_from(data, 12)[0] if len(data) >= 20 else -1
    return sid, version, config


def touches(data: bytes | None) -> list[tuple[int, int]]:
    """The (session id, timeout) pairs of a learner's PING (Learner.ping)."""
    data = data or b""
    return [_TOUCH.unpack_from(data, off)
            for off in range(0, len(data) - _TOUCH.size + 1, _TOUCH.size)]


def touch_data(pairs: list[tuple[int, int]]) -> bytes:
    return b"".join(_TOUCH.pack(sid, timeout) for sid, timeout in pairs)


def revalidate_request(session_id: int, timeout: int) -> QuorumPacket:
    """Learner.validateSession: a reconnecting client's session, for the leader to check."""
    return packet(REVALIDATE, -1, _TOUCH.pack(session_id, timeout))


def read_revalidate_request(data: bytes | None) -> tuple[int, int]:
    """(session id, timeout); PacketError if malformed."""
    if data is None or len(data) < _TOUCH.size:
        raise PacketError("REVALIDATE shorter than a session id and timeout")
    sid, timeout = _TOUCH.unpack_from(data, 0)
    return sid, timeout


def revalidate_answer(pkt: QuorumPacket, session_id: int, valid: bool) -> QuorumPacket:
    """Leader.revalidateSession: the same packet back, its data replaced."""
    return QuorumPacket(REVALIDATE, pkt.zxid, _VALID.pack(session_id, valid), pkt.authinfo)


def read_revalidate_answer(data: bytes | None) -> tuple[int, bool]:
    """(session id, valid); PacketError if malformed."""
    if data is None or len(data) < _VALID.size:
        raise PacketError("REVALIDATE answer shorter than a session id and a boolean")
    sid, valid = _VALID.unpack_from(data, 0)
    return sid, bool(valid)


def commit_and_activate(zxid: int, designated_leader: int) -> QuorumPacket:
    """Leader.commitAndActivate: COMMIT of a reconfig, naming who leads after it."""
    return packet(COMMITANDACTIVATE, zxid, _LONG.pack(designated_leader))


def inform_and_activate(zxid: int, designated_leader: int, txn: bytes) -> QuorumPacket:
    """Leader.buildInformAndActivePacket: the observers' INFORM of a reconfig."""
    return packet(INFORMANDACTIVATE, zxid, _LONG.pack(designated_leader) + txn)


def designated_leader(pkt: QuorumPacket) -> tuple[int, bytes]:
    """The designated leader of a COMMITANDACTIVATE/INFORMANDACTIVATE and the
    bytes after it (INFORMANDACTIVATE's txn); PacketError if malformed."""
    data = pkt.data or b""
    if len(data) < 8:
        raise PacketError(f"{describe(pkt)} without a designated leader")
    leader: int = _LONG.unpack_from(data, 0)[0]
    return leader, data[8:]


# A quorum connection is a bare stream of QuorumPackets (Learner/LearnerHandler
# write them with BinaryOutputArchive, no length prefix), so a reader must walk
# the variable-width fields to find where one packet ends. Each field is bounded
# as ZooKeeper's BinaryInputArchive bounds it: jute.maxbuffer plus
# zookeeper.jute.maxbuffer.extrasize (by default jute.maxbuffer again, at least
# 1024); a SNAP's tree is streamed after its packet, not inside it.
def packet_limit(jute_maxbuffer: int) -> int:
    return jute_maxbuffer + max(jute_maxbuffer, 1024)


MAX_PACKET_BYTES = packet_limit(0xFFFFF)
_LEN = struct.Struct(">i")


class PacketError(ValueError):
    """Bytes on a quorum connection that are not a QuorumPacket."""


def _field_end(buf: bytes | bytearray, off: int, what: str,
               limit: int = MAX_PACKET_BYTES) -> int | None:
    """End of a length-prefixed field at ``off`` (None: not all here yet)."""
    if len(buf) < off + 4:
        return None
    (n,) = _LEN.unpack_from(buf, off)
    if n < -1 or n > limit:
        raise PacketError(f"QuorumPacket {what} length {n}")
    end = off + 4 + max(n, 0)
    return end if len(buf) >= end else None


_HEAD = struct.Struct(">iqi")  # QuorumPacket: type, zxid, the length of data


def _cut(buf: bytes | bytearray, start: int, end: int) -> bytes:
    """``buf[start:end]`` as bytes: one slice of bytes (compiled, a C call), two
    copies from a bytearray."""
    if isinstance(buf, bytes):
        return buf[start:end]
    return bytes(buf[start:end])


# A learner's REQUESTs carry their session's auth ids, and the sessions of an
# ensemble have few distinct ones (often one: the client's address): their
# bytes -> the Ids, so each REQUEST is not two UTF-8 decodes and an Id more.
# The lists are shared: whoever keeps one copies it (Replica._learner_request).
_KNOWN_IDS: dict[bytes, list[Id]] = {}
_KNOWN_IDS_MAX = 1024


def _auth_ids(buf: bytes | bytearray, pos: int, count: int,
              limit: int) -> tuple[list[Id], int] | tuple[()] | None:
    """``count`` Ids (scheme, id: two non-null UTF-8 strings each) from ``pos``:
    (the Ids, the offset after them); None when they are not all here yet; ()
    when they are anything else (the general decoder then says what)."""
    size = len(buf)
    end = pos
    for _ in range(count * 2):  # where they end: scheme, id, scheme, id...
        if size < end + 4:
            return None
        k: int = _LEN.unpack_from(buf, end)[0]
        if k < 0 or k > limit:
            return ()
        end += 4 + k
    if size < end:
        return None
    raw = _cut(buf, pos, end)
    known = _KNOWN_IDS.get(raw)
    if known is not None:
        return known, end
    ids: list[Id] = []
    for _ in range(count):  # the lengths are checked above
        fields: list[str] = []
        for _ in range(2):  # scheme, id
            k = _LEN.unpack_from(buf, pos)[0]
            start, pos = pos + 4, pos + 4 + k
            try:
                fields.append(str(buf[start:pos], "utf-8"))
            except UnicodeDecodeError:
                return ()
        ids.append(Id(*fields))
    if len(_KNOWN_IDS) < _KNOWN_IDS_MAX:
        _KNOWN_IDS[raw] = ids
    return ids, pos


_NO_AUTH = _LEN.pack(-1)  # authinfo: null
_NO_IDS = _LEN.pack(0)  # authinfo: an empty vector


def encode_packet(pkt: QuorumPacket) -> bytes:
    """``pkt.encode()``, faster for the packets that carry no auth ids (all but a
    learner's REQUEST): the type, zxid and data length in one struct call."""
    auth = pkt.authinfo
    if auth:
        return pkt.encode()
    tail = _NO_AUTH if auth is None else _NO_IDS
    data = pkt.data
    if data is None:
        return _HEAD.pack(pkt.type, pkt.zxid, -1) + tail
    return _HEAD.pack(pkt.type, pkt.zxid, len(data)) + data + tail


def split_packet(buf: bytes | bytearray, off: int = 0,
                 limit: int = MAX_PACKET_BYTES) -> tuple[QuorumPacket, int] | None:
    """The packet starting at ``buf[off]`` and the offset after it, or None when
    it is not complete yet; PacketError when the bytes cannot be a packet (a
    field longer than ``limit`` bytes among them)."""
    size = len(buf)
    if size >= off + 16:
        # The common packet: no auth ids (a count of -1 or 0 after the data).
        ptype, zxid, n = _HEAD.unpack_from(buf, off)
        size_n: int = n  # (typed: compiled, the offsets are C arithmetic)
        if 0 <= size_n <= limit or size_n == -1:
            start = off + 16
            data_end = start + max(size_n, 0)
            if size < data_end + 4:
                return None
            count: int = _LEN.unpack_from(buf, data_end)[0]
            if count == -1 or count == 0:
                data = None if size_n == -1 else _cut(buf, start, data_end)
                return (QuorumPacket(ptype, zxid, data, None if count == -1 else []),
                        data_end + 4)
            if 0 < count <= 8:  # a learner's REQUEST: its session's few auth ids
                ids = _auth_ids(buf, data_end + 4, count, limit)
                if ids is None:
                    return None
                if ids:
                    data = None if size_n == -1 else _cut(buf, start, data_end)
                    return QuorumPacket(ptype, zxid, data, ids[0]), ids[1]
    end = _field_end(buf, off + 12, "data", limit)
    if end is None:
        return None
    if len(buf) < end + 4:
        return None
    count = _LEN.unpack_from(buf, end)[0]
    if count < -1 or count > 1024:
        raise PacketError(f"QuorumPacket authinfo count {count}")
    end += 4
    for _ in range(max(count, 0) * 2):  # each Id: scheme, id
        nxt = _field_end(buf, end, "authinfo", limit)
        if nxt is None:
            return None
        end = nxt
    try:
        pkt, _ = decode(QuorumPacket, buf, off, end)
    except JuteError as e:
        raise PacketError(str(e)) from None
    return pkt, end


OP_SYNC: Final = 9  # OpCode.sync: the one REQUEST the leader answers itself
_REQUEST_HEAD = struct.Struct(">qii")  # Learner.request: sessionId, cxid, type


def request_data(session_id: int, cxid: int, op: int, body: bytes) -> bytes:
    """A REQUEST packet's data, as Learner.request writes it."""
    return _REQUEST_HEAD.pack(session_id, cxid, op) + body


def request_head(data: bytes | None) -> tuple[int, int, int]:
    """(sessionId, cxid, type) of a REQUEST's data; PacketError if too short."""
    if data is None or len(data) < _REQUEST_HEAD.size:
        raise PacketError("REQUEST data shorter than its header")
    head: tuple[int, int, int] = _REQUEST_HEAD.unpack_from(data, 0)
    return head


def request_type(data: bytes | None) -> int | None:
    try:
        return request_head(data)[2]
    except PacketError:
        return None


def describe(pkt: QuorumPacket) -> str:
    name = TYPE_NAMES.get(pkt.type, str(pkt.type))
    return f"{name}(0x{pkt.zxid:x})"
