"""DataTree and Prep together: txns made by Prep.prepare, applied by DataTree.apply."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from zkpy.auth.acl import AuthProviders, digest
from zkpy.jute import schema as S
from zkpy.jute.protocol import CreateMode, Err, EventType, Op, Perms
from zkpy.server.prep import Prep, Request
from zkpy.tree.datatree import DataTree

REF = json.loads((Path(__file__).parent / "data" / "reference_behaviour.json").read_text())
OPEN = [S.ACL(Perms.ALL, S.Id("world", "anyone"))]


def _events(rc):
    """(path, event type) of each trigger; the third field is the node's ACL."""
    return [(path, etype) for path, etype, _acl in rc.triggers]


class Env:
    def __init__(self, extended: bool = False, first_zxid: int = 0) -> None:
        self.tree = DataTree()
        self.prep = Prep(self.tree, AuthProviders(), extended_types=extended)
        self.zxid = first_zxid

    def prepare(self, op: int, body: Any, sid: int = 0x100, ids: Any = ()) -> Request:
        self.zxid += 1
        req = Request(sid, self.zxid, op, body, list(ids))
        self.prep.prepare(req, self.zxid, 1_000_000 + self.zxid)
        return req

    def apply(self, req: Request) -> Any:
        rc = self.tree.apply(req.hdr, req.txn)
        self.prep.applied(req.hdr.zxid)
        return rc

    def run(self, op: int, body: Any, **kw: Any) -> Any:
        return self.apply(self.prepare(op, body, **kw))

    def create(self, path: str, data: bytes = b"", flags: int = 0, acl: Any = None,
               op: int = Op.create, **kw: Any) -> Any:
        return self.run(op, S.CreateRequest(path, data, OPEN if acl is None else acl, flags), **kw)

    def delete(self, path: str, version: int = -1, **kw: Any) -> Any:
        return self.run(Op.delete, S.DeleteRequest(path, version), **kw)

    def set(self, path: str, data: bytes, version: int = -1, **kw: Any) -> Any:
        return self.run(Op.setData, S.SetDataRequest(path, data, version), **kw)

    def stat(self, path: str) -> Any:
        return self.tree.get(path).stat()


def test_initial_tree_matches_apache_zookeeper() -> None:
    tree = DataTree()
    ref = REF["e_initial_tree"]["nodes"]
    assert sorted(tree.nodes) == sorted(ref)
    for path, want in ref.items():
        node = tree.get(path)
        stat = node.stat()
        assert {n: getattr(stat, n) for n, _ in S.Stat.FIELDS} == want["stat"], path
        assert sorted(tree.children(path, node)) == want["children"]
        assert [{"perms": a.perms, "scheme": a.id.scheme, "id": a.id.id} for a in node.acl] == want["acl"]
        assert (node.data or b"").hex() == want["data_hex"]


def test_sequential_numbering_replays_reference() -> None:
    env = Env(first_zxid=1)  # zxid 1 was the reference client's createSession
    seq = S.CreateRequest("/seq/n-", b"", OPEN, CreateMode.PERSISTENT_SEQUENTIAL)
    names: list[Any] = []

    def create_seq(prefix: str = "/seq/n-", flags: int = CreateMode.PERSISTENT_SEQUENTIAL) -> None:
        rc = env.create(prefix, flags=flags)
        assert rc.err == 0
        names.append(rc.path)

    steps = [
        lambda: names.append(env.create("/seq").err or None),
        create_seq, create_seq, create_seq,
        lambda: names.append(env.delete("/seq/n-0000000001").err or None),
        create_seq,
        lambda: names.append(env.run(Op.multi, [
            (Op.create, seq), (Op.check, S.CheckVersionRequest("/seq", 12345))]).multi and None),
        create_seq,
        lambda: names.append([r.path for r in env.run(Op.multi, [(Op.create, seq), (Op.create, seq)]).multi]),
        lambda: names.append(env.create("/seq/plain").err or None),
        create_seq,
        lambda: names.append(env.set("/seq", b"x").err or None),
        lambda: names.append((env.delete("/seq/n-0000000003").err or env.delete("/seq/n-0000000004").err) or None),
        create_seq,
        lambda: names.append((env.create("/seq/tmp").err or env.delete("/seq/tmp").err) or None),
        create_seq,
        lambda: create_seq("/seq/e-", CreateMode.EPHEMERAL_SEQUENTIAL),
    ]
    ref_steps = REF["a_sequential_numbering"]["steps"]
    assert len(steps) == len(ref_steps)
    for step, want in zip(steps, ref_steps, strict=True):
        step()
        got = names[-1]
        if isinstance(got, list):
            assert got == ["/seq/n-0000000005", "/seq/n-0000000006"], want["step"]
        else:
            assert got == want["name"], want["step"]
        st_ = env.stat("/seq")
        assert st_.cversion == want["parent_cversion"], want["step"]
        assert st_.pzxid == want["parent_pzxid"], want["step"]
        assert st_.numChildren == want["parent_numChildren"], want["step"]
        assert sorted(env.tree.children("/seq", env.tree.get("/seq"))) == want["children"], want["step"]


def test_stat_fields_through_create_set_setacl_delete() -> None:
    env = Env()
    rc = env.create("/a", b"hello")
    assert rc.err == 0 and rc.path == "/a"
    zc = env.zxid
    s = env.stat("/a")
    assert (s.czxid, s.mzxid, s.pzxid) == (zc, zc, zc)
    assert s.ctime == s.mtime == 1_000_000 + zc
    assert (s.version, s.cversion, s.aversion, s.ephemeralOwner) == (0, 0, 0, 0)
    assert (s.dataLength, s.numChildren) == (5, 0)
    assert rc.stat.stat() == s  # a single op reports the live node; freeze it to compare
    assert _events(rc) == [("/a", EventType.NodeCreated), ("/", EventType.NodeChildrenChanged)]
    root = env.stat("/")
    assert (root.cversion, root.numChildren, root.pzxid) == (0, 2, zc)

    rc = env.set("/a", b"xy", version=0)
    zs = env.zxid
    s = env.stat("/a")
    assert (s.czxid, s.mzxid, s.pzxid, s.version, s.dataLength) == (zc, zs, zc, 1, 2)
    assert s.mtime == 1_000_000 + zs and s.ctime == 1_000_000 + zc
    assert _events(rc) == [("/a", EventType.NodeDataChanged)]
    assert env.set("/a", b"z", version=0).err == Err.BADVERSION
    assert env.stat("/a").version == 1

    ra = [S.ACL(Perms.READ | Perms.ADMIN, S.Id("world", "anyone"))]
    rc = env.run(Op.setACL, S.SetACLRequest("/a", ra, 0))
    assert rc.err == 0 and _events(rc) == []
    s = env.stat("/a")
    assert (s.aversion, s.version, s.mzxid) == (1, 1, zs)
    assert [a.perms for a in env.tree.get("/a").acl] == [Perms.READ | Perms.ADMIN]
    assert env.run(Op.setACL, S.SetACLRequest("/a", OPEN, 0)).err == Err.BADVERSION

    assert env.create("/a/b").err == Err.NOAUTH  # no CREATE any more
    env.run(Op.setACL, S.SetACLRequest("/a", OPEN, -1))
    env.create("/a/b")
    s = env.stat("/a")
    assert (s.cversion, s.numChildren, s.pzxid) == (1, 1, env.zxid)
    rc = env.delete("/a/b")
    assert rc.err == 0
    assert _events(rc) == [("/a/b", EventType.NodeDeleted), ("/a", EventType.NodeChildrenChanged)]
    s = env.stat("/a")
    assert (s.cversion, s.numChildren, s.pzxid) == (2, 0, env.zxid)
    assert env.tree.get("/a/b") is None


def test_null_data_and_version_wraps() -> None:
    env = Env()
    env.create("/n", None)  # type: ignore[arg-type]
    assert env.stat("/n").dataLength == 0
    env.tree.get("/n").version = 0x7FFFFFFF
    env.set("/n", b"1")
    assert env.stat("/n").version == -0x80000000


def test_create_error_precedence() -> None:
    env = Env()
    env.create("/locked")
    env.create("/locked/kid")
    read_only = [S.ACL(Perms.ALL & ~Perms.CREATE, S.Id("world", "anyone"))]
    assert env.run(Op.setACL, S.SetACLRequest("/locked", read_only, -1)).err == 0
    env.create("/e", flags=CreateMode.EPHEMERAL)
    assert env.create("/x", flags=7).err == Err.BADARGUMENTS
    assert env.create("/missing/x", flags=7).err == Err.BADARGUMENTS  # flags before parent
    assert env.create("/missing/x", acl=[]).err == Err.INVALIDACL  # ACL before parent
    assert env.create("/missing/x").err == Err.NONODE
    assert env.create("/locked/kid").err == Err.NOAUTH  # NoAuth before NodeExists
    assert env.create("/locked/new").err == Err.NOAUTH
    assert env.create("/e").err == Err.NODEEXISTS
    assert env.create("/e/kid").err == Err.NOCHILDRENFOREPHEMERALS
    assert env.create("/e/kid", acl=[]).err == Err.INVALIDACL
    # (the parent is looked up before the full path is validated: "/a/" with no /a is NoNode)
    assert env.create("/nope/").err == Err.NONODE
    for bad in ("noslash", "/e/", "/e/.", "/e/..", "/x\u0001", "/x\ud800"):
        assert env.create(bad).err == Err.BADARGUMENTS, bad
    assert env.create("/e/kid", acl=[S.ACL(31, S.Id("digest", "nocolon"))]).err == Err.INVALIDACL


def test_set_delete_setacl_error_precedence() -> None:
    env = Env()
    env.create("/ro", acl=[S.ACL(Perms.READ, S.Id("world", "anyone"))])
    env.create("/p")
    env.create("/p/c")
    assert env.set("/missing", b"", 5).err == Err.NONODE
    assert env.set("/ro", b"", 99).err == Err.NOAUTH  # NoAuth before BadVersion
    assert env.set("/ro/", b"").err == Err.BADARGUMENTS
    assert env.delete("/p", version=7).err == Err.BADVERSION  # version before NotEmpty
    assert env.delete("/p").err == Err.NOTEMPTY
    assert env.delete("/missing/x").err == Err.NONODE
    acl = S.SetACLRequest("/missing", [], -1)
    assert env.run(Op.setACL, acl).err == Err.INVALIDACL  # ACL checked before the node
    assert env.run(Op.setACL, S.SetACLRequest("/missing", OPEN, -1)).err == Err.NONODE
    assert env.run(Op.setACL, S.SetACLRequest("/ro", OPEN, 5)).err == Err.NOAUTH
    for special in ("/", "/zookeeper", "/zookeeper/quota", "/zookeeper/config"):
        assert env.delete(special).err == Err.BADARGUMENTS, special
        assert env.tree.get(special) is not None


def test_failed_write_is_an_error_txn_with_its_own_zxid() -> None:
    env = Env()
    req = env.prepare(Op.create, S.CreateRequest("/missing/x", b"", OPEN, 0))
    assert req.hdr.type == Op.error and req.hdr.zxid == env.zxid
    assert req.txn == S.ErrorTxn(Err.NONODE)
    rc = env.apply(req)
    assert rc.err == Err.NONODE and env.tree.last_zxid == env.zxid


def test_multi_atomic_and_per_op_results() -> None:
    env = Env()
    env.create("/b")
    before = {p: n.stat() for p, n in env.tree.nodes.items()}
    rc = env.run(Op.multi, [
        (Op.create, S.CreateRequest("/c", b"", OPEN, 0)),
        (Op.setData, S.SetDataRequest("/b", b"x", -1)),
        (Op.check, S.CheckVersionRequest("/b", 99)),
        (Op.delete, S.DeleteRequest("/b", -1)),
    ])
    assert [(r.type, r.err) for r in rc.multi] == [
        (Op.error, 0), (Op.error, 0), (Op.error, Err.BADVERSION), (Op.error, Err.RUNTIMEINCONSISTENCY)]
    assert rc.err == Err.BADVERSION and _events(rc) == []
    assert {p: n.stat() for p, n in env.tree.nodes.items()} == before

    rc = env.run(Op.multi, [
        (Op.create, S.CreateRequest("/m", b"", OPEN, 0)),
        (Op.create2, S.CreateRequest("/m/c", b"d", OPEN, 0)),
        (Op.setData, S.SetDataRequest("/m", b"x", 0)),
        (Op.check, S.CheckVersionRequest("/m", 1)),
        (Op.delete, S.DeleteRequest("/b", 0)),
    ])
    assert rc.err == 0
    assert [(r.type, r.err, r.path) for r in rc.multi] == [
        (Op.create, 0, "/m"), (Op.create2, 0, "/m/c"), (Op.setData, 0, "/m"), (Op.check, 0, "/m"),
        (Op.delete, 0, "/b")]
    z = env.zxid
    assert env.stat("/m").czxid == z and env.stat("/m/c").czxid == z and env.stat("/m").version == 1
    assert env.tree.get("/b") is None
    assert ("/m", EventType.NodeCreated) in _events(rc) and ("/b", EventType.NodeDeleted) in _events(rc)


def test_future_state_sees_inflight_txns() -> None:
    env = Env()
    r1 = env.prepare(Op.create, S.CreateRequest("/a", b"", OPEN, 0))
    r2 = env.prepare(Op.create, S.CreateRequest("/a/b", b"", OPEN, 0))
    r3 = env.prepare(Op.create, S.CreateRequest("/a", b"", OPEN, 0))
    s1 = env.prepare(Op.create, S.CreateRequest("/a/s", b"", OPEN, CreateMode.PERSISTENT_SEQUENTIAL))
    assert r2.hdr.type == Op.create and r3.txn == S.ErrorTxn(Err.NODEEXISTS)
    assert s1.txn.path == "/a/s0000000001"
    assert env.prep.outstanding() > 0
    for r in (r1, r2, r3, s1):
        env.apply(r)
    assert env.tree.get("/a/b") is not None and env.tree.get("/a/s0000000001") is not None
    assert env.prep.outstanding() == 0
    # delete then re-create, both in flight
    d = env.prepare(Op.delete, S.DeleteRequest("/a/b", -1))
    c = env.prepare(Op.create, S.CreateRequest("/a/b", b"new", OPEN, 0))
    v = env.prepare(Op.setData, S.SetDataRequest("/a/b", b"v", 0))
    assert (d.hdr.type, c.hdr.type, v.hdr.type) == (Op.delete, Op.create, Op.setData)
    for r in (d, c, v):
        assert env.apply(r).err == 0
    assert env.tree.get("/a/b").data == b"v"


def test_failed_multi_is_rolled_back_from_future_state() -> None:
    env = Env()
    m = env.prepare(Op.multi, [(Op.create, S.CreateRequest("/x", b"", OPEN, 0)),
                               (Op.check, S.CheckVersionRequest("/nope", 0))])
    after = env.prepare(Op.create, S.CreateRequest("/x/y", b"", OPEN, 0))
    again = env.prepare(Op.create, S.CreateRequest("/x", b"", OPEN, 0))
    assert after.txn == S.ErrorTxn(Err.NONODE)
    assert again.hdr.type == Op.create
    for r in (m, after, again):
        env.apply(r)
    assert env.tree.get("/x") is not None and env.tree.get("/x/y") is None


def test_reapplying_a_create_is_idempotent() -> None:
    env = Env()
    env.create("/p")
    req = env.prepare(Op.create, S.CreateRequest("/p/c", b"", OPEN, 0))
    assert env.apply(req).err == 0
    before = env.stat("/p")
    rc = env.tree.apply(req.hdr, req.txn)
    assert rc.err == Err.NODEEXISTS and _events(rc) == []
    assert env.stat("/p") == before
    # A replayed create whose node was later deleted must not move the parent's
    # creation count or pzxid back (fuzzy-snapshot replay).
    env.delete("/p/c")
    parent = env.tree.get("/p")
    ccount, pzxid = parent.ccount, parent.pzxid
    assert env.tree.apply(req.hdr, req.txn).err == 0
    assert (parent.ccount, parent.pzxid) == (ccount, pzxid)


def test_ephemerals_index_and_close_session() -> None:
    env = Env()
    env.create("/d")
    env.create("/d/e1", flags=CreateMode.EPHEMERAL, sid=7)
    env.create("/d/e2", flags=CreateMode.EPHEMERAL_SEQUENTIAL, sid=7)
    env.create("/other", flags=CreateMode.EPHEMERAL, sid=8)
    assert env.tree.ephemerals_of(7) == {"/d/e1", "/d/e20000000001"}
    assert env.stat("/d/e1").ephemeralOwner == 7
    env.delete("/d/e1")
    assert env.tree.ephemerals_of(7) == {"/d/e20000000001"}
    env.create("/d/e3", flags=CreateMode.EPHEMERAL, sid=7)
    req = env.prepare(Op.closeSession, None, sid=7)
    assert sorted(req.txn.paths2Delete) == ["/d/e20000000001", "/d/e3"]
    rc = env.apply(req)
    assert ("/d/e3", EventType.NodeDeleted) in _events(rc)
    assert ("/d", EventType.NodeChildrenChanged) in _events(rc)
    assert env.tree.ephemerals_of(7) == set() and env.tree.get("/d/e3") is None
    assert env.tree.ephemerals_of(8) == {"/other"} and env.stat("/d").numChildren == 0


def test_close_session_sees_inflight_ephemeral() -> None:
    env = Env()
    c = env.prepare(Op.create, S.CreateRequest("/eph", b"", OPEN, CreateMode.EPHEMERAL), sid=9)
    close = env.prepare(Op.closeSession, None, sid=9)
    assert close.txn.paths2Delete == ["/eph"]
    env.apply(c)
    env.apply(close)
    assert env.tree.get("/eph") is None and env.tree.ephemerals_of(9) == set()


def test_containers_and_ttl_extended_types() -> None:
    off = Env(extended=False)
    ttl = S.CreateTTLRequest("/t", b"", OPEN, CreateMode.PERSISTENT_WITH_TTL, 1000)
    assert off.run(Op.createTTL, ttl).err == Err.UNIMPLEMENTED
    rc = off.create("/c", flags=CreateMode.CONTAINER, op=Op.createContainer)
    assert rc.err == 0 and "/c" in off.tree.containers and off.stat("/c").ephemeralOwner == 0
    assert off.create("/c/kid").err == 0  # containers may have children

    on = Env(extended=True)
    assert on.run(Op.createTTL, ttl).err == 0
    assert "/t" in on.tree.ttls and on.stat("/t").ephemeralOwner == 0
    assert on.create("/t/kid").err == 0
    for bad_ttl in (0, -5, (1 << 40)):
        req = S.CreateTTLRequest("/t2", b"", OPEN, CreateMode.PERSISTENT_WITH_TTL, bad_ttl)
        assert on.run(Op.createTTL, req).err == Err.BADARGUMENTS, bad_ttl
    seq = S.CreateTTLRequest("/t/s-", b"", OPEN, CreateMode.PERSISTENT_SEQUENTIAL_WITH_TTL, 5)
    assert on.run(Op.createTTL, seq).path == "/t/s-0000000001"
    assert on.run(Op.createTTL, S.CreateTTLRequest("/t3", b"", OPEN, 0, 100)).err == Err.BADARGUMENTS
    on.delete("/t/kid")
    on.delete("/t/s-0000000001")
    assert on.delete("/t").err == 0 and "/t" not in on.tree.ttls


def test_acl_enforced_in_prep_and_skip_acl() -> None:
    env = Env()
    user = S.Id("digest", digest("u:p"))
    env.create("/sec", acl=[S.ACL(Perms.ALL, user)])
    assert env.set("/sec", b"x").err == Err.NOAUTH
    assert env.set("/sec", b"x", ids=[user]).err == 0
    assert env.set("/sec", b"y", ids=[S.Id("super", "")]).err == 0
    env.prep.skip_acl = True
    assert env.set("/sec", b"z").err == 0


# -- model-based test -----------------------------------------------------------

NAMES = st.sampled_from(["a", "b", "c"])


class TreeModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.env = Env()
        self.model: dict[str, dict[str, Any]] = {}  # path -> {data, version, creates}

    def _path(self, names: list[str]) -> str:
        return "/m/" + "/".join(names) if names else "/m"

    @rule()
    @precondition(lambda self: "/m" not in self.model)
    def make_root(self) -> None:
        assert self.env.create("/m").err == 0
        self.model["/m"] = {"data": b"", "version": 0, "creates": 0}

    @rule(names=st.lists(NAMES, min_size=1, max_size=3), data=st.binary(max_size=4))
    def create(self, names: list[str], data: bytes) -> None:
        path = self._path(names)
        parent = path[:path.rfind("/")]
        rc = self.env.create(path, data)
        if parent not in self.model:
            assert rc.err == Err.NONODE
        elif path in self.model:
            assert rc.err == Err.NODEEXISTS
        else:
            assert rc.err == 0
            self.model[path] = {"data": data, "version": 0, "creates": 0}
            self.model[parent]["creates"] += 1

    @rule(names=st.lists(NAMES, min_size=1, max_size=3))
    def delete(self, names: list[str]) -> None:
        path = self._path(names)
        rc = self.env.delete(path)
        if path not in self.model:
            assert rc.err == Err.NONODE
        elif any(p.startswith(path + "/") for p in self.model):
            assert rc.err == Err.NOTEMPTY
        else:
            assert rc.err == 0
            del self.model[path]

    @rule(names=st.lists(NAMES, max_size=3), data=st.binary(max_size=4), match=st.booleans())
    def set_data(self, names: list[str], data: bytes, match: bool) -> None:
        path = self._path(names)
        node = self.model.get(path)
        version = (node["version"] if match else node["version"] + 1) if node else 0
        rc = self.env.set(path, data, version)
        if node is None:
            assert rc.err == Err.NONODE
        elif not match:
            assert rc.err == Err.BADVERSION
        else:
            assert rc.err == 0
            node["data"], node["version"] = data, node["version"] + 1

    @invariant()
    def tree_matches_model(self) -> None:
        tree = self.env.tree
        assert {p for p in tree.nodes if p.startswith("/m")} == set(self.model)
        for path, want in self.model.items():
            s = tree.get(path).stat()
            kids = {p for p in self.model if p.rsplit("/", 1)[0] == path}
            assert tree.get(path).data == want["data"]
            assert s.version == want["version"]
            assert s.numChildren == len(kids)
            assert s.cversion == 2 * want["creates"] - len(kids)
        assert self.env.prep.outstanding() == 0


TreeModel.TestCase.settings = settings(max_examples=40, stateful_step_count=30, deadline=None)
test_tree_against_model = TreeModel.TestCase


def test_wire_stat_is_the_encoded_stat_of_every_kind_of_node() -> None:
    """Replies pack a live node's Stat in one call (``Node.wire_stat``); the bytes
    are what the codec makes of the same node as a Stat record, derived fields
    (cversion, ephemeralOwner, dataLength, numChildren) included."""
    from zkpy.jute.codec import encode

    env = Env(extended=True)
    env.create("/p", b"data")
    env.create("/p/a-", flags=CreateMode.PERSISTENT_SEQUENTIAL)
    env.create("/p/b-", flags=CreateMode.PERSISTENT_SEQUENTIAL)
    env.delete("/p/a-0000000000")  # cversion counts creations and deletions
    env.create("/e", b"", flags=CreateMode.EPHEMERAL, sid=0x1234)
    env.create("/c", flags=CreateMode.CONTAINER, op=Op.createContainer)
    env.run(Op.createTTL, S.CreateTTLRequest("/t", b"x", OPEN, CreateMode.PERSISTENT_WITH_TTL, 99))
    env.run(Op.create, S.CreateRequest("/n", None, OPEN, 0))  # null data
    env.set("/p", b"more", version=0)
    for path in ("/", "/p", "/p/b-0000000001", "/e", "/c", "/t", "/n", "/zookeeper/quota"):
        node = env.tree.get(path)
        assert node.wire_stat() == encode(node.stat()) == encode(S.ExistsResponse(node)), path
    assert env.stat("/e").ephemeralOwner == 0x1234 and env.stat("/p").cversion == 3
