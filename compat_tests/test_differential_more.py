"""Fixed differential scenarios the generated run (test_differential.py) does
not reach: multiRead, SetWatches/SetWatches2 on reconnect, getEphemerals
prefixes, getAllChildrenNumber, whoAmI, four-letter word structure, session
expiry handshakes, and the error-precedence grids of create and delete.

Every scenario runs the same function against zkpy and Apache ZooKeeper
(both standalone, started once for this module) and compares the normalized
outcomes; a mismatch prints both.  Known differences that are not fixed are
``xfail(strict=True)`` tests with the reproduction in their reason.
"""

from __future__ import annotations

import itertools
import os
import re
import socket
import struct
import time
from typing import Any

import pytest
from kazoo.security import make_digest_acl_credential

from compat_tests.differential.compare import ZxidOrder, diff, stat_view
from compat_tests.differential.rawclient import RawClient, RawConnectionLoss
from compat_tests.test_differential import NO_REAPER, OPEN_ACL, _pair
from zkpy.jute import schema as S
from zkpy.jute.codec import decode, encode

pytestmark = pytest.mark.reference

U1 = S.Id("digest", make_digest_acl_credential("u1", "p1"))
U1_ALL = [S.ACL(31, U1)]
WORLD_READ = [S.ACL(1, S.Id("world", "anyone"))]
BAD_ACL = [S.ACL(31, S.Id("digest", "no-colon-here"))]

_tags = itertools.count()


@pytest.fixture(scope="module")
def servers():
    a, b = _pair(NO_REAPER)
    try:
        yield a, b
    finally:
        a.cleanup()
        b.cleanup()


def _tag(name: str) -> str:
    """The same fresh root path for both servers of one scenario."""
    return f"/m{next(_tags)}-{name}"


def compare(servers, scenario) -> tuple[Any, Any]:
    a, b = servers
    ra, rb = scenario(a), scenario(b)
    problems = diff(ra, rb, ZxidOrder())
    if os.environ.get("ZKPY_DIFF_SHOW"):  # -s: see what was compared
        print(f"\nzkpy:      {ra!r}\nzookeeper: {rb!r}")
    assert not problems, (
        "zkpy and zookeeper differ:\n" + "".join(f"  - {p}\n" for p in problems)
        + f"  zkpy:      {ra!r}\n  zookeeper: {rb!r}")
    return ra, rb


class Rel:
    """Paths relative to a scenario's root, session ids by label."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.labels: dict[int, str] = {}

    def __call__(self, p: str | None) -> str | None:
        if p is None or self.root == "":
            return p
        if p == self.root:
            return "<T>"
        if p.startswith(self.root + "/"):
            return "<T>/" + p[len(self.root) + 1:]
        if p.startswith(self.root):
            return "<T>" + p[len(self.root):]
        return p

    def name(self, client: RawClient, label: str) -> RawClient:
        self.labels[client.session_id] = label
        return client

    def owner(self, sid: int) -> Any:
        return self.labels.get(sid, sid) if sid else 0

    def stat(self, st: Any) -> Any:
        return stat_view(st, self.owner)


def _create(r: RawClient, path: str, data: bytes = b"", acl=OPEN_ACL, flags: int = 0) -> int:
    return r.call(1, S.CreateRequest(path, data, acl, flags))[0]


def _sync(r: RawClient) -> None:
    r.call(9, S.SyncRequest("/"))


# -- multiRead ----------------------------------------------------------------------

_MULTI_DONE = S.MultiHeader(-1, True, -1)


def _multi_body(ops: list[tuple[int, Any]]) -> bytes:
    out = b""
    for op, rec in ops:
        out += encode(S.MultiHeader(op, False, -1)) + encode(rec)
    return out + encode(_MULTI_DONE)


def _multi_results(payload: bytes, rel: Rel) -> list[Any]:
    res: list[Any] = []
    off = 0
    while off < len(payload):
        h, off = decode(S.MultiHeader, payload, off)
        if h.done:
            res.append(("done", h.type, h.err))
            break
        if h.type == -1:
            e, off = decode(S.ErrorResponse, payload, off)
            res.append(("error", h.err, e.err))
        elif h.type == 4:
            g, off = decode(S.GetDataResponse, payload, off)
            res.append(("getData", h.err, g.data, rel.stat(g.stat)))
        elif h.type == 8:
            c, off = decode(S.GetChildrenResponse, payload, off)
            res.append(("getChildren", h.err, sorted(c.children)))
        elif h.type in (1, 15):
            c2, off = decode(S.CreateResponse, payload, off)
            res.append(("create", h.err, rel(c2.path)))
        elif h.type in (2, 13):
            res.append(("ok", h.type, h.err))
        elif h.type == 5:
            sd, off = decode(S.SetDataResponse, payload, off)
            res.append(("setData", h.err, rel.stat(sd.stat)))
        else:
            res.append(("unknown", h.type, h.err, payload[off:].hex()))
            break
    if off != len(payload):
        res.append(("trailing", payload[off:].hex()))
    return res


def _call_or_loss(r: RawClient, op: int, body: Any) -> tuple[Any, ...]:
    try:
        err, payload = r.call(op, body)
        return (err, payload)
    except RawConnectionLoss:
        return ("connection lost", b"")


def test_multi_read_mixed_ops(servers):
    """multiRead (22) of getData/getChildren, with missing paths and NOAUTH
    members: each op gets its own result, the request as a whole is OK; a watch
    set inside it fires."""
    T = _tag("multiread")

    def scenario(srv):
        rel = Rel(T)
        owner = rel.name(RawClient(*srv.address), "owner")
        reader = rel.name(RawClient(*srv.address), "reader")
        owner.call(100, S.AuthPacket(0, "digest", b"u1:p1"))
        setup = [_create(owner, T, b"root"), _create(owner, T + "/a", b"A"),
                 _create(owner, T + "/b"), _create(owner, T + "/b/x", b"x"),
                 _create(owner, T + "/sec", b"s", U1_ALL), _create(owner, T + "/sec/s")]
        ops = [(4, S.GetDataRequest(T + "/a", False)),
               (8, S.GetChildrenRequest(T, False)),
               (4, S.GetDataRequest(T + "/missing", False)),
               (8, S.GetChildrenRequest(T + "/missing", False)),
               (4, S.GetDataRequest(T + "/sec", False)),
               (8, S.GetChildrenRequest(T + "/sec", False)),
               (8, S.GetChildrenRequest(T + "/b", True)),
               (4, S.GetDataRequest(T + "/b/x", True)),
               (4, S.GetDataRequest(T + "/a", False))]
        out: list[Any] = [("setup", setup)]
        for who, r in (("reader", reader), ("owner", owner)):
            err, payload = r.call(22, _multi_body(ops))
            out.append((who, err, _multi_results(payload, rel)))
        err, payload = reader.call(22, _multi_body([]))
        out.append(("empty", err, _multi_results(payload, rel)))
        # a multiRead sets no watches (its ops carry no watch flag in ZooKeeper)
        owner.call(5, S.SetDataRequest(T + "/b/x", b"y", -1))
        _create(owner, T + "/b/y")
        _sync(reader)
        _sync(owner)
        out.append(("reader events", [(t, rel(p)) for t, p in reader.events]))
        out.append(("owner events", [(t, rel(p)) for t, p in owner.events]))
        reader.close_session()
        owner.close_session()
        return out

    ra, _ = compare(servers, scenario)
    # Not vacuous: the reader got a NOAUTH member and a NONODE member.
    flat = repr(ra)
    assert "-102" in flat and "-101" in flat, ra


def _kinds(T: str, cases: list[tuple[int, list[str]]]):
    """Each (opcode, op names) request in turn, with its reply, its results,
    and how many zxids it used (the next create's zxid minus the last one
    seen before the request)."""
    ops_by_name = {
        "get": (4, S.GetDataRequest(T, False)), "kids": (8, S.GetChildrenRequest(T, False)),
        "set": (5, S.SetDataRequest(T, b"x", -1)), "delete": (2, S.DeleteRequest(T, -1)),
        "bad_set": (5, S.SetDataRequest(T + "/missing", b"x", -1)),
        "exists": (3, S.ExistsRequest(T, False)),
    }

    def scenario(srv):
        rel = Rel(T)
        r = RawClient(*srv.address)
        out: list[Any] = [_create(r, T, b"d")]
        for i, (op, names) in enumerate(cases):
            r.call(3, S.ExistsRequest(T, False))
            z0 = r.last_zxid
            res = _call_or_loss(r, op, _multi_body([ops_by_name[n] for n in names]))
            if not r.connected:
                r = RawClient(*srv.address)
            _create(r, f"{T}/probe{i}")
            err, payload = r.call(4, S.GetDataRequest(T, False))
            out.append((op, names, res[0], _multi_results(res[1], rel) if res[1] else None,
                        ("zxids used", r.last_zxid - z0),
                        ("data after", decode(S.GetDataResponse, payload)[0].data)))
        r.close_session()
        return out

    return scenario


def test_multi_with_ops_of_the_other_kind(servers):
    """Write ops inside a multiRead, read ops inside a multi (alone, mixed,
    after a failing op), an op type neither allows: ZooKeeper's
    MultiOperationRecord refuses to mix reads and writes, so these are
    MARSHALLINGERROR (a multi's uses a zxid, a multiRead's does not)."""
    compare(servers, _kinds(_tag("multi-kinds"), [
        (22, ["get", "set"]), (22, ["set", "get"]), (22, ["get", "exists"]),
        (22, ["kids", "get"]), (22, ["exists"]),
        (14, ["set", "get"]), (14, ["get"]), (14, ["kids"]), (14, ["bad_set", "get"]),
        (14, ["get", "set"]), (14, ["set"]),
    ]))


def test_multi_read_of_write_ops_only(servers):
    """A multiRead of write ops only: MARSHALLINGERROR with an empty
    MultiResponse (ZooKeeper had created it before the first op threw)."""
    compare(servers, _kinds(_tag("multiread-writes"), [(22, ["set"]), (22, ["delete", "set"])]))


def test_multi_with_an_unknown_op_type_uses_a_zxid(servers):
    """An op type no multi allows (exists, 3): MARSHALLINGERROR, and the
    failed request has a zxid (ZooKeeper's PrepRequestProcessor gives it one
    before deserializing)."""
    compare(servers, _kinds(_tag("multi-unknown"), [(14, ["set", "exists"]), (14, ["exists"])]))


def _malformed(T: str, cases: list[tuple[str, int, bytes]]):
    def scenario(srv):
        r = RawClient(*srv.address)
        out: list[Any] = [_create(r, T, b"d")]
        for i, (name, op, body) in enumerate(cases):
            r.call(3, S.ExistsRequest(T, False))
            z0 = r.last_zxid
            res = _call_or_loss(r, op, body)
            still = r.connected
            if not r.connected:
                r = RawClient(*srv.address)
            _create(r, f"{T}/probe{i}")
            err, payload = r.call(4, S.GetDataRequest(T, False))
            out.append((name, res[0], res[1].hex(), still, ("zxids used", r.last_zxid - z0),
                        decode(S.GetDataResponse, payload)[0].data))
        r.close_session()
        return out
    return scenario


def _malformed_cases(T: str) -> list[tuple[str, int, bytes]]:
    set_body = encode(S.SetDataRequest(T, b"x", -1))
    create_body = encode(S.CreateRequest(T + "/c", b"", OPEN_ACL, 0))
    get_body = encode(S.GetDataRequest(T, False))
    multi_body = _multi_body([(5, S.SetDataRequest(T, b"x", -1))])
    return [
        ("setData truncated", 5, set_body[:-2]),
        ("create truncated", 1, create_body[:-2]),
        ("getData truncated", 4, get_body[:-1]),
        ("delete truncated", 2, encode(S.DeleteRequest(T, -1))[:-1]),
        ("setACL truncated", 7, encode(S.SetACLRequest(T, OPEN_ACL, -1))[:-1]),
        ("check truncated", 13, encode(S.CheckVersionRequest(T, -1))[:-1]),
        ("createTTL truncated", 21, encode(S.CreateTTLRequest(T + "/t", b"", OPEN_ACL, 5, 1))[:-1]),
        ("createContainer truncated", 19, create_body[:-2]),
        ("multi truncated", 14, multi_body[:-4]),
        ("multiRead truncated", 22, _multi_body([(4, S.GetDataRequest(T, False))])[:-4]),
    ]


def test_malformed_requests(servers):
    """Truncated request bodies: the reply, whether the connection stays, and
    whether a zxid was used."""
    T = _tag("malformed")
    compare(servers, _malformed(T, _malformed_cases(T)))


def test_multi_nochildren_for_ephemerals_and_not_empty(servers):
    """A multi creating a child of an ephemeral, and one deleting a non-empty
    node: the failing op's error, OK before it, RUNTIMEINCONSISTENCY after."""
    T = _tag("multi-errors")

    def scenario(srv):
        rel = Rel(T)
        r = RawClient(*srv.address)
        out: list[Any] = [_create(r, T), _create(r, T + "/eph", flags=1),
                          _create(r, T + "/full"), _create(r, T + "/full/c")]
        for ops in (
            [(1, S.CreateRequest(T + "/ok", b"", OPEN_ACL, 0)),
             (1, S.CreateRequest(T + "/eph/c", b"", OPEN_ACL, 0)),
             (2, S.DeleteRequest(T + "/full/c", -1))],
            [(1, S.CreateRequest(T + "/ok2", b"", OPEN_ACL, 2)),
             (2, S.DeleteRequest(T + "/full", -1)),
             (5, S.SetDataRequest(T, b"x", -1))],
            [(2, S.DeleteRequest(T + "/full/c", -1)),
             (2, S.DeleteRequest(T + "/full", -1))],
        ):
            err, payload = r.call(14, _multi_body(ops))
            out.append((err, _multi_results(payload, rel)))
        err, payload = r.call(8, S.GetChildrenRequest(T, False))
        out.append(("children", err, sorted(decode(S.GetChildrenResponse, payload)[0].children)))
        r.close_session()
        return out

    compare(servers, scenario)


# -- SetWatches / SetWatches2 on reconnect ----------------------------------------------


@pytest.mark.parametrize("op", [101, 105], ids=["setWatches", "setWatches2"])
def test_set_watches_on_reconnect(servers, op):
    """A client sets data/exist/child watches (and, for SetWatches2, a
    persistent and a persistent-recursive watch), drops its connection without
    closing the session, another client changes some watched nodes, and the
    first reattaches to its session and re-registers the watches relative to
    the last zxid it saw: the events for what changed meanwhile (in order),
    the reply (xid -8), and the events of the watches that were re-armed."""
    T = _tag(f"setwatches{op}")

    def scenario(srv):
        rel = Rel(T)
        changer = RawClient(*srv.address)
        w = RawClient(*srv.address)
        setup = [_create(changer, T), _create(changer, T + "/d1", b"1"),
                 _create(changer, T + "/d2", b"2"), _create(changer, T + "/gone"),
                 _create(changer, T + "/e2"), _create(changer, T + "/c"),
                 _create(changer, T + "/c/k"), _create(changer, T + "/re"),
                 _create(changer, T + "/cgone")]
        data_w = [T + "/d1", T + "/d2", T + "/gone", T + "/re"]
        exist_w = [T + "/e1", T + "/e2", T + "/e3", T + "/flash"]
        child_w = [T, T + "/c", T + "/cgone"]
        for p in data_w:
            w.call(4, S.GetDataRequest(p, True))
        for p in exist_w:
            w.call(3, S.ExistsRequest(p, True))
        for p in child_w:
            w.call(8, S.GetChildrenRequest(p, True))
        persistent, recursive = [], []
        if op == 105:
            persistent, recursive = [T + "/d2"], [T + "/c"]
            w.call(106, S.AddWatchRequest(T + "/d2", 0))
            w.call(106, S.AddWatchRequest(T + "/c", 1))
        seen = w.last_zxid
        w.close_socket()
        changes = [changer.call(5, S.SetDataRequest(T + "/d1", b"x", -1))[0],
                   _create(changer, T + "/e1"),
                   changer.call(2, S.DeleteRequest(T + "/gone", -1))[0],
                   changer.call(5, S.SetDataRequest(T + "/c/k", b"x", -1))[0],
                   # deleted and re-created (data watch), created and deleted
                   # (exist watch), deleted (child watch)
                   changer.call(2, S.DeleteRequest(T + "/re", -1))[0], _create(changer, T + "/re"),
                   _create(changer, T + "/flash"),
                   changer.call(2, S.DeleteRequest(T + "/flash", -1))[0],
                   changer.call(2, S.DeleteRequest(T + "/cgone", -1))[0]]
        w._connect((w.session_id, w.passwd))
        if op == 101:
            body = S.SetWatches(seen, data_w, exist_w, child_w)
        else:
            body = S.SetWatches2(seen, data_w, exist_w, child_w, persistent, recursive)
        err, payload = w.call(op, body, xid=-8)
        out: list[Any] = [("setup", setup), ("changes", changes),
                          ("reply", err, payload.hex()),
                          ("events on reconnect", [(t, rel(p)) for t, p in w.events])]
        w.events.clear()
        later = [changer.call(5, S.SetDataRequest(T + "/d2", b"y", -1))[0],
                 _create(changer, T + "/e3"),
                 _create(changer, T + "/c/k2"),
                 changer.call(5, S.SetDataRequest(T + "/c/k", b"z", -1))[0],
                 _create(changer, T + "/new"),
                 _create(changer, T + "/flash"),
                 _create(changer, T + "/cgone")]
        _sync(w)
        out.append(("later", later, [(t, rel(p)) for t, p in w.events]))
        w.close_session()
        changer.close_session()
        return out

    ra, _ = compare(servers, scenario)
    assert ra[3][1], ra  # some events were delivered on reconnect


# -- getEphemerals and getAllChildrenNumber -------------------------------------------


def _ephemerals(r: RawClient, prefix: str, rel: Rel) -> tuple[int, list[Any]]:
    err, payload = r.call(103, S.GetEphemeralsRequest(prefix))
    if err:
        return err, []
    return err, sorted(rel(p) for p in decode(S.GetEphemeralsResponse, payload)[0].ephemerals)


def _all_children(r: RawClient, path: str) -> tuple[int, int | None]:
    err, payload = r.call(104, S.GetAllChildrenNumberRequest(path))
    if err:
        return err, None
    return err, decode(S.GetAllChildrenNumberResponse, payload)[0].totalNumber


def test_get_ephemerals_prefixes(servers):
    T = _tag("ephemerals")

    def scenario(srv):
        rel = Rel(T)
        c = RawClient(*srv.address)
        e = RawClient(*srv.address)
        o = RawClient(*srv.address)
        setup = [_create(c, T), _create(e, T + "/a", flags=1), _create(e, T + "/ab", flags=1),
                 _create(c, T + "/b"), _create(e, T + "/b/c", flags=1),
                 _create(e, T + "x", flags=1), _create(o, T + "/o", flags=1),
                 _create(e, T + "/s-", flags=3)]
        out: list[Any] = [("setup", setup)]
        for prefix in ("/", "", " ", " / ", "\t", T, " " + T, T + "/", T + "/a", T + "/b/c", T + "/b/c/",
                       T + "/zz", "/nonexistent", "noslash", T + "/s"):
            out.append((rel(prefix), _ephemerals(e, prefix, rel), _ephemerals(o, prefix, rel),
                        _ephemerals(c, prefix, rel)))
        for r in (e, o, c):
            r.close_session()
        return out

    compare(servers, scenario)


def test_get_all_children_number(servers):
    """On "/" (the root count is a known trap: compared exactly), on "/zookeeper",
    on subtrees, leaves, missing and invalid paths, before and after
    ephemerals go."""
    T = _tag("allchildren")

    def scenario(srv):
        c = RawClient(*srv.address)
        e = RawClient(*srv.address)
        out: list[Any] = [("root before", _all_children(c, "/"))]
        out.append(("setup", [_create(c, T), _create(c, T + "/a"), _create(c, T + "/a/x"),
                              _create(c, T + "/a/x/y"), _create(c, T + "/ab"),
                              _create(e, T + "/a/eph", flags=1), _create(c, T + "a")]))
        paths = ("/", "/zookeeper", "/zookeeper/quota", T, T + "/a", T + "/a/x",
                 T + "/a/x/y", T + "/missing", T + "/", "", "noslash")
        out.append(("with ephemeral", [(p.replace(T, "<T>"), _all_children(c, p))
                                       for p in paths]))
        e.close_session()
        out.append(("without", [(p.replace(T, "<T>"), _all_children(c, p)) for p in paths]))
        c.close_session()
        return out

    ra, rb = compare(servers, scenario)
    assert ra[0][1][1] is not None and ra[0][1][1] > 0, ra


# -- whoAmI -------------------------------------------------------------------------


def _who(r: RawClient) -> tuple[int, list[tuple[str, str]]]:
    err, payload = r.call(107, None)
    if err:
        return err, []
    # ZooKeeper keeps a connection's ids in a hash set: their order is not
    # part of the answer, their multiplicity is.
    return err, sorted((ci.authScheme, ci.user)
                       for ci in decode(S.WhoAmIResponse, payload)[0].clientInfo)


def test_who_am_i(servers):
    def scenario(srv):
        out: list[Any] = []
        r = RawClient(*srv.address)
        out.append(("none", _who(r)))
        for scheme, cred in [("digest", b"u1:p1"), ("digest", b"u1:p1"), ("digest", b"u2:p2"),
                             ("ip", b"127.0.0.1"), ("ip", b"10.0.0.1"), ("digest", b"u1:wrong")]:
            res = _call_or_loss(r, 100, S.AuthPacket(0, scheme, cred))
            out.append((scheme, cred, res[0], _who(r) if r.connected else "closed"))
        if r.connected:
            r.close_session()
        # an ip-only client
        r = RawClient(*srv.address)
        out.append(("ip only", _call_or_loss(r, 100, S.AuthPacket(0, "ip", b""))[0], _who(r)))
        r.close_session()
        # auth failure: reply, then connection closed
        r = RawClient(*srv.address)
        res = _call_or_loss(r, 100, S.AuthPacket(0, "digest", b"no-colon"))
        try:
            after = _who(r)
        except RawConnectionLoss:
            after = "closed"
        out.append(("bad digest", res[0], after))
        return out

    compare(servers, scenario)


# -- four-letter words ----------------------------------------------------------------


_NUM = re.compile(r"^-?\d+$")
_FLOAT = re.compile(r"^-?\d+\.\d+$")


def _kind(v: str) -> str:
    return "int" if _NUM.match(v) else "float" if _FLOAT.match(v) else "text"


def _kv(text: str, sep: str) -> list[tuple[str, str]]:
    out = []
    for line in text.splitlines():
        if sep in line:
            k, v = line.split(sep, 1)
            out.append((k, v.strip()))
    return out


def _shape(line: str) -> str:
    return re.sub(r"0x[0-9a-f]+", "H", re.sub(r"(?<![0-9a-zA-Z])\d+(\.\d+)?", "N", line))


class FourLetter:
    """Watches and sessions set up identically on a server, and its 4lw replies."""

    def __init__(self, srv, T: str) -> None:
        self.srv = srv
        self.rel = Rel(T)
        self.c1 = self.rel.name(RawClient(*srv.address), "c1")
        self.c2 = self.rel.name(RawClient(*srv.address), "c2")
        _create(self.c1, T, b"12345")
        _create(self.c1, T + "/a", b"ab")
        _create(self.c2, T + "/eph", flags=1)
        self.c1.call(4, S.GetDataRequest(T + "/a", True))
        self.c1.call(3, S.ExistsRequest(T + "/nope", True))
        self.c1.call(8, S.GetChildrenRequest(T, True))
        self.c2.call(4, S.GetDataRequest(T + "/a", True))
        self.c2.call(4, S.GetDataRequest(T, True))
        self.c2.call(3, S.ExistsRequest(T + "/eph", True))
        _sync(self.c1)
        self.zxid = self.c1.last_zxid

    def word(self, w: str) -> str:
        return self.srv.four_letter(w)

    def sid(self, hexid: str) -> str:
        return str(self.rel.owner(int(hexid, 16)))

    def close(self) -> None:
        self.c2.close_session()
        self.c1.close_session()


def _four_letter_view(f: FourLetter) -> dict[str, Any]:
    v: dict[str, Any] = {}
    rel = f.rel
    # srvr / stat: the same keys in the same order; deterministic values.
    for w in ("srvr", "stat"):
        text = f.word(w)
        kv = _kv(text, ": ")
        v[w + " keys"] = [k for k, _ in kv]
        d = dict(kv)
        v[w + " values"] = {
            "Latency shape": bool(re.match(r"^\d+/\d+\.\d+/\d+$", d.get("Latency min/avg/max", ""))),
            "Received/Sent int": (_kind(d.get("Received", "")), _kind(d.get("Sent", ""))),
            "Outstanding": d.get("Outstanding"),
            "Zxid == last seen": d.get("Zxid") == hex(f.zxid),
            "Mode": d.get("Mode"),
            "Node count": d.get("Node count"),
            "Connections >= 2": int(d.get("Connections", "0")) >= 2,
        }
        m = re.match(r"^Zookeeper version: (\d+\.\d+\.\d+)-.*, built on "
                     r"\d{4}-\d\d-\d\d \d\d:\d\d (UTC|GMT)$", text.splitlines()[0] if text else "")
        v[w + " first line"] = m.group(1) if m else text[:80]
        if w == "stat":
            lines = text.splitlines()
            i = lines.index("Clients:") if "Clients:" in lines else -1
            clients = []
            for line in lines[i + 1:]:
                if not line.strip():
                    break
                clients.append(_shape(line))
            v["stat client line shapes"] = sorted(set(clients))
    # cons: one line per connection; ours by session label, with their keys
    cons = {}
    for line in f.word("cons").splitlines():
        m = re.search(r"sid=(0x[0-9a-f]+)", line)
        if not m or f.sid(m.group(1)).startswith(("c1", "c2")) is False:
            continue
        fields = dict(x.split("=", 1) for x in line[line.index("(") + 1:-1].split(","))
        cons[f.sid(m.group(1))] = {
            "keys": list(fields),
            "lop": fields.get("lop"), "to": fields.get("to"),
            "lzxid": fields.get("lzxid") == hex(f.zxid) if fields.get("lop") == "SYNC" else "-",
            "shape": _shape(line.split("(", 1)[0]),
        }
    v["cons"] = cons
    # mntr: key list and order, value kinds, deterministic values
    mntr = _kv(f.word("mntr"), "\t")
    keys = [k for k, _ in mntr if not k.endswith("_per_namespace")]
    v["mntr keys"] = keys
    md = dict(mntr)
    v["mntr kinds"] = {k: _kind(md[k]) for k in keys if k != "zk_version"}
    v["mntr values"] = {k: md.get(k) for k in (
        "zk_server_state", "zk_ephemerals_count", "zk_znode_count", "zk_watch_count",
        "zk_approximate_data_size", "zk_outstanding_requests", "zk_local_sessions",
        "zk_auth_failed_count", "zk_connection_drop_probability", "zk_max_file_descriptor_count")}
    # conf: keys and the values both servers were configured with
    conf = _kv(f.word("conf"), "=")
    v["conf keys"] = [k for k, _ in conf]
    cd = dict(conf)
    v["conf values"] = {k: cd.get(k) for k in (
        "secureClientPort", "tickTime", "maxClientCnxns", "minSessionTimeout",
        "maxSessionTimeout", "clientPortListenBacklog", "serverId")}
    v["conf derived"] = (cd.get("clientPort") == str(f.srv.port),
                         cd.get("dataDir", "").endswith("/version-2"),
                         cd.get("dataDir") == cd.get("dataLogDir"),
                         _kind(cd.get("dataDirSize", "")))
    # envi: keys that are not about the runtime (java.*, python.*, os.memory.*)
    envi = f.word("envi")
    ev = _kv(envi, "=")
    v["envi first line"] = envi.splitlines()[0] if envi else ""
    v["envi version"] = ed_version = dict(_kv(envi, "=")).get("zookeeper.version", "")[:6]
    assert ed_version
    v["envi keys"] = [k for k, _ in ev
                      if not k.startswith(("java.", "python.", "os.memory."))]
    ed = dict(ev)
    # host.name: pinned by test_envi_host_name
    v["envi values"] = {k: ed.get(k) for k in ("os.name", "os.arch", "os.version",
                                                "user.name", "user.home")}
    # the short ones
    for w in ("ruok", "isro", "srst", "crst"):
        v[w] = f.word(w)
    v["dirs keys"] = [k for k, _ in _kv(f.word("dirs"), ": ")]
    # wchs / wchc / wchp: the same watches
    wchs = f.word("wchs").splitlines()
    v["wchs"] = [_shape(x) for x in wchs]
    v["wchs counts"] = wchs
    for w, outer in (("wchc", "session"), ("wchp", "path")):
        groups: dict[str, set] = {}
        cur = None
        for line in f.word(w).splitlines():
            if not line.strip():
                continue
            if line.startswith("\t"):
                item = line.strip()
                groups[cur].add(f.sid(item) if outer == "path" else rel(item))  # type: ignore[index]
            else:
                cur = f.sid(line.strip()) if outer == "session" else rel(line.strip())
                groups.setdefault(cur, set())  # type: ignore[arg-type]
        v[w] = {k: sorted(s) for k, s in groups.items() if k and (str(k).startswith(("c1", "c2", "<T>")))}
    return v


def test_four_letter_words(servers):
    T = _tag("fourletter")

    def scenario(srv):
        f = FourLetter(srv, T)
        try:
            return _four_letter_view(f)
        finally:
            f.close()

    ra, _ = compare(servers, scenario)
    assert ra["wchc"] and ra["cons"], ra


def test_mntr_per_namespace_keys(servers):
    """After a write under /x ZooKeeper 3.8.0 adds the summary set
    zk_{avg,min,max,cnt,sum}_x_write_per_namespace (and _read_per_namespace
    after reads); zkpy the same keys."""
    T = _tag("ns")

    def scenario(srv):
        r = RawClient(*srv.address)
        _create(r, T)
        r.call(4, S.GetDataRequest(T, False))
        keys = [k for k, _ in _kv(srv.four_letter("mntr"), "\t")
                if k.endswith("_per_namespace") and T[1:] in k]
        r.close_session()
        return keys

    compare(servers, scenario)


@pytest.mark.xfail(strict=True, reason="envi host.name: ZooKeeper prints InetAddress."
                   "getLocalHost().getCanonicalHostName() (the reverse lookup of the host "
                   "name's address: 'localhost' here, /etc/hosts maps vm to 127.0.0.1), zkpy "
                   "platform.node() ('vm'); the core may not resolve names (tests/test_purity.py)")
def test_envi_host_name(servers):
    compare(servers, lambda srv: dict(_kv(srv.four_letter("envi"), "=")).get("host.name"))


# -- sessions: expiry and the handshakes after it ---------------------------------------


def _handshake(srv, sid: int, passwd: bytes, timeout_ms: int = 1000,
               last_zxid: int = 0) -> tuple[Any, ...]:
    """One ConnectRequest on a fresh socket: the ConnectResponse fields, and
    whether the server then closed the connection."""
    with socket.create_connection(srv.address, timeout=5) as s:
        body = encode(S.ConnectRequest(0, last_zxid, timeout_ms, sid, passwd, False))
        s.sendall(struct.pack(">i", len(body)) + body)
        buf = b""
        while len(buf) < 4 or len(buf) < 4 + struct.unpack(">i", buf[:4])[0]:
            chunk = s.recv(4096)
            if not chunk:
                return ("closed before a reply", buf.hex())
            buf += chunk
        n = struct.unpack(">i", buf[:4])[0]
        resp, _ = decode(S.ConnectResponse, buf[4:4 + n])
        s.settimeout(1.5)
        try:
            closed = s.recv(1) == b""
        except TimeoutError:
            closed = False
        except OSError:
            closed = True
        return (n, resp.protocolVersion, resp.timeOut, "sid" if resp.sessionId == sid else
                resp.sessionId if resp.sessionId == 0 else "other sid",
                resp.passwd == passwd if resp.sessionId else resp.passwd.hex(),
                resp.readOnly, "closed" if closed else "open")


def test_session_expiry_and_reconnect_after_it(servers):
    """Negotiated timeouts, reattaching with a wrong and a right password, and
    the ConnectResponse (timeout 0, session id 0, zero password) for an
    expired or unknown session; the server closes those connections."""
    T = _tag("expiry")

    def scenario(srv):
        out: list[Any] = []
        for asked in (1, 999, 1000, 2500, 60000, 60001, 10 ** 9):
            r = RawClient(*srv.address, timeout_ms=asked)
            out.append(("negotiated", asked, r.timeout))
            r.close_session()
        v = RawClient(*srv.address, timeout_ms=1000)
        _create(v, T)
        sid, pw = v.session_id, v.passwd
        zx = v.last_zxid
        v.close_socket()
        wrong = bytes(16) if pw != bytes(16) else b"\x01" * 16
        out.append(("wrong password", _handshake(srv, sid, wrong)))
        out.append(("right password", _handshake(srv, sid, pw, last_zxid=zx)))
        out.append(("unknown session", _handshake(srv, sid ^ 0x5A5A, pw)))
        out.append(("zxid from the future", _handshake(srv, sid, pw, last_zxid=zx + 1000)))
        time.sleep(2.5)  # > timeout + a few ticks, nothing pings
        out.append(("after expiry", _handshake(srv, sid, pw, last_zxid=zx)))
        r = RawClient(*srv.address)
        err, payload = r.call(2, S.DeleteRequest(T, -1))
        out.append(("cleanup", err))
        r.close_session()
        out.append(("closed session", _handshake(srv, r.session_id, r.passwd)))
        return out

    compare(servers, scenario)


# -- error precedence grids ---------------------------------------------------------------


def _setup_parents(owner: RawClient, T: str) -> list[int]:
    """<T>/open (open ACL), <T>/ro (world READ only), <T>/eph (ephemeral),
    <T>/eph_ro (ephemeral, world READ only); each non-ephemeral has a child
    'exists' and 'full' (with a child of its own)."""
    res = [_create(owner, T)]
    for p in ("open", "ro"):
        res += [_create(owner, f"{T}/{p}"), _create(owner, f"{T}/{p}/exists"),
                _create(owner, f"{T}/{p}/full"), _create(owner, f"{T}/{p}/full/c")]
        for kind in ("leaf", "full2"):
            for v in (-1, 0, 5):
                res.append(_create(owner, f"{T}/{p}/{kind}{v}"))
                if kind == "full2":
                    res.append(_create(owner, f"{T}/{p}/{kind}{v}/c"))
        res.append(_create(owner, f"{T}/{p}/locked", acl=WORLD_READ))
    res.append(owner.call(7, S.SetACLRequest(T + "/ro", WORLD_READ, -1))[0])
    res.append(_create(owner, T + "/eph", flags=1))
    res.append(_create(owner, T + "/eph_ro", acl=WORLD_READ, flags=1))
    return res


def test_create_error_precedence(servers):
    """Bad path vs bad ACL vs missing parent vs NOAUTH on the parent vs
    NODEEXISTS vs NOCHILDRENFOREPHEMERALS, every combination, for plain,
    sequential and ephemeral creates (create and create2)."""
    T = _tag("create-grid")
    parents = ("open", "ro", "eph", "eph_ro", "missing")
    names = ("new", "exists", "bad/", ".", "new//x")
    acls = (("open", OPEN_ACL), ("bad", BAD_ACL), ("empty", []))

    def scenario(srv):
        rel = Rel(T)
        owner = RawClient(*srv.address)
        other = RawClient(*srv.address)
        out: list[Any] = [("setup", _setup_parents(owner, T))]
        for parent, name, (aname, acl), flags, op in itertools.product(
                parents, names, acls, (0, 2, 1), (1, 15)):
            path = f"{T}/{parent}/{name}"
            err, payload = other.call(op, S.CreateRequest(path, b"", acl, flags))
            created = None
            if err == 0:
                created = rel(decode(S.CreateResponse, payload)[0].path)
            out.append((parent, name, aname, flags, op, err, created))
        other.close_session()
        owner.close_session()
        return out

    ra, _ = compare(servers, scenario)
    errs = {r[5] for r in ra[1:]}
    assert {-8, -101, -102, -110, -108, -114} <= errs, errs


def test_delete_error_precedence(servers):
    """NOAUTH (parent without DELETE) vs NONODE vs BADVERSION vs NOTEMPTY,
    every combination; plus "/", "/zookeeper", bad paths, a node whose own
    ACL forbids everything (irrelevant: the parent's ACL counts), and another
    session's ephemeral."""
    T = _tag("delete-grid")

    def scenario(srv):
        owner = RawClient(*srv.address)
        other = RawClient(*srv.address)
        out: list[Any] = [("setup", _setup_parents(owner, T))]
        for parent in ("open", "ro", "missing"):
            for kind in ("leaf", "full2", "absent"):
                for v in (-1, 0, 5):
                    path = f"{T}/{parent}/{kind}{v}"
                    out.append((parent, kind, v, other.call(2, S.DeleteRequest(path, v))[0]))
            out.append((parent, "locked", other.call(2, S.DeleteRequest(f"{T}/{parent}/locked",
                                                                         -1))[0]))
        for path in ("/", "/zookeeper", "/zookeeper/quota", "/zookeeper/config", T + "/open/",
                     T + "//open", "", "noslash", T + "/eph", T + "/eph_ro"):
            out.append((path.replace(T, "<T>"), other.call(2, S.DeleteRequest(path, -1))[0]))
        other.close_session()
        owner.close_session()
        return out

    ra, _ = compare(servers, scenario)
    errs = {r[-1] for r in ra[1:]}
    assert {0, -101, -102, -103, -111, -8} <= errs, errs
