"""ACLs: digest hashing, ip masks, every permission bit through the core, auth failures."""

from __future__ import annotations

import base64
import hashlib

import pytest
from zk_harness import OPEN, Client, connected, make_core

from zkpy.auth.acl import AuthProviders, digest, mask_digests
from zkpy.jute import schema as S
from zkpy.jute.protocol import Err, Op, Perms, ZkError


def _independent_digest(user_pw: str) -> str:
    user = user_pw.split(":")[0]
    return user + ":" + base64.b64encode(hashlib.sha1(user_pw.encode()).digest()).decode()


def test_digest_known_values() -> None:
    # The value Kazoo computed client-side for user:pw in the recorded set_acl_digest frame.
    assert digest("user:pw") == "user:2Om+GBbT2q/tS6pdvACZbbm7/1A="
    for text in ("user:pw", "a:b:c", "üser:pässword", "u:", ":p"):
        assert digest(text) == _independent_digest(text)
    assert digest("a:b:c").startswith("a:")


@pytest.mark.parametrize("remote,acl_id,ok", [
    ("10.1.2.3", "10.1.2.3", True),
    ("10.1.2.4", "10.1.2.3", False),
    ("10.1.2.3", "10.1.0.0/16", True),
    ("10.2.2.3", "10.1.0.0/16", False),
    ("10.1.2.3", "10.1.2.99/24", True),
    ("192.168.1.1", "0.0.0.0/0", True),
    ("10.1.2.3", "10.1.2.3/32", True),
    ("10.1.2.4", "10.1.2.3/31", False),
    ("10.1.2.2", "10.1.2.3/31", True),
    ("127.0.0.1", "127.0.0.0/8", True),
    ("::1", "::1", True),
    ("not-an-ip", "10.0.0.0/8", False),
    ("10.1.2.3", "garbage", False),
])
def test_ip_matching_with_masks(remote: str, acl_id: str, ok: bool) -> None:
    assert AuthProviders().matches("ip", remote, acl_id) is ok


@pytest.mark.parametrize("ident,valid", [
    ("10.0.0.1", True), ("10.0.0.0/8", True), ("10.0.0.0/32", True), ("10.0.0.0/33", False),
    ("10.0.0.0/x", False), ("10.0.0.0/²", False), ("10.0.0", False), ("", False), ("::1/128", True),
])
def test_ip_acl_validity(ident: str, valid: bool) -> None:
    assert AuthProviders().is_valid("ip", ident) is valid


def test_check_and_fixup_units() -> None:
    ap = AuthProviders()
    user = S.Id("digest", digest("u:p"))
    acl = [S.ACL(Perms.READ | Perms.WRITE, user)]
    ap.check(acl, Perms.READ, [user])
    ap.check(acl, Perms.WRITE, [S.Id("ip", "1.2.3.4"), user])
    with pytest.raises(ZkError) as e:
        ap.check(acl, Perms.DELETE, [user])
    assert e.value.code == Err.NOAUTH
    ap.check(acl, Perms.DELETE, [S.Id("super", "")])
    ap.check([], Perms.ADMIN, [])  # an empty ACL allows everything
    expanded = ap.fixup("/x", [S.Id("ip", "1.1.1.1"), user], [S.ACL(Perms.ALL, S.Id("auth", ""))])
    assert expanded == [S.ACL(Perms.ALL, user)]
    dup = ap.fixup("/x", [], OPEN + OPEN)
    assert dup == OPEN
    assert mask_digests([S.ACL(1, user)]) == [S.ACL(1, S.Id("digest", "u:x"))]


@pytest.mark.parametrize("acl", [
    [], None,
    [S.ACL(31, S.Id("world", "somebody"))],
    [S.ACL(31, S.Id("nosuch", "x"))],
    [S.ACL(31, S.Id("digest", "nocolon"))],
    [S.ACL(31, S.Id("digest", "a:b:c"))],
    [S.ACL(31, S.Id("ip", "300.0.0.1"))],
    [S.ACL(31, S.Id("ip", "1.2.3.4/²"))],
    [S.ACL(31, S.Id("auth", ""))],   # no authenticated id to expand to
    OPEN + [S.ACL(31, S.Id("ip", "bad"))],
], ids=repr)
def test_invalid_acls_via_core(acl: list | None) -> None:
    core = make_core()
    c = connected(core)
    assert c.create("/x", acl=acl) == Err.INVALIDACL
    assert c.create("/ok") == 0
    assert c.call(Op.setACL, S.SetACLRequest("/ok", acl, -1))[0] == Err.INVALIDACL
    assert core.tree.get("/x") is None


def _everything_but(bit: int) -> list:
    return [S.ACL(Perms.ALL & ~bit, S.Id("world", "anyone"))]


OPERATIONS = {
    Perms.READ: lambda c: c.get("/n")[0],
    Perms.WRITE: lambda c: c.set("/n", b"w"),
    Perms.CREATE: lambda c: c.create("/n/kid"),
    Perms.DELETE: lambda c: c.delete("/n/victim"),
    Perms.ADMIN: lambda c: c.call(Op.setACL, S.SetACLRequest("/n", OPEN, -1))[0],
}


@pytest.mark.parametrize("bit", list(OPERATIONS), ids=["READ", "WRITE", "CREATE", "DELETE", "ADMIN"])
def test_each_permission_bit_world(bit: int) -> None:
    core = make_core()
    c = connected(core)
    assert c.create("/n") == 0 and c.create("/n/victim") == 0
    assert c.call(Op.setACL, S.SetACLRequest("/n", _everything_but(bit), -1))[0] == 0
    assert OPERATIONS[bit](c) == Err.NOAUTH
    for other, op in OPERATIONS.items():
        if other not in (bit, Perms.ADMIN) and not (bit == Perms.CREATE and other == Perms.DELETE):
            assert op(c) == 0, other
    core.tree.get("/n").acl = core.tree.intern_acl(OPEN)
    assert OPERATIONS[bit](c) == 0


@pytest.mark.parametrize("bit", list(OPERATIONS), ids=["READ", "WRITE", "CREATE", "DELETE", "ADMIN"])
def test_each_permission_bit_digest(bit: int) -> None:
    core = make_core()
    owner = connected(core)
    stranger = connected(core, port=40001)
    assert owner.create("/n") == 0 and owner.create("/n/victim") == 0
    [(hdr, _)] = owner.add_auth("digest", b"alice:secret")
    assert hdr.err == 0
    acl = [S.ACL(bit, S.Id("digest", digest("alice:secret")))]
    assert owner.call(Op.setACL, S.SetACLRequest("/n", acl, -1))[0] == 0
    assert OPERATIONS[bit](stranger) == Err.NOAUTH
    [(hdr, _)] = stranger.add_auth("digest", b"alice:wrong")
    assert hdr.err == 0  # a wrong password authenticates a different id
    assert OPERATIONS[bit](stranger) == Err.NOAUTH
    assert OPERATIONS[bit](owner) == 0


def test_ip_acl_via_core() -> None:
    core = make_core()
    local = connected(core, host="127.0.0.1")
    remote = connected(core, host="10.9.8.7", port=1)
    acl = [S.ACL(Perms.ALL, S.Id("ip", "127.0.0.0/8"))]
    assert local.create("/ip", acl=acl) == 0
    assert local.get("/ip")[0] == 0
    assert remote.get("/ip")[0] == Err.NOAUTH
    assert remote.set("/ip", b"x") == Err.NOAUTH


def test_auth_scheme_acl_and_super() -> None:
    core = make_core(super_digest=digest("super:admin"))
    c = connected(core)
    assert c.create("/a", acl=[S.ACL(Perms.ALL, S.Id("auth", ""))]) == Err.INVALIDACL
    c.add_auth("digest", b"bob:pw")
    assert c.create("/a", acl=[S.ACL(Perms.ALL, S.Id("auth", ""))]) == 0
    assert list(core.tree.get("/a").acl) == [S.ACL(Perms.ALL, S.Id("digest", digest("bob:pw")))]
    other = connected(core, port=40002)
    assert other.get("/a")[0] == Err.NOAUTH
    admin = connected(core, port=40003)
    [(hdr, _)] = admin.add_auth("digest", b"super:admin")
    assert hdr.err == 0
    assert admin.get("/a")[0] == 0 and admin.set("/a", b"x") == 0


def test_get_acl_masks_digests_without_admin() -> None:
    core = make_core()
    c = connected(core)
    user = S.Id("digest", digest("carol:pw"))
    acl = [S.ACL(Perms.READ, S.Id("world", "anyone")), S.ACL(Perms.ALL, user)]
    assert c.create("/g", acl=acl) == 0
    err, resp = c.call(Op.getACL, S.GetACLRequest("/g"), S.GetACLResponse)
    assert err == 0
    assert resp.acl == [acl[0], S.ACL(Perms.ALL, S.Id("digest", "carol:x"))]
    c.add_auth("digest", b"carol:pw")
    err, resp = c.call(Op.getACL, S.GetACLRequest("/g"), S.GetACLResponse)
    assert resp.acl == acl
    assert resp.stat.aversion == 0
    # getACL needs READ or ADMIN
    assert c.create("/w", acl=[S.ACL(Perms.WRITE, S.Id("world", "anyone"))]) == 0
    assert c.call(Op.getACL, S.GetACLRequest("/w"))[0] == Err.NOAUTH
    assert c.create("/adm", acl=[S.ACL(Perms.ADMIN, user)]) == 0
    err, resp = c.call(Op.getACL, S.GetACLRequest("/adm"), S.GetACLResponse)
    assert err == 0 and resp.acl == [S.ACL(Perms.ADMIN, user)]
    assert c.call(Op.getACL, S.GetACLRequest("/missing"))[0] == Err.NONODE


@pytest.mark.parametrize("xid", [-4, 7])
def test_unknown_auth_scheme_fails_and_closes(xid: int) -> None:
    core = make_core()
    c = connected(core)
    replies = c.add_auth("kerberos-ish", b"whatever", xid=xid)
    assert [(h.xid, h.zxid, h.err) for h, _ in replies] == [(xid, 0, Err.AUTHFAILED)]
    assert c.closed
    assert c.conn.id not in core.connections
    # the session itself survives the closed connection; another client works
    d = connected(core, port=40005)
    assert d.create("/still-works") == 0


def test_auth_reply_echoes_request_xid() -> None:
    # Recorded raw_add_auth frame: a digest auth sent with xid 1 is answered with xid 1.
    core = make_core()
    c = connected(core)
    [(hdr, body)] = c.add_auth("digest", b"user:pw", xid=1)
    assert (hdr.xid, hdr.zxid, hdr.err, body) == (1, 0, 0, b"")
    assert not c.closed


def test_whoami_lists_ids() -> None:
    core = make_core()
    c = connected(core, host="127.0.0.1")
    c.add_auth("digest", b"dave:pw")
    err, resp = c.call(Op.whoAmI, None, S.WhoAmIResponse)
    assert err == 0
    assert [(i.authScheme, i.user) for i in resp.clientInfo] == [("ip", "127.0.0.1"), ("digest", "dave")]


def test_unauthenticated_client_helper_sanity() -> None:
    # Guard against a harness that would make every check pass vacuously.
    core = make_core()
    c = Client(core)
    c.handshake()
    assert c.session_id != 0 and len(c.passwd) == 16 and c.timeout == 10000
