"""bench.hops: its reading of loopback frames and its cutting of writes into
hops (the capture itself needs a raw socket, so it is run by hand)."""

from __future__ import annotations

import socket
import struct

import pytest

from bench.hops import HOPS, Segment, hops, parse_frame, quorum_type, summarise

CLIENT, LEADER, F1, F2, CLIENT_EPH = 22181, 2890, 40001, 40002, 50000


def _frame(sport: int, dport: int, payload: bytes, proto: int = socket.IPPROTO_TCP,
           ethertype: bytes = b"\x08\x00") -> bytes:
    tcp = struct.pack(">HHIIBBHHH", sport, dport, 0, 0, 5 << 4, 0x18, 65535, 0, 0)
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + len(payload), 0, 0, 64, proto,
                     0, b"\x7f\0\0\1", b"\x7f\0\0\1")
    return b"\0" * 12 + ethertype + ip + tcp + payload


def _quorum(kind: int, zxid: int = 0x100000001, data: bytes = b"") -> bytes:
    # QuorumPacket: type, zxid, data (length + bytes), authinfo (-1: null)
    return struct.pack(">iqi", kind, zxid, len(data)) + data + struct.pack(">i", -1)


def test_a_frame_becomes_a_segment_with_its_payloads_head() -> None:
    payload = _quorum(2, data=b"x" * 100)
    seg = parse_frame(_frame(LEADER, F1, payload), 12.5)
    assert seg == Segment(12.5, LEADER, F1, len(payload), payload[:16])
    assert quorum_type(seg.head) == 2


@pytest.mark.parametrize("frame", [
    _frame(LEADER, F1, b""),  # a bare ACK of TCP's: no payload
    _frame(LEADER, F1, b"abc", proto=socket.IPPROTO_UDP),
    _frame(LEADER, F1, b"abc", ethertype=b"\x86\xdd"),  # IPv6
    b"\0" * 20,
])
def test_frames_without_a_tcp_payload_are_left_out(frame: bytes) -> None:
    assert parse_frame(frame, 1.0) is None


def _write(t: float, order: list[tuple[str, float]], zxid: int) -> list[Segment]:
    """One write's segments, each ``(what, microseconds after t)``; its quorum
    packets carry ``zxid`` (a REQUEST carries -1, as Learner.request sends it)."""
    where = {
        "req": (CLIENT_EPH, CLIENT, b"\0\0\4\x18" + b"\0" * 12, 1100),
        "REQUEST": (F1, LEADER, _quorum(1, -1)[:16], 1095),
        "PROPOSAL>F1": (LEADER, F1, _quorum(2, zxid)[:16], 1104),
        "PROPOSAL>F2": (LEADER, F2, _quorum(2, zxid)[:16], 1104),
        "ACK<F1": (F1, LEADER, _quorum(3, zxid)[:16], 20),
        "ACK<F2": (F2, LEADER, _quorum(3, zxid)[:16], 20),
        "COMMIT>F1": (LEADER, F1, _quorum(4, zxid)[:16], 20),
        "COMMIT>F2": (LEADER, F2, _quorum(4, zxid)[:16], 20),
        "PING>F1": (LEADER, F1, _quorum(5, zxid)[:16], 20),
        "reply": (CLIENT, CLIENT_EPH, b"\0\0\0\x54" + b"\0" * 12, 88),
    }
    out = []
    for what, us in order:
        sport, dport, head, size = where[what]
        out.append(Segment(t + us / 1e6, sport, dport, size, head))
    return out


ZKPY_LIKE = [("req", 0), ("REQUEST", 90), ("PROPOSAL>F1", 200), ("PROPOSAL>F2", 210),
             ("ACK<F2", 600), ("ACK<F1", 630), ("COMMIT>F1", 700), ("COMMIT>F2", 705),
             ("reply", 780)]


def test_each_write_is_cut_at_its_quorum_packets() -> None:
    segs = _write(100.0, ZKPY_LIKE, 0x100000001) + _write(101.0, [
        ("req", 0), ("REQUEST", 50), ("PROPOSAL>F2", 100), ("PROPOSAL>F1", 130),
        ("PING>F1", 150), ("ACK<F1", 400), ("ACK<F2", 450), ("COMMIT>F2", 500),
        ("COMMIT>F1", 520), ("reply", 600)], 0x100000002)
    # Another ensemble's idle traffic and a non-quorum segment do not count.
    segs.append(Segment(100.0003, 2891, 40100, 20, _quorum(5)[:16]))
    segs.append(Segment(100.0004, 3000, 3001, 5, b"hello"))
    got, skipped = hops(reversed(segs), CLIENT)  # (sorted by time, whatever the order)
    assert skipped == 0
    us = {name: [round(v * 1e6) for v in vals] for name, vals in got.items()}
    assert us == {
        "follower: request -> REQUEST": [90, 50],
        "leader: REQUEST -> PROPOSAL": [110, 50],  # to the first PROPOSAL out
        "follower: PROPOSAL -> ACK": [430, 270],
        "other follower: PROPOSAL -> ACK": [390, 350],
        "leader: first ACK -> COMMIT": [100, 120],  # from the first ACK in
        "follower: COMMIT -> reply": [80, 80],
        "total: request -> reply": [780, 600],
    }
    assert set(us) == {name for name, *_ in HOPS}


def test_an_ack_after_the_reply_counts_for_its_own_write_not_the_next() -> None:
    """The quorum needed only one follower: the other's ACK leaves after the
    reply, in the next write's time. It is matched by its zxid."""
    late = [("req", 0), ("REQUEST", 90), ("PROPOSAL>F1", 200), ("PROPOSAL>F2", 210),
            ("ACK<F1", 600), ("COMMIT>F1", 700), ("reply", 780)]
    segs = _write(100.0, late, 0x100000001) + _write(100.001, ZKPY_LIKE, 0x100000002)
    segs += _write(100.001, [("ACK<F2", 50)], 0x100000001)  # the first write's, late
    got, skipped = hops(segs, CLIENT)
    assert skipped == 0
    us = {name: [round(v * 1e6) for v in vals] for name, vals in got.items()}
    assert us["other follower: PROPOSAL -> ACK"] == [840, 390]
    assert us["leader: first ACK -> COMMIT"] == [100, 100]
    assert us["total: request -> reply"] == [780, 780]


def test_a_write_whose_packets_do_not_all_show_is_left_out_and_counted() -> None:
    no_ack = [(w, t) for w, t in ZKPY_LIKE if w != "ACK<F2"]
    cut_short = ZKPY_LIKE[:5]  # the capture ended inside it
    segs = (_write(100.0, no_ack, 0x100000001) + _write(101.0, ZKPY_LIKE, 0x100000002)
            + _write(102.0, cut_short, 0x100000003))
    got, skipped = hops(segs, CLIENT)
    assert skipped == 2
    assert [round(v * 1e6) for v in got["total: request -> reply"]] == [780]


def test_without_any_proposal_every_write_is_left_out() -> None:
    segs = [s for s in _write(100.0, ZKPY_LIKE, 0x100000001) if quorum_type(s.head) != 2]
    got, skipped = hops(segs, CLIENT)
    assert skipped == 1 and all(not v for v in got.values())


def test_summarise_gives_each_hops_percentiles_in_microseconds() -> None:
    res = summarise({"a": [i / 1e6 for i in range(1, 101)], "b": []})
    assert res["a"] == {"p50_us": pytest.approx(50), "p90_us": pytest.approx(90), "n": 100}
    assert res["b"] == {"p50_us": None, "p90_us": None, "n": 0}
