"""ZooKeeper's election-port bytes: the initial message, framing, notifications.

The literal byte strings below are written out from the layout of
QuorumCnxManager.startConnection (long protocol version, long sid, int
length, address bytes), SendWorker/RecvWorker (int length, payload) and
FastLeaderElection.buildMsg (int state, long leader, long zxid, long
electionEpoch, long peerEpoch, int version 0x2, int config length, config),
all big-endian as Java writes them.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zkpy.zab import wire
from zkpy.zab.election import FOLLOWING, LEADING, LOOKING, OBSERVING, Election, Notification
from zkpy.zab.wire import (
    InitialMessage,
    WireError,
    decode_initial_message,
    decode_notification,
    encode_initial_message,
    encode_notification,
    frame,
    split_frame,
    split_initial_message,
)

V1 = b"\xff\xff\xff\xff\xff\xff\x00\x00"  # -65536 as a Java long
V2 = b"\xff\xff\xff\xff\xff\xff\x00\x01"  # -65535

# server 3 announcing election address 127.0.0.1:3888
INITIAL_V1 = V1 + b"\x00\x00\x00\x00\x00\x00\x00\x03" + b"\x00\x00\x00\x0e" + b"127.0.0.1:3888"

# LOOKING, votes for 3 with zxid 0x100000002, round 5, peer epoch 1, config "version=0"
NOTIFICATION = (b"\x00\x00\x00\x00"                    # state LOOKING
                b"\x00\x00\x00\x00\x00\x00\x00\x03"    # leader 3
                b"\x00\x00\x00\x01\x00\x00\x00\x02"    # zxid 0x100000002
                b"\x00\x00\x00\x00\x00\x00\x00\x05"    # electionEpoch 5
                b"\x00\x00\x00\x00\x00\x00\x00\x01"    # peerEpoch 1
                b"\x00\x00\x00\x02"                    # version 0x2
                b"\x00\x00\x00\x09" b"version=0")      # config
VOTE = Notification(sender=2, state=LOOKING, leader=3, zxid=0x100000002, round=5, peer_epoch=1)


# -- the initial message ---------------------------------------------------------------------


def test_initial_message_bytes_are_quorumcnxmanagers() -> None:
    assert wire.PROTOCOL_VERSION_V1 == -65536 and wire.PROTOCOL_VERSION_V2 == -65535
    assert encode_initial_message(3, [("127.0.0.1", 3888)]) == INITIAL_V1
    assert len(INITIAL_V1) == 8 + 8 + 4 + 14
    assert decode_initial_message(INITIAL_V1) == InitialMessage(
        3, (("127.0.0.1", 3888),), wire.PROTOCOL_VERSION_V1)


def test_initial_message_v2_carries_several_addresses_and_brackets_ipv6() -> None:
    data = encode_initial_message(7, [("zk7", 3888), ("::1", 3889)], wire.PROTOCOL_VERSION_V2)
    text = b"zk7:3888|[::1]:3889"
    assert data == V2 + b"\x00" * 7 + b"\x07" + len(text).to_bytes(4, "big") + text
    assert decode_initial_message(data) == InitialMessage(
        7, (("zk7", 3888), ("::1", 3889)), wire.PROTOCOL_VERSION_V2)


def test_a_pre_3_5_peer_sends_its_sid_alone() -> None:
    assert decode_initial_message(b"\x00\x00\x00\x00\x00\x00\x00\x05") == InitialMessage(
        5, (), None)


def test_initial_message_split_waits_for_all_of_it_and_keeps_the_rest() -> None:
    tail = b"\x00\x00\x00\x2c" + b"more"
    for cut in range(len(INITIAL_V1)):
        assert split_initial_message(INITIAL_V1[:cut]) is None
    found = split_initial_message(INITIAL_V1 + tail)
    assert found is not None
    assert found[0].sid == 3 and found[1] == tail


@pytest.mark.parametrize("data", [
    b"\xff" * 8 + b"\x00" * 8 + b"\x00\x00\x00\x01" + b"x",             # version -1
    V1 + b"\x00" * 8 + b"\x00\x00\x00\x00",                               # empty address
    V1 + b"\x00" * 8 + b"\xff\xff\xff\xff",                               # negative length
    V1 + b"\x00" * 8 + b"\x00\x00\x08\x01" + b"a" * 2049,                 # over maxBuffer
    V1 + b"\x00" * 8 + b"\x00\x00\x00\x04" + b"host",                     # no port
    V1 + b"\x00" * 8 + b"\x00\x00\x00\x05" + b"h:1:2",                    # two colons
    V1 + b"\x00" * 8 + b"\x00\x00\x00\x04" + b"h:xx",                     # port not a number
    V1 + b"\x00" * 8 + b"\x00\x00\x00\x07" + b"h:99999",                  # port out of range
    V1 + b"\x00" * 8 + b"\x00\x00\x00\x05" + b":3888",                    # no host
    V1 + b"\x00" * 8 + b"\x00\x00\x00\x06" + b"[::1]3",                   # bracket, no colon
    V1 + b"\x00" * 8 + b"\x00\x00\x00\x06" + b"h:\xff\xfe88",             # not UTF-8
    V1 + b"\x00" * 8 + b"\x00\x00\x00\x07" + b"a:1|b:2",                  # V1, two addresses
    INITIAL_V1[:-1],                                                      # cut short
    INITIAL_V1 + b"!",                                                    # trailing bytes
    b"",
])
def test_garbage_initial_messages_raise_wire_error(data: bytes) -> None:
    with pytest.raises(WireError):
        decode_initial_message(data)


def test_initial_message_encoding_refuses_what_it_cannot_send() -> None:
    with pytest.raises(ValueError):
        encode_initial_message(1, [("a", 1), ("b", 2)])  # V1 holds one address
    with pytest.raises(ValueError):
        encode_initial_message(1, [])
    with pytest.raises(ValueError):
        encode_initial_message(1, [("a", 70000)])
    with pytest.raises(ValueError):
        encode_initial_message(1, [("a", 1)], protocol_version=-3)


# -- framing ------------------------------------------------------------------------------------


def test_frames_are_an_int_length_then_the_payload() -> None:
    framed = frame(NOTIFICATION)
    assert framed[:4] == b"\x00\x00\x00\x35" and framed[4:] == NOTIFICATION  # 53 bytes
    assert split_frame(framed + b"\x00") == (NOTIFICATION, b"\x00")
    for cut in range(len(framed)):
        assert split_frame(framed[:cut]) is None


@pytest.mark.parametrize("head", [b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\x00\x08\x00\x01"])
def test_a_bad_frame_length_raises(head: bytes) -> None:
    with pytest.raises(WireError):  # 0, -1, 512K + 1
        split_frame(head + b"x" * 8)


def test_frame_refuses_empty_or_huge_payloads() -> None:
    with pytest.raises(ValueError):
        frame(b"")
    with pytest.raises(ValueError):
        frame(b"x" * (wire.PACKET_MAX_SIZE + 1))


# -- notifications ---------------------------------------------------------------------------


def test_notification_bytes_are_buildmsgs() -> None:
    assert encode_notification(VOTE, b"version=0") == NOTIFICATION
    assert len(NOTIFICATION) == 44 + 9
    assert decode_notification(NOTIFICATION, sender=2) == (VOTE, b"version=0")


def test_the_sender_comes_from_the_connection() -> None:
    note, _ = decode_notification(NOTIFICATION, sender=9)
    assert note.sender == 9 and note.leader == 3


def test_older_layouts_decode_as_workerreceiver_reads_them() -> None:
    body = NOTIFICATION[:28]
    # 28 bytes (before ZOOKEEPER-107): the peer epoch is the zxid's epoch.
    assert decode_notification(body, 2) == (VOTE, b"")
    # 40 bytes: peer epoch, and a version int that is not read (3.4.6+ sends 0x1).
    assert decode_notification(NOTIFICATION[:36] + b"\x00\x00\x00\x01", 2) == (VOTE, b"")
    assert decode_notification(NOTIFICATION[:40], 2) == (VOTE, b"")
    # longer, version 0x1: no config follows
    assert decode_notification(NOTIFICATION[:36] + b"\x00\x00\x00\x01" + b"\x00" * 6, 2) == (
        VOTE, b"")
    # bytes after the known fields are ignored, as ZooKeeper ignores them
    assert decode_notification(NOTIFICATION + b"\x00\x00", 2) == (VOTE, b"version=0")


@pytest.mark.parametrize("data", [
    b"",
    NOTIFICATION[:27],                                   # shorter than any layout
    NOTIFICATION[:30],                                   # between 28 and 40
    NOTIFICATION[:36],                                   # peerEpoch, but not 40 bytes
    NOTIFICATION[:42],                                   # version 0x2, half a config length
    NOTIFICATION[:44],                                   # config length 9, no config
    NOTIFICATION[:-1],                                   # config one byte short
    b"\x00\x00\x00\x07" + NOTIFICATION[4:],              # state 7
    b"\xff\xff\xff\xff" + NOTIFICATION[4:],              # state -1
    NOTIFICATION[:40] + b"\xff\xff\xff\xff" + b"x" * 9,  # negative config length
    NOTIFICATION[:40] + b"\x00\x00\x00\x0a" + b"version=0",  # config overruns
    NOTIFICATION[:40] + b"\x7f\xff\xff\xff",             # absurd config length
])
def test_garbage_notifications_raise_wire_error(data: bytes) -> None:
    with pytest.raises(WireError):
        decode_notification(data, 1)


def test_notification_encoding_refuses_what_java_cannot_hold() -> None:
    with pytest.raises(ValueError):
        encode_notification(Notification(1, 4, 1, 0, 1, 0))
    with pytest.raises(ValueError):
        encode_notification(Notification(1, LOOKING, 1, 1 << 63, 1, 0))


def test_an_elections_votes_cross_the_wire_unchanged() -> None:
    e = Election(2, frozenset({1, 2, 3}), last_zxid=0x300000007, epoch=3)
    for dest, note in e.start(0):
        data = frame(encode_notification(note, b"server.1=a:2888:3888\nversion=0"))
        found = split_frame(data)
        assert found is not None and found[1] == b""
        back, config = decode_notification(found[0], sender=2)
        assert back == note and config.startswith(b"server.1=")
        assert dest in (1, 3)


_LONGS = st.integers(-(1 << 63), (1 << 63) - 1)


@given(st.sampled_from([LOOKING, FOLLOWING, LEADING, OBSERVING]), _LONGS, _LONGS, _LONGS,
       _LONGS, st.integers(-(1 << 63), (1 << 63) - 1), st.binary(max_size=300))
def test_notifications_round_trip(state: int, leader: int, zxid: int, round_: int,
                                  peer_epoch: int, sender: int, config: bytes) -> None:
    note = Notification(sender, state, leader, zxid, round_, peer_epoch)
    assert decode_notification(encode_notification(note, config), sender) == (note, config)


_HOSTS = st.text(st.characters(blacklist_characters="|:[]", blacklist_categories=["Cs"]),
                 min_size=1, max_size=20)


@given(_LONGS, st.lists(st.tuples(_HOSTS, st.integers(0, 0xFFFF)), min_size=1, max_size=5))
def test_initial_messages_round_trip(sid: int, addresses: list[tuple[str, int]]) -> None:
    data = encode_initial_message(sid, addresses, wire.PROTOCOL_VERSION_V2)
    assert decode_initial_message(data) == InitialMessage(
        sid, tuple(addresses), wire.PROTOCOL_VERSION_V2)
    one = encode_initial_message(sid, addresses[:1])
    assert decode_initial_message(one).addresses == tuple(addresses[:1])


@given(st.binary(max_size=120))
def test_any_bytes_decode_or_raise_wire_error(data: bytes) -> None:
    for attempt in (lambda: decode_notification(data, 1),
                    lambda: decode_initial_message(data),
                    lambda: split_initial_message(data),
                    lambda: split_frame(data)):
        try:
            attempt()
        except WireError:
            pass


@given(st.binary(min_size=20, max_size=80), st.integers(0, 79))
def test_corrupted_initial_messages_decode_or_raise_wire_error(noise: bytes, at: int) -> None:
    data = bytearray(INITIAL_V1)
    data[at % len(data):at % len(data) + 4] = noise[:4]
    try:
        decode_initial_message(bytes(data))
    except WireError:
        pass
