"""Sessions (ids, passwords, timeouts, expiry, reconnect, close) and watches, via the pure core."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest
from zk_harness import T0, Client, connected, frame, make_core

from zkpy.jute import schema as S
from zkpy.jute.codec import decode_all
from zkpy.jute.protocol import AddWatchMode, CreateMode, Err, EventType, Op, WatcherType
from zkpy.server.sessions import SessionTable, first_session_id, java_random_bytes, session_password

FRAMES = json.loads((Path(__file__).parent / "data" / "reference_frames.json").read_text())
REF = json.loads((Path(__file__).parent / "data" / "reference_behaviour.json").read_text())


# -- ids and passwords ---------------------------------------------------------------

def _recorded_connect_responses() -> list[Any]:
    hexes = [f["hex"] for f in FRAMES if f["kind"] == "connect_response"]
    hexes.append(REF["e_initial_tree"]["connect_response_hex"])
    return [decode_all(S.ConnectResponse, bytes.fromhex(h)[4:]) for h in hexes]


@pytest.mark.parametrize("resp", _recorded_connect_responses(), ids=lambda r: hex(r.sessionId))
def test_password_matches_apache_zookeeper(resp: Any) -> None:
    assert session_password(resp.sessionId) == resp.passwd


def test_java_random_known_value() -> None:
    # new java.util.Random(42).nextInt() is the well-known -1170105035; nextBytes
    # emits each int's bytes low byte first.
    assert java_random_bytes(42, 4) == struct.pack("<i", -1170105035)
    assert java_random_bytes(42, 6)[:4] == java_random_bytes(42, 4)


def test_session_ids_pack_server_id_and_time_then_count_up() -> None:
    now = 1_732_435_200_123
    sid = first_session_id(1, now)
    assert sid == (((now << 24) & (2**64 - 1)) >> 8) | (1 << 56)
    assert sid >> 56 == 1
    table = SessionTable(2000, 1, now)
    a, b = table.new_id(), table.new_id()
    assert (a, b) == (sid, sid + 1)
    # The recorded ids have server id 1 in their top byte too.
    for resp in _recorded_connect_responses():
        assert resp.sessionId >> 56 == 1


@pytest.mark.parametrize("asked,granted", [(1000, 4000), (4000, 4000), (10000, 10000),
                                           (40000, 40000), (100000, 40000), (0, 4000)])
def test_timeout_negotiation(asked: int, granted: int) -> None:
    core = make_core(tick_time=2000, min_session_timeout=4000, max_session_timeout=40000)
    c = Client(core)
    resp = c.handshake(timeout=asked)
    assert resp.timeOut == granted and resp.sessionId != 0 and resp.readOnly is False
    assert core.sessions.get(resp.sessionId).timeout == granted


# -- expiry ----------------------------------------------------------------------------

def test_session_expires_only_after_rounded_timeout() -> None:
    tick = 2000
    core = make_core(tick_time=tick)
    c = Client(core, now=T0 + 1)
    c.handshake(timeout=5000)
    deadline = ((T0 + 1 + 5000) // tick + 1) * tick
    assert T0 + 1 + 5000 <= deadline < T0 + 1 + 5000 + tick
    core.tick(deadline - 1)
    assert core.sessions.get(c.session_id) is not None and not c.closed
    core.tick(deadline)
    assert core.sessions.get(c.session_id) is None
    assert c.closed


def test_pings_keep_a_session_alive() -> None:
    core = make_core(tick_time=2000)
    c = Client(core, now=T0)
    c.handshake(timeout=4000)
    for step in range(1, 20):
        now = T0 + step * 1500
        core.tick(now)
        c.now = now
        hdr_err, body = c.ping()
        assert hdr_err == 0 and body == b""
    assert not c.closed and core.sessions.get(c.session_id) is not None
    core.tick(T0 + 19 * 1500 + 6000 + 1)
    assert c.closed


def test_any_request_touches_the_session() -> None:
    core = make_core(tick_time=2000)
    c = Client(core, now=T0)
    c.handshake(timeout=4000)
    c.now = T0 + 3000
    assert c.exists("/") == 0
    core.tick(T0 + 6000)
    assert not c.closed


def test_expiry_deletes_ephemerals_and_notifies() -> None:
    core = make_core(tick_time=2000)
    doomed = connected(core, timeout=4000)
    watcher = connected(core, port=40001, timeout=40000)
    assert doomed.create("/e", flags=CreateMode.EPHEMERAL) == 0
    assert doomed.create("/persist") == 0
    assert watcher.exists("/e", watch=True) == 0
    assert watcher.children("/", watch=True)[0] == 0
    core.tick(T0 + 8000)
    assert doomed.closed and core.tree.get("/e") is None and core.tree.get("/persist") is not None
    watcher.replies()
    got = {(e.type, e.path) for e in watcher.events}
    assert got == {(EventType.NodeDeleted, "/e"), (EventType.NodeChildrenChanged, "/")}
    assert all(e.state == 3 for e in watcher.events)


def test_expired_session_cannot_reconnect() -> None:
    core = make_core(tick_time=2000)
    c = connected(core, timeout=4000)
    sid, pw = c.session_id, c.passwd
    core.tick(T0 + 10000)
    d = Client(core, now=T0 + 10000, port=40009)
    resp = d.handshake(session_id=sid, passwd=pw)
    assert (resp.timeOut, resp.sessionId) == (0, 0)
    assert d.closed


# -- reconnect and close ----------------------------------------------------------------

def test_reconnect_with_right_password_keeps_the_session() -> None:
    core = make_core()
    a = connected(core)
    assert a.create("/mine", flags=CreateMode.EPHEMERAL) == 0
    b = Client(core, port=40002)
    resp = b.handshake(session_id=a.session_id, passwd=a.passwd, timeout=20000)
    assert (resp.sessionId, resp.passwd, resp.timeOut) == (a.session_id, a.passwd, 20000)
    assert a.closed and not b.closed
    assert b.get("/mine")[0] == 0
    assert core.tree.get("/mine").ephemeralOwner == a.session_id


def test_reconnect_with_wrong_password_is_refused() -> None:
    core = make_core()
    a = connected(core)
    b = Client(core, port=40003)
    bad = bytes(x ^ 1 for x in a.passwd)
    resp = b.handshake(session_id=a.session_id, passwd=bad)
    assert (resp.timeOut, resp.sessionId, resp.passwd) == (0, 0, bytes(16))
    assert b.closed and not a.closed
    assert a.exists("/") == 0


def test_reconnect_to_unknown_session_is_refused() -> None:
    core = make_core()
    b = Client(core)
    resp = b.handshake(session_id=0x0123, passwd=session_password(0x0123))
    assert (resp.timeOut, resp.sessionId) == (0, 0) and b.closed


def test_close_session() -> None:
    core = make_core()
    c = connected(core)
    w = connected(core, port=40004)
    assert c.create("/eph", flags=CreateMode.EPHEMERAL) == 0
    assert w.get("/eph", watch=True)[0] == 0
    err, body = c.call(Op.closeSession)
    assert (err, body) == (0, b"")
    assert c.closed and core.sessions.get(c.session_id) is None
    assert core.tree.get("/eph") is None
    w.replies()
    assert [(e.type, e.path) for e in w.events] == [(EventType.NodeDeleted, "/eph")]


# -- watches -----------------------------------------------------------------------------

def _events(c: Client) -> list[tuple[int, str]]:
    c.replies()
    out = [(e.type, e.path) for e in c.events]
    c.events.clear()
    return out


def test_one_shot_watches_fire_once_with_the_right_types() -> None:
    core = make_core()
    w = connected(core)
    a = connected(core, port=40005)
    assert a.create("/d", b"1") == 0
    assert w.get("/d", watch=True)[0] == 0
    assert w.exists("/nothing", watch=True) == Err.NONODE
    assert w.children("/d", watch=True)[0] == 0
    a.set("/d", b"2")
    a.set("/d", b"3")
    assert _events(w) == [(EventType.NodeDataChanged, "/d")]
    a.create("/d/kid")
    a.create("/d/kid2")
    assert _events(w) == [(EventType.NodeChildrenChanged, "/d")]
    a.create("/nothing")
    assert _events(w) == [(EventType.NodeCreated, "/nothing")]
    # getData + getChildren on the same path: one NodeDeleted
    assert w.get("/nothing", watch=True)[0] == 0 and w.children("/nothing", watch=True)[0] == 0
    a.delete("/nothing")
    assert _events(w) == [(EventType.NodeDeleted, "/nothing")]
    # a data watch does not see child changes, a child watch does not see data changes
    assert w.get("/d", watch=True)[0] == 0
    a.create("/d/kid3")
    assert _events(w) == []
    assert w.children("/d/kid", watch=True)[0] == 0
    a.set("/d/kid", b"x")
    assert _events(w) == []
    a.delete("/d/kid")
    assert _events(w) == [(EventType.NodeDeleted, "/d/kid")]
    a.set("/d", b"4")
    assert _events(w) == [(EventType.NodeDataChanged, "/d")]


def test_event_frame_layout_matches_reference() -> None:
    core = make_core()
    c = connected(core)
    c.create("/b")
    c.get("/b", watch=True)
    start = len(c.stream)
    c.set("/b", b"x")
    raw = bytes(c.stream[start:])
    assert raw.startswith(bytes.fromhex("0000001effffffffffffffffffffffff000000000000000300000003000000022f62"))


def test_persistent_and_recursive_watches() -> None:
    core = make_core()
    w = connected(core)
    a = connected(core, port=40006)
    a.create("/p")
    a.create("/r")
    assert w.call(Op.addWatch, S.AddWatchRequest("/p", AddWatchMode.PERSISTENT), S.ErrorResponse) \
        == (0, S.ErrorResponse(0))
    assert w.call(Op.addWatch, S.AddWatchRequest("/r", AddWatchMode.PERSISTENT_RECURSIVE))[0] == 0
    a.set("/p", b"1")
    a.set("/p", b"2")
    a.create("/p/c")
    a.set("/p/c", b"x")
    assert _events(w) == [(EventType.NodeDataChanged, "/p"), (EventType.NodeDataChanged, "/p"),
                          (EventType.NodeChildrenChanged, "/p")]
    a.create("/r/a")
    a.create("/r/a/b")
    a.set("/r/a/b", b"y")
    a.delete("/r/a/b")
    a.set("/r", b"z")
    assert _events(w) == [(EventType.NodeCreated, "/r/a"), (EventType.NodeCreated, "/r/a/b"),
                          (EventType.NodeDataChanged, "/r/a/b"), (EventType.NodeDeleted, "/r/a/b"),
                          (EventType.NodeDataChanged, "/r")]
    assert w.call(Op.addWatch, S.AddWatchRequest("/p", 7))[0] == Err.MARSHALLINGERROR
    # still there after firing
    assert w.call(Op.checkWatches, S.CheckWatchesRequest("/p", WatcherType.Any))[0] == 0
    assert w.call(Op.removeWatches, S.RemoveWatchesRequest("/p", WatcherType.Any))[0] == 0
    a.set("/p", b"3")
    assert _events(w) == []


def test_remove_and_check_watches() -> None:
    core = make_core()
    w = connected(core)
    a = connected(core, port=40007)
    a.create("/x")
    chk = lambda t: w.call(Op.checkWatches, S.CheckWatchesRequest("/x", t))[0]  # noqa: E731
    rm = lambda t: w.call(Op.removeWatches, S.RemoveWatchesRequest("/x", t))[0]  # noqa: E731
    assert chk(WatcherType.Any) == Err.NOWATCHER
    assert rm(WatcherType.Data) == Err.NOWATCHER
    w.get("/x", watch=True)
    w.children("/x", watch=True)
    assert chk(WatcherType.Data) == 0 and chk(WatcherType.Children) == 0
    assert rm(WatcherType.Data) == 0
    assert chk(WatcherType.Data) == Err.NOWATCHER and chk(WatcherType.Children) == 0
    a.set("/x", b"1")
    assert _events(w) == []  # the server sends no event for a removed watch
    assert rm(WatcherType.Any) == 0
    assert chk(WatcherType.Any) == Err.NOWATCHER
    a.create("/x/k")
    assert _events(w) == []


def test_check_watches_answers_for_any_session_as_zookeeper_does() -> None:
    """ZooKeeper 3.8's containsWatcher: a path watched by anyone counts.

    The differential test found a session with no watch told one exists
    because another session watches the path (an exists watch on a missing
    node here); removeWatches still removes only the caller's own watch.
    """
    core = make_core()
    w = connected(core)
    other = connected(core, port=40008)
    chk = lambda t: other.call(Op.checkWatches, S.CheckWatchesRequest("/gone", t))[0]  # noqa: E731
    assert chk(WatcherType.Data) == Err.NOWATCHER
    w.exists("/gone", watch=True)
    assert chk(WatcherType.Data) == 0 and chk(WatcherType.Any) == 0
    assert chk(WatcherType.Children) == Err.NOWATCHER
    assert other.call(Op.removeWatches,
                      S.RemoveWatchesRequest("/gone", WatcherType.Data))[0] == Err.NOWATCHER
    assert w.call(Op.removeWatches, S.RemoveWatchesRequest("/gone", WatcherType.Data))[0] == 0
    assert chk(WatcherType.Data) == Err.NOWATCHER


def test_set_watches_reregisters_and_fires_missed_events() -> None:
    core = make_core()
    a = connected(core)
    for p in ("/same", "/changed", "/deleted", "/kids", "/quiet-kids"):
        a.create(p)
    rel = core.last_zxid
    a.set("/changed", b"new")
    a.delete("/deleted")
    a.create("/created")
    a.create("/kids/k")
    b = connected(core, port=40008, last_zxid=rel)
    sw = S.SetWatches(rel, ["/same", "/changed", "/deleted"], ["/created", "/absent"],
                      ["/kids", "/quiet-kids"])
    start = len(b.stream)
    b.send(frame(S.RequestHeader(-8, Op.setWatches), sw))
    replies = b.replies()
    assert [(h.xid, h.err) for h, _ in replies] == [(-8, 0)]
    assert sorted((e.type, e.path) for e in b.events) == sorted([
        (EventType.NodeDataChanged, "/changed"), (EventType.NodeDeleted, "/deleted"),
        (EventType.NodeCreated, "/created"), (EventType.NodeChildrenChanged, "/kids")])
    # the events come before the setWatches reply
    assert [x for x, _ in _frames_of(bytes(b.stream[start:]))] == [-1, -1, -1, -1, -8]
    b.events.clear()
    a.set("/same", b"s")
    a.create("/absent")
    a.create("/quiet-kids/k")
    assert sorted(_events(b)) == sorted([(EventType.NodeDataChanged, "/same"),
                                         (EventType.NodeCreated, "/absent"),
                                         (EventType.NodeChildrenChanged, "/quiet-kids")])


def test_set_watches_with_a_null_path_is_a_marshalling_error() -> None:
    """DataTree.setWatches throws on a null path; FinalRequestProcessor answers
    MARSHALLINGERROR (a compiled core would otherwise raise on it)."""
    core = make_core()
    a = connected(core)
    a.create("/w")
    b = connected(core, port=40009, last_zxid=core.last_zxid)
    b.send(frame(S.RequestHeader(-8, Op.setWatches),
                 S.SetWatches(core.last_zxid, ["/w", None], [], [])))
    assert [(h.xid, h.err) for h, _ in b.replies()] == [(-8, Err.MARSHALLINGERROR)]
    a.set("/w", b"x")
    assert _events(b) == []  # nothing was set
    b.send(frame(S.RequestHeader(-8, Op.setWatches), S.SetWatches(core.last_zxid, ["/w"], [], [])))
    assert [(h.xid, h.err) for h, _ in b.replies()] == [(-8, 0)]  # the session goes on


def _frames_of(stream: bytes) -> list[tuple[int, bytes]]:
    out, off = [], 0
    while off < len(stream):
        (n,) = struct.unpack_from(">i", stream, off)
        body = stream[off + 4:off + 4 + n]
        out.append((struct.unpack_from(">i", body, 0)[0], body))
        off += 4 + n
    return out


def test_event_precedes_the_reply_on_the_writing_connection() -> None:
    core = make_core()
    c = connected(core)
    c.create("/x")
    c.get("/x", watch=True)
    start = len(c.stream)
    xid = c.submit(Op.setData, S.SetDataRequest("/x", b"v", -1))
    assert [x for x, _ in _frames_of(bytes(c.stream[start:]))] == [-1, xid]


def test_event_before_any_later_reply_that_shows_the_change() -> None:
    core = make_core()
    a = connected(core)
    b = connected(core, port=40010)
    a.create("/x", b"old")
    b.get("/x", watch=True)
    disk = core.replica.driver.disk
    disk.hold()  # writes stay in flight until the disk syncs them
    b_start = len(b.stream)
    b_create = b.submit(Op.create, S.CreateRequest("/y", b"", [S.ACL(31, S.Id("world", "anyone"))], 0))
    a.submit(Op.setData, S.SetDataRequest("/x", b"new", -1))
    b_read1 = b.submit(Op.getData, S.GetDataRequest("/x", False))
    assert bytes(b.stream[b_start:]) == b""  # the read waits behind b's own write
    disk.release()
    b_read2 = b.submit(Op.getData, S.GetDataRequest("/x", False))
    order = _frames_of(bytes(b.stream[b_start:]))
    xids = [x for x, _ in order]
    assert xids.index(b_create) < xids.index(b_read1)
    assert xids.index(-1) < xids.index(b_read2)
    for x, body in order:
        if x in (b_read1, b_read2):
            data = decode_all(S.GetDataResponse, body[16:]).data
            if data == b"new":
                assert xids.index(-1) < xids.index(x), "new data seen before its event"


def test_connection_close_drops_its_watches() -> None:
    core = make_core()
    w = connected(core)
    w.get("/zookeeper", watch=True)
    assert core.watches.count() == 1
    w.conn.lost()
    assert core.watches.count() == 0
