"""The quorum and election fuzz targets' inputs: what real learners, leaders and
voting servers send (seeds), and structure-aware mutations of them (one packet
or field at a time, so most inputs get past framing). ``zkpy.testing.fuzz.quorum``
runs them; ``zkpy.testing.fuzz.live`` sends them to real processes.
"""

from __future__ import annotations

import struct
from typing import Any

from zkpy.jute import schema as S
from zkpy.jute.protocol import Op
from zkpy.storage.formats import encode_txn
from zkpy.storage.snapstream import stream_of
from zkpy.testing.fuzz.client import OPEN_ACL
from zkpy.testing.fuzz.mutate import Mutator
from zkpy.zab import messages as m
from zkpy.zab import wire
from zkpy.zab.election import FOLLOWING, LEADING, LOOKING, Notification

MEMBERS = (1, 2, 3)
HOSTILE_SIDS = (4, 5, 9, 100, 1 << 31, (1 << 63) - 1, 0, -1, -7)


# -- seeds -------------------------------------------------------------------------------------


def _txn(zxid: int, op: int, body: Any, client: int = 0x100) -> bytes:
    return encode_txn(S.TxnHeader(client, 1, zxid, 1_700_000_000_000, op), body)


def learner_stream(sid: int, epoch: int = 1, observer: bool = False,
                   last_zxid: int = 0) -> bytes:
    """What a real learner sends a leader of ``epoch``: discovery, sync, then traffic.
    A ``last_zxid`` of an epoch before the leader's history gets a SNAP; one past
    it, in its epoch, a TRUNC."""
    newleader = m.make_zxid(epoch, 0)
    create = (S.CreateRequest("/from-learner", b"x", OPEN_ACL, 0).encode())
    pkts = [
        m.follower_info(sid, 0, 0, observer),
        m.packet(m.ACKEPOCH, last_zxid, m.int_data(m.epoch_of(last_zxid))),
        m.packet(m.ACK, newleader),
        m.packet(m.ACK, newleader),
        m.QuorumPacket(m.REQUEST, -1, m.request_data(0x500, 0, Op.createSession,
                                                     struct.pack(">i", 30000)), []),
        m.QuorumPacket(m.REQUEST, -1, m.request_data(0x500, 1, Op.create, create),
                       [S.Id("ip", "127.0.0.1")]),
        m.QuorumPacket(m.REQUEST, -1, m.request_data(0x500, 2, Op.sync,
                                                     S.SyncRequest("/").encode()), []),
        m.packet(m.PING, newleader, m.touch_data([(0x500, 30000)])),
        m.revalidate_request(0x500, 30000),
        m.packet(m.ACK, newleader + 1),
    ]
    return b"".join(m.encode_packet(p) for p in pkts)


def leader_stream(kind: str = "diff", epoch: int = 1) -> bytes:
    """What a real leader of ``epoch`` sends a new follower, then broadcast traffic."""
    from zkpy.testing.fuzz.seeds import sample

    base = m.make_zxid(epoch, 0)
    head = [m.packet(m.LEADERINFO, base, m.int_data(m.PROTOCOL_VERSION))]
    body = S.CreateTxn("/from-leader", b"v", OPEN_ACL, False, 1)
    sync: list[m.QuorumPacket] = [m.packet(m.DIFF, 0)]
    tail = b""
    if kind == "trunc":
        sync = [m.packet(m.TRUNC, 0)]
    out = b"".join(m.encode_packet(p) for p in head)
    if kind == "snap":
        snap = sample()
        out += m.encode_packet(m.packet(m.SNAP, snap.snapshot_zxid)) + stream_of(snap.snapshot)
        sync = []
    config = b"server.1=127.0.0.1:1:2\nserver.2=127.0.0.1:3:4\nserver.3=127.0.0.1:5:6\nversion=0"
    rest = sync + [
        m.packet(m.PROPOSAL, base + 1, _txn(base + 1, Op.createSession, S.CreateSessionTxn(30000))),
        m.packet(m.COMMIT, base + 1),
        m.packet(m.NEWLEADER, base, config),
        m.packet(m.UPTODATE, -1),
        m.packet(m.PROPOSAL, base + 2, _txn(base + 2, Op.create, body)),
        m.packet(m.COMMIT, base + 2),
        m.packet(m.PING, base + 2),
        m.packet(m.SYNC, 0),
        m.QuorumPacket(m.REVALIDATE, -1, struct.pack(">q?", 0x100, True), None),
        m.inform_and_activate(base + 3, 3, _txn(base + 3, Op.setData,
                                                 S.SetDataTxn("/from-leader", b"w", 0))),
        m.commit_and_activate(base + 3, 3),
    ]
    return out + b"".join(m.encode_packet(p) for p in rest) + tail


def quorum_seeds() -> list[bytes]:
    return [b"\x00\x00" + learner_stream(9), b"\x00\x05" + learner_stream(4, observer=True),
            b"\x01\x00" + learner_stream(9), b"\x02\x00" + learner_stream(100),
            b"\x00\x00" + learner_stream(5, last_zxid=m.make_zxid(0, 5)),
            b"\x03\x00" + leader_stream("diff"), b"\x03\x00" + leader_stream("snap"),
            b"\x03\x02" + leader_stream("trunc")]


def election_stream(sid: int, state: int = LOOKING, config: bytes = b"") -> bytes:
    first = wire.encode_initial_message(sid, [("127.0.0.1", 3999)])
    votes = [Notification(sid, state, sid, 1 << 32, 1, 1), Notification(sid, state, 3, 0, 2, 0)]
    return first + b"".join(wire.frame(wire.encode_notification(n, config)) for n in votes)


def election_seeds() -> list[bytes]:
    config = b"server.1=127.0.0.1:1:2\nserver.2=127.0.0.1:3:4\nserver.3=127.0.0.1:5:6\nversion=0"
    return [b"\x00\x00" + election_stream(9), b"\x01\x00" + election_stream(9),
            b"\x00\x00" + election_stream(0, FOLLOWING, config),
            b"\x01\x04" + election_stream(4, LEADING, config),
            b"\x00\x00" + struct.pack(">q", 7) + wire.frame(
                wire.encode_notification(Notification(7, LOOKING, 7, 9, 1, 0)))]


# -- structure-aware inputs ---------------------------------------------------------------


def _mutate_packets(mut: Mutator, stream: bytes) -> bytes:
    """Mutate one packet of a stream at a time, keeping the others whole."""
    pkts, off = [], 0
    while off < len(stream):
        try:
            found = m.split_packet(stream, off)
        except m.PacketError:
            break  # a SNAP's stream, or SASL: left as it is
        if found is None:
            break
        pkts.append(stream[off:found[1]])
        off = found[1]
    tail = stream[off:]
    for _ in range(mut.rng.randint(1, 3) if pkts else 0):
        i = mut.rng.randrange(len(pkts))
        pkts[i] = mut.mutate(pkts[i]) if mut.rng.random() < 0.7 else _mutate_fields(mut, pkts[i])
    if mut.rng.random() < 0.2:
        mut.rng.shuffle(pkts)
    return b"".join(pkts) + tail


def _mutate_fields(mut: Mutator, raw: bytes) -> bytes:
    """The packet with its type, zxid or data replaced (its framing stays valid)."""
    try:
        found = m.split_packet(raw)
    except m.PacketError:
        found = None
    if found is None:
        return raw
    pkt = found[0]
    choice = mut.rng.randrange(3)
    if choice == 0:
        pkt = m.QuorumPacket(mut.rng.randint(0, 21), pkt.zxid, pkt.data, pkt.authinfo)
    elif choice == 1:
        pkt = m.QuorumPacket(pkt.type, mut.int64(), pkt.data, pkt.authinfo)
    else:
        data = mut.mutate(pkt.data or b"") if mut.rng.random() < 0.8 else None
        pkt = m.QuorumPacket(pkt.type, pkt.zxid, data, pkt.authinfo)
    return bytes(pkt.encode())


def generate_quorum(mut: Mutator) -> bytes:
    rng = mut.rng
    scenario = rng.randrange(4)
    cut = 0 if rng.random() < 0.6 else rng.randint(1, 40)
    if scenario == 3:
        stream = leader_stream(rng.choice(("diff", "snap", "trunc")))
    else:
        stream = learner_stream(rng.choice(HOSTILE_SIDS), observer=rng.random() < 0.2,
                                last_zxid=rng.choice((0, 0, 0, m.make_zxid(0, 5),
                                                      m.make_zxid(1, 0x7FFF))))
        if scenario == 2 and rng.random() < 0.5:
            from zkpy.auth.quorum_sasl import IN_PROGRESS, auth_packet

            stream = auth_packet(IN_PROGRESS, b"") + mut.mutate(auth_packet(0, b"x" * 20))
    stream = _mutate_packets(mut, stream) if rng.random() < 0.85 else mut.mutate(stream)
    return bytes((scenario, cut)) + stream


def generate_election(mut: Mutator) -> bytes:
    rng = mut.rng
    config = rng.choice((b"", b"server.1=127.0.0.1:1:2\nversion=0", b"\xff\xfe",
                         b"server.1=127.0.0.1:1:2\nserver.2=127.0.0.1:3:4\nserver.3=127.0.0.1:5:6"
                         b"\nversion=" + rng.choice((b"0", b"100000000", b"zz"))))
    stream = election_stream(rng.choice(HOSTILE_SIDS + MEMBERS), rng.randrange(4), config)
    if rng.random() < 0.3:
        first = wire.encode_initial_message(9, [("127.0.0.1", 1)], wire.PROTOCOL_VERSION_V2)
        stream = first + stream[len(first):]
    return bytes((rng.randrange(2), 0 if rng.random() < 0.7 else rng.randint(1, 20))) + \
        mut.mutate(stream)
