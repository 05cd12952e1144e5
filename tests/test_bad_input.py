"""Hostile and broken input, through the pure core and through a real server process."""

from __future__ import annotations

import logging
import socket
import struct
import time
from collections.abc import Iterator
from typing import Any

import pytest
from zk_harness import OPEN, Client, connected, frame, make_core

from zkpy.jute import schema as S
from zkpy.jute.codec import decode_all
from zkpy.jute.protocol import Err, Op

GOOD_CONNECT = frame(S.ConnectRequest(0, 0, 10000, 0, bytes(16), False))
PING = bytes.fromhex("00000008fffffffe0000000b")

# (name, bytes sent on a fresh connection, text the close reason must contain)
FIRST_PACKET_CASES = [
    ("garbage", b"\x00\x00\x00\x05hello", "ConnectRequest"),
    ("over_maxbuffer", struct.pack(">i", 0xFFFFF + 1) + b"x" * 64, "Len error"),
    ("negative_length", struct.pack(">i", -5) + b"x" * 8, "Len error"),
    ("request_before_handshake", PING, "ConnectRequest"),
    ("connect_cut_in_passwd", frame(S.ConnectRequest(0, 0, 10000, 0, bytes(16), False).encode()[:30]),
     "ConnectRequest"),
]


def _new_core(**kw: Any) -> Any:
    return make_core(**kw)


def _still_serves(core: Any) -> None:
    other = connected(core, port=41999)
    assert other.create("/alive-%d" % len(core.tree)) == 0
    assert not other.closed


@pytest.mark.parametrize("name,data,reason", FIRST_PACKET_CASES, ids=[c[0] for c in FIRST_PACKET_CASES])
def test_bad_first_packet_core(name: str, data: bytes, reason: str,
                               caplog: pytest.LogCaptureFixture) -> None:
    core = _new_core()
    c = Client(core)
    with caplog.at_level(logging.INFO, logger="zkpy"):
        c.send(data)
    assert c.closed and bytes(c.stream) == b""
    assert c.conn.id not in core.connections
    assert any(reason in r.getMessage() for r in caplog.records), caplog.text
    c.send(GOOD_CONNECT)  # nothing more is read from a closed connection
    assert bytes(c.stream) == b""
    _still_serves(core)


def test_bad_first_packet_byte_by_byte() -> None:
    core = _new_core()
    c = Client(core)
    for b in struct.pack(">i", -1):
        c.send(bytes([b]))
    assert c.closed


def test_unknown_opcode_gets_unimplemented_then_close(caplog: pytest.LogCaptureFixture) -> None:
    core = _new_core()
    c = connected(core)
    with caplog.at_level(logging.INFO, logger="zkpy"):
        c.send(frame(S.RequestHeader(5, 999)) + frame(S.RequestHeader(6, Op.exists), S.ExistsRequest("/", False)))
    replies = c.replies()
    assert [(h.xid, h.zxid, h.err) for h, _ in replies] == [(5, -1, Err.UNIMPLEMENTED)]
    assert c.closed
    assert "999" in caplog.text
    _still_serves(core)


def test_zxid_from_the_future_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    core = _new_core()
    c = Client(core)
    with caplog.at_level(logging.INFO, logger="zkpy"):
        c.send(frame(S.ConnectRequest(0, 1000, 10000, 0, bytes(16), False)))
    assert c.closed and bytes(c.stream) == b""
    assert "zxid" in caplog.text


def test_truncated_frame_then_close(caplog: pytest.LogCaptureFixture) -> None:
    core = _new_core()
    c = connected(core)
    whole = frame(S.RequestHeader(1, Op.getData), S.GetDataRequest("/zookeeper", False))
    c.send(whole[:7])
    assert c.replies() == []
    with caplog.at_level(logging.INFO, logger="zkpy"):
        c.conn.lost()
    assert "incomplete frame" in caplog.text
    core.flush()
    assert c.conn.id not in core.connections
    _still_serves(core)
    # the session outlives its connection until it expires
    assert core.sessions.get(c.session_id) is not None


@pytest.mark.parametrize("op,body", [
    (Op.getData, b"\x00\x00\x00\x09/short"),
    (Op.getData, b"\xff\xff\xff\xf0"),
    (Op.create, b"\x00\x00\x00\x02/a\x00\x00\x00\x00\x7f\xff\xff\xff"),
    (Op.setData, b"\x00\x00\x00\x02\xff\xfe"),
    (Op.multi, b"\x00\x00\x00\x01\x00"),
    (Op.multi, S.MultiHeader(Op.getData, False, -1).encode() + S.GetDataRequest("/", False).encode()),
])
def test_malformed_body_after_handshake(op: int, body: bytes, caplog: pytest.LogCaptureFixture) -> None:
    core = _new_core()
    c = connected(core)
    before = len(core.tree)
    with caplog.at_level(logging.INFO, logger="zkpy"):
        err, payload = c.call(op, body)
    assert (err, payload) == (Err.MARSHALLINGERROR, b"")
    assert not c.closed and len(core.tree) == before
    assert "Malformed" in caplog.text
    assert c.create("/after") == 0


def test_empty_or_short_request_frame(caplog: pytest.LogCaptureFixture) -> None:
    core = _new_core()
    c = connected(core)
    with caplog.at_level(logging.INFO, logger="zkpy"):
        c.send(struct.pack(">i", 3) + b"abc")
    assert c.closed
    assert "shorter" in caplog.text
    _still_serves(core)


def test_many_requests_split_anywhere() -> None:
    core = _new_core()
    c = connected(core)
    data = b"".join(frame(S.RequestHeader(i, Op.create), S.CreateRequest(f"/n{i}", b"", OPEN, 0))
                    for i in range(1, 6))
    for i in range(0, len(data), 3):
        c.send(data[i:i + 3])
    assert [(h.xid, h.err) for h, _ in c.replies()] == [(i, 0) for i in range(1, 6)]


# -- the same through a real server ---------------------------------------------------------

@pytest.fixture(scope="module")
def server() -> Iterator[Any]:
    from zkpy.testing.launchers import ZkpyServer

    srv = ZkpyServer()
    srv.start(timeout=30)
    try:
        yield srv
    finally:
        srv.cleanup()


def _exchange(srv: Any, data: bytes, close_early: bool = False) -> tuple[bytes, bool]:
    """Send data; return (everything received, whether the server closed the connection)."""
    with socket.create_connection(srv.address, timeout=5) as s:
        s.sendall(data)
        if close_early:
            return b"", False
        chunks = []
        while True:
            try:
                got = s.recv(65536)
            except ConnectionResetError:
                return b"".join(chunks), True
            except TimeoutError:
                return b"".join(chunks), False
            if not got:
                return b"".join(chunks), True
            chunks.append(got)


def _server_is_healthy(srv: Any) -> None:
    from kazoo.client import KazooClient

    assert srv.running
    assert srv.four_letter("ruok").strip() == "imok"
    zk = KazooClient(hosts=srv.connect_string, timeout=10)
    zk.start(timeout=15)
    try:
        path = zk.create("/healthy-", b"ok", sequence=True)
        assert zk.get(path)[0] == b"ok"
    finally:
        zk.stop()
        zk.close()


def _wait_for_log(srv: Any, text: str, since: int) -> str:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        tail = srv.log_text()[since:]
        if text in tail:
            return tail
        time.sleep(0.05)
    raise AssertionError(f"no log line containing {text!r} in:\n{srv.log_text()[since:]}")


@pytest.mark.parametrize("name,data,reason", FIRST_PACKET_CASES, ids=[c[0] for c in FIRST_PACKET_CASES])
def test_bad_first_packet_socket(server: Any, name: str, data: bytes, reason: str) -> None:
    mark = len(server.log_text())
    received, closed = _exchange(server, data)
    assert closed and received == b""
    _wait_for_log(server, reason, mark)
    _server_is_healthy(server)


def test_unknown_opcode_socket(server: Any) -> None:
    mark = len(server.log_text())
    received, closed = _exchange(server, GOOD_CONNECT + frame(S.RequestHeader(9, 4242)))
    assert closed
    (n,) = struct.unpack(">i", received[:4])
    decode_all(S.ConnectResponse, received[4:4 + n])
    rest = received[4 + n:]
    assert rest == struct.pack(">iiqi", 16, 9, -1, Err.UNIMPLEMENTED)
    _wait_for_log(server, "4242", mark)
    _server_is_healthy(server)


def test_truncated_frame_then_close_socket(server: Any) -> None:
    mark = len(server.log_text())
    _exchange(server, GOOD_CONNECT + frame(S.RequestHeader(1, Op.getData),
                                           S.GetDataRequest("/", False))[:9], close_early=True)
    _wait_for_log(server, "incomplete frame", mark)
    _server_is_healthy(server)


def test_malformed_body_socket(server: Any) -> None:
    mark = len(server.log_text())
    with socket.create_connection(server.address, timeout=5) as s:
        s.sendall(GOOD_CONNECT + frame(S.RequestHeader(1, Op.getData), b"\x00\x00\x00\x09/x"))
        s.sendall(frame(S.RequestHeader(2, Op.exists), S.ExistsRequest("/", False)))
        buf = b""
        while len(buf) < (4 + 37) + 20 + (20 + 68):  # connect response, error, exists reply
            got = s.recv(65536)
            assert got, "server closed the connection"
            buf += got
    (n,) = struct.unpack(">i", buf[:4])
    rest = buf[4 + n:]
    xid, _zxid, err = struct.unpack(">iqi", rest[4:20])
    assert (xid, err) == (1, Err.MARSHALLINGERROR)
    xid2, _, err2 = struct.unpack(">iqi", rest[24:40])
    assert (xid2, err2) == (2, 0)
    _wait_for_log(server, "Malformed", mark)
    _server_is_healthy(server)
